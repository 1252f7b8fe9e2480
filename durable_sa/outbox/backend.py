"""The base of relay backends: jobs go to the outbox table, a broker carries them on.

A relay backend is a :class:`~durable_sa.queue.protocol.QueueBackend` in two halves:

- **Producer (this class, shared by all).** ``enqueue`` inserts outbox rows in the
  engine's transaction, never touching the broker, so a job exists exactly when the
  decision that made it commits. A :class:`~durable_sa.outbox.relay.Relay` then
  publishes due rows with :meth:`OutboxBackend.publish`.
- **Consumer (the subclass).** ``claim`` takes a message from the broker. The engine
  acknowledges with ``ack`` inside the transaction that applies the job's outcome; here
  that only *schedules* :meth:`settle` for after the commit, so the broker forgets the
  message only once its effect is durable. A consumer that dies before that leaves the
  message to be delivered again; the engine's stale-job guards make the repeat harmless.

**In place.** A worker that commits a step whose run's next step is due now runs that
step itself, as on the jobs table: the next job's outbox row is written already taken by
the worker (``published_by`` is the worker, ``claimed_until`` its lease, renewed by its
heartbeat) and never reaches the broker. The transaction that applies that job's outcome
deletes the row. If the worker dies, the lease runs out and a relay publishes the row
like any other (counted as a redelivery, so a job that kills every worker that runs it
still runs out of attempts). A run therefore costs one broker message per wake-up
(start, sleep, signal, retry), not one per step.

What never goes to the broker's own retry machinery: a job given back after an error
(:meth:`release`) or held for another worker (:meth:`defer`) is written back to the
outbox as a new row, due at its retry time, and the delivered message is settled. Delays
therefore live in the database, whatever the broker can or cannot schedule, and
``durable-sa dead-letters``/``requeue`` work on the same table as for the jobs table.

:class:`OutboxBackend` is the class a backend subclasses; it is built in layers, a
module each: :mod:`~durable_sa.outbox.deliveries` (what the process holds of the broker,
and settling it), :mod:`~durable_sa.outbox.producer` (the outbox rows, in place
included, and acknowledgements) and :mod:`~durable_sa.outbox.consumer` (claims, leases,
and how a delivery ends). This module adds the settings, the relay side and inspection.
"""

from __future__ import annotations

import abc
import threading
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, ClassVar, Final

import attrs
from sqlalchemy import Engine, delete, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from durable_sa.errors import InvalidArgumentError
from durable_sa.outbox.consumer import OutboxConsumer
from durable_sa.queue.capabilities import Capabilities, refuse_former_flags
from durable_sa.queue.rows import overrides_producer
from durable_sa.queue.wake import WakeCallbacks
from durable_sa.store.models import outbox_table
from durable_sa.store.statements import OUTBOX_ROWS, QueueRows

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Sequence

    from durable_sa.outbox.message import OutboxMessage

outbox = outbox_table

DEFAULT_QUEUE: Final = "default"
DEFAULT_MAX_ATTEMPTS: Final = 5
DEFAULT_KEEP_PUBLISHED: Final = timedelta(hours=1)


