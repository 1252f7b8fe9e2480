"""A backend that claims one job at a time, as a worker's pipeline consumes it.

The worker has one way to consume a queue: its pipeline, which claims batches. A
third-party backend written against :class:`~durable_sa.queue.protocol.QueueBackend`
alone has only ``claim``; this wraps it so the pipeline takes its jobs one claim at a
time, with every other rule (leases, commits, the applier) unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from durable_sa.queue.protocol import Claim, ClaimKind

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime, timedelta

    from sqlalchemy import Connection

    from durable_sa.queue.protocol import QueueBackend


class SingleClaims:
    """:class:`~durable_sa.queue.protocol.BatchClaims` for a backend with only ``claim``."""

    claims_on_connection: ClassVar[bool] = False
    claims_wait: ClassVar[bool] = False

    def __init__(self, backend: QueueBackend) -> None:
        """Claim from ``backend``, one job per claim."""
        self.backend = backend

    def claim_batch(  # noqa: PLR0913 - the pipeline's claim, keyword-only
        self,
        *,
        now: datetime,
        worker: str,
        lease: timedelta,
        limit: int,
        queues: Sequence[str] | None = None,
        workflows: Mapping[str, str] | None = None,
        fifo: bool = False,
        connection: Connection | None = None,  # noqa: ARG002 - the backend claims itself
        kind: ClaimKind = ClaimKind.BATCH,
        wait: bool = True,  # noqa: ARG002 - ``claim`` never waits
    ) -> list[Claim]:
        """One job from ``claim`` (a lapsed lease is the backend's own business)."""
        if limit <= 0 or kind is not ClaimKind.BATCH:
            return []
        job = self.backend.claim(
            now=now, worker=worker, lease=lease, queues=queues, workflows=workflows, fifo=fifo
        )
        return [] if job is None else [Claim(job=job)]

    def has_lapsed(
        self,
        *,
        now: datetime,  # noqa: ARG002
        queues: Sequence[str] | None = None,  # noqa: ARG002
        workflows: Mapping[str, str] | None = None,  # noqa: ARG002
    ) -> bool:
        """Always False: ``claim`` hands out lapsed jobs with the others."""
        return False
