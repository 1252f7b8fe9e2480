"""What a relay backend's process holds of its broker, and settling it.

A consumer remembers each message the broker delivered to it until the delivery is
settled (:meth:`HeldDeliveries.hold`, :meth:`HeldDeliveries.forget`), and which of the
jobs it holds are rows it wrote taken by itself, run in place, that never went through
the broker (:meth:`HeldDeliveries.runs_in_place`). Settling tells the broker a delivery
is done, after the transaction that applied the job's outcome commits; a broker that is
away then is not an error: its messages come back and turn stale.
"""

from __future__ import annotations

import abc
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import threading
    from collections.abc import Collection, Sequence
    from datetime import datetime

    from durable_sa.outbox.message import OutboxMessage
    from durable_sa.queue.protocol import ClaimedJob

logger = logging.getLogger("durable_sa.outbox.backend")
"""The relay backends' logger, whichever of their modules writes: log filters keep working."""


class HeldDeliveries(abc.ABC):
    """Deliveries held: a base of :class:`~durable_sa.outbox.backend.OutboxBackend`."""

    _held: dict[int, OutboxMessage]
    """Messages delivered to this process and not settled, by job id."""
    _in_place: set[int]
    """Held jobs whose outbox rows this process wrote already taken (run in place)."""
    _held_lock: threading.Lock

    def hold(
        self, message: OutboxMessage, *, deliveries: int, claimed_until: datetime | None
    ) -> ClaimedJob:
        """Remember ``message`` as delivered here, and return the engine's view of it."""
        with self._held_lock:
            self._held[message.id] = message
        return message.claimed(deliveries=deliveries, claimed_until=claimed_until)

    def held_message(self, job_id: int) -> OutboxMessage | None:
        """The message of a job delivered to this process and not settled yet."""
        with self._held_lock:
            return self._held.get(job_id)

    def forget(self, job_id: int) -> OutboxMessage | None:
        """Stop tracking a delivered job (settled or handed back); its message."""
        with self._held_lock:
            self._in_place.discard(job_id)
            return self._held.pop(job_id, None)

    def runs_in_place(self, job_id: int) -> bool:
        """True when this process holds job ``job_id`` as a row it wrote taken (in place)."""
        with self._held_lock:
            return job_id in self._in_place

    def _split(self, job_ids: Collection[int]) -> tuple[list[int], list[int]]:
        """``job_ids`` as (held in place, delivered by the broker)."""
        with self._held_lock:
            taken = self._in_place & set(job_ids)
        return [i for i in job_ids if i in taken], [i for i in job_ids if i not in taken]

    def _settle_quietly(self, job: ClaimedJob) -> None:
        self._settle_all_quietly([job])

    def _settle_all_quietly(self, jobs: Sequence[ClaimedJob]) -> None:
        delivered = [job for job in jobs if not self.runs_in_place(job.id)]
        try:
            if delivered:
                self.settle_all(delivered)
        except Exception:  # the broker is away: the messages come back and turn stale
            logger.warning(
                "could not settle %d job(s) with the broker", len(delivered), exc_info=True
            )
        finally:
            for job in jobs:
                self.forget(job.id)

    def settle_all(self, jobs: Sequence[ClaimedJob]) -> None:
        """Tell the broker the deliveries of ``jobs`` are done (a broker may batch this)."""
        for job in jobs:
            self.settle(job)

    @abc.abstractmethod
    def settle(self, job: ClaimedJob) -> None:
        """Tell the broker the delivery of ``job`` is done: it must not come back."""