class OutboxBackend(OutboxConsumer):
    """Producer half on the outbox table; subclasses add a broker's consumer half.

    Subclasses implement :meth:`publish` (relay side) and the consuming methods
    :meth:`claim`, :meth:`settle`, :meth:`renew`, :meth:`release_claims`,
    :meth:`next_due`, :meth:`broker_run_ids`, :meth:`broker_pending` and
    :meth:`broker_clear`. A backend whose messages are consumed by another system
    (Celery's own workers) returns ``None`` from ``claim``.
    """

    name: ClassVar[str] = "outbox"
    capabilities: ClassVar[Capabilities] = Capabilities(
        batch_claims=True,
        claims_wait=True,  # a claim may block until the broker has messages
        in_place=True,
        applier_writes_rows=True,
        outbox=True,
    )
    """A subclass declares what differs: a broker whose own workers consume it sets
    ``consumed_by_workers=False``; one that may lose a message silently sets
    ``tracks_delivery=True`` (its rows stay until their job is done and are published
    again ``redeliver_after`` after their last publication). A subclass that overrides a
    producer method loses ``applier_writes_rows``."""
    redeliver_after: timedelta | None = None
    queue_rows: ClassVar[QueueRows] = OUTBOX_ROWS

    def __init_subclass__(cls, **kwargs: object) -> None:
        """A subclass that changes how rows are written has its own methods called."""
        super().__init_subclass__(**kwargs)
        refuse_former_flags(cls)
        if overrides_producer(cls, OutboxBackend):
            cls.capabilities = attrs.evolve(cls.capabilities, applier_writes_rows=False)

    def __init__(
        self,
        sa_engine: Engine,
        *,
        queue: str = DEFAULT_QUEUE,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        keep_published: timedelta = DEFAULT_KEEP_PUBLISHED,
    ) -> None:
        """Write jobs for ``queue`` to ``sa_engine``'s outbox table.

        ``keep_published`` is how long a relay keeps published rows before pruning them.
        """
        if not isinstance(keep_published, timedelta) or keep_published < timedelta(0):
            msg = f"keep_published must be a non-negative timedelta, not {keep_published!r}"
            raise InvalidArgumentError(msg)
        self.sa_engine = sa_engine
        self.queue = queue
        self.max_attempts = max_attempts
        self.keep_published = keep_published
        self._sessions = sessionmaker(bind=sa_engine, expire_on_commit=False)
        self._wake = WakeCallbacks()
        self._held = {}
        self._in_place = set()
        self._held_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} queue={self.queue!r} url={self.sa_engine.url!r}>"

    # ── relay side ─────────────────────────────────────────────────────────────

    @abc.abstractmethod
    def publish(self, messages: Sequence[OutboxMessage]) -> None:
        """Hand ``messages`` to the broker; return only once it holds every one of them.

        Raise if any could not be published: the relay then leaves all of them
        unpublished and retries. Publishing a message twice must be harmless for the
        broker (the engine drops the duplicate when it is delivered).
        """

    # ── inspection ─────────────────────────────────────────────────────────────

    def live_run_ids(self, session: Session, run_ids: Collection[int]) -> set[int]:
        """Runs of ``run_ids`` with an unpublished or taken row, or a message in the broker."""
        if not run_ids:
            return set()
        rows = session.execute(
            select(outbox.c.run_id)
            .where(
                outbox.c.run_id.in_(list(run_ids)),
                or_(outbox.c.published_at.is_(None), outbox.c.claimed_until.is_not(None)),
            )
            .distinct()
        )
        live = {int(r) for r in rows.scalars()}
        return live | self.broker_run_ids(set(run_ids) - live)

    def pending_count(self) -> int:
        """Unpublished outbox rows, rows run in place, and messages not settled."""
        return self.unpublished_count() + self.in_place_count() + self.broker_pending()

    def in_place_count(self) -> int:
        """Rows taken by the workers that wrote them (run in place, not in the broker)."""
        stmt = select(func.count()).select_from(outbox).where(outbox.c.claimed_until.is_not(None))
        with self._sessions() as session:
            return int(session.execute(stmt).scalar_one())

    def unpublished_count(self, *, due_by: datetime | None = None) -> int:
        """Outbox rows not yet published (only those due by ``due_by``, when given)."""
        stmt = select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
        if due_by is not None:
            stmt = stmt.where(outbox.c.available_at <= due_by)
        with self._sessions() as session:
            return int(session.execute(stmt).scalar_one())

    def clear(self) -> None:
        """Delete every outbox row and every message in the broker (tests)."""
        with self._sessions.begin() as session:
            session.execute(delete(outbox))
        self.broker_clear()
        with self._held_lock:
            self._held.clear()
            self._in_place.clear()

    @abc.abstractmethod
    def broker_run_ids(self, run_ids: Iterable[int]) -> set[int]:
        """Runs of ``run_ids`` with a message in the broker not yet settled."""

    @abc.abstractmethod
    def broker_pending(self) -> int:
        """Messages in the broker not yet settled (waiting or being worked on)."""

    @abc.abstractmethod
    def broker_clear(self) -> None:
        """Drop every message of this backend from the broker."""
