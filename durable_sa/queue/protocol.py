"""The contract between the engine and a queue backend.

A backend plays three roles, each a protocol of its own (:class:`QueueBackend` is all
three, with a name and its :class:`~durable_sa.queue.capabilities.Capabilities`):

- **Producer, inside the engine's transaction** (:class:`JobProducer`).
  :meth:`QueueBackend.enqueue` and :meth:`QueueBackend.discard` run on the very
  ``Session`` that checkpoints a step, so a job exists exactly when the decision that
  made it commits. The built-in backend writes the jobs table; a relay backend writes an
  outbox row and publishes it later.
- **Consumer** (:class:`JobConsumer`). :meth:`claim` hands out one due job under a
  lease; the engine then acknowledges it with :meth:`ack` *in the transaction that
  applies its outcome* (or in its own, for a stale job), gives it back with
  :meth:`release` after an unexpected error, or moves it to the dead letters with
  :meth:`dead_letter`.
- **Operator** (:class:`QueueAdmin`): a dead letter back to its queue, which runs have a
  job (recovery), how many are pending, clearing the queue in tests.

Delivery is at-least-once: a claim whose lease runs out is handed out again. The engine
makes a repeated job harmless (a job that no longer matches its run does nothing).

The values a claim hands out (:class:`ClaimedJob`, :class:`Claim` with the run read
beside it, :class:`ClaimKind`) are part of the contract and live here, below every
backend and the jobs table's claim statement (:mod:`durable_sa.queue.claims`).
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from durable_sa.core.snapshot import RunSnapshot

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping, Sequence

    from sqlalchemy import Connection
    from sqlalchemy.orm import Session

    from durable_sa.core.jobs import JobSpec
    from durable_sa.queue.capabilities import Capabilities
    from durable_sa.store.statements import QueueRows


@attrs.frozen(kw_only=True)
class ClaimedJob:
    """A job handed to one consumer until ``claimed_until``.

    ``payload`` is the raw stored JSON: the engine parses it, so a malformed payload is
    dead-lettered with a clear error rather than crashing the consumer.
    """

    id: int
    queue: str
    kind: str
    run_id: int | None
    payload: Any
    attempts: int
    max_attempts: int
    available_at: datetime
    claimed_until: datetime | None = None
    defect: str | None = None
    """Why the backend's row cannot be run as it stands (a job row that names no
    workflow): the engine dead-letters the job with this reason."""


class ClaimKind(enum.Enum):
    """Which jobs a claim may take, and whether it takes them in company or alone.

    Why a worker's death charges only the jobs it held alone: :mod:`durable_sa.queue.claims`.
    """

    BATCH = "batch"
    """Up to ``limit`` jobs nobody holds, claimed in company (a worker's batch)."""
    ANY = "any"
    """One due job, unheld or whose lease ran out, claimed alone (``claim()``)."""
    RECOVERED = "recovered"
    """One job whose lease ran out, claimed alone (a worker with nothing else in hand)."""


@attrs.frozen
class Claim:
    """A leased job and, when its run exists, the run as it was read with it."""

    job: ClaimedJob
    run: RunSnapshot | None = None


class JobProducer(Protocol):
    """The producer role: writing jobs inside the engine's transaction.

    The applier calls these on the very ``Session`` that checkpoints a step, so a job
    exists exactly when the decision that made it commits.
    """

    def enqueue(self, session: Session, jobs: Sequence[JobSpec]) -> None:
        """Queue ``jobs`` in ``session``'s transaction; they exist only if it commits."""
        ...

    def discard(self, session: Session, run_id: int, *, keep: Collection[int] = ()) -> None:
        """Drop the run's queued jobs (except ids in ``keep``) in ``session``'s transaction."""
        ...


class JobConsumer(Protocol):
    """The consumer role: what a worker does with jobs, one claim at a time."""

    def claim(  # noqa: PLR0913 - every option is keyword-only
        self,
        *,
        now: datetime,
        worker: str,
        lease: timedelta,
        queues: Sequence[str] | None = None,
        workflows: Mapping[str, str] | None = None,
        fifo: bool = False,
    ) -> ClaimedJob | None:
        """Take the oldest due job that nobody holds, or ``None`` when none is due.

        ``workflows`` maps workflow names to the definition version this consumer has;
        when given, only jobs of those (name, version) pairs are claimed, so a job waits
        for a worker that can run it. ``fifo`` orders by enqueue order, not due time.
        """
        ...

    def ack(self, session: Session, job: ClaimedJob) -> None:
        """Mark ``job`` done in ``session``'s transaction (with the outcome it produced)."""
        ...

    def release(self, job: ClaimedJob, *, error: str, retry_at: datetime) -> None:
        """Give ``job`` back after an unexpected error, to be retried at ``retry_at``."""
        ...

    def defer(self, job: ClaimedJob, *, until: datetime, reason: str) -> None:
        """Give ``job`` back unrun, due at ``until``, *without* using one of its attempts.

        For a job the consumer that took it cannot run (its run's workflow, or the
        definition version the run is pinned to, is not defined in that process): a
        consumer that has it takes it later. Such a job is never dead-lettered.
        """
        ...

    def dead_letter(self, job: ClaimedJob, *, error: str) -> None:
        """Move ``job`` to the dead letters with ``error``; it is no longer pending."""
        ...

    def renew(self, job_ids: Collection[int], *, worker: str, until: datetime) -> int:
        """Extend the leases ``worker`` holds on ``job_ids``; how many it still holds."""
        ...

    def release_claims(self, job_ids: Collection[int], *, worker: str) -> int:
        """Give back ``worker``'s claims on ``job_ids`` now (a stopping worker)."""
        ...

    def next_due(
        self,
        *,
        now: datetime,
        queues: Sequence[str] | None = None,
        workflows: Mapping[str, str] | None = None,
    ) -> datetime | None:
        """When the next job becomes claimable (``None``: no job at all)."""
        ...

    def add_wake_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after a commit in this process enqueued jobs (may never call)."""
        ...

    def remove_wake_callback(self, callback: Callable[[], None]) -> None:
        """Stop calling ``callback``."""
        ...


class QueueAdmin(Protocol):
    """The operator role: dead letters back to the queue, recovery, tests."""

    def requeue(self, dead_letter_id: int, *, now: datetime) -> int | None:
        """Move a dead letter back to the queue; the new job's id (``None``: not found)."""
        ...

    def live_run_ids(self, session: Session, run_ids: Collection[int]) -> set[int]:
        """Which of ``run_ids`` have a queued or claimed job (for ``recover``)."""
        ...

    def pending_count(self) -> int:
        """Jobs not finished: queued or claimed, not dead-lettered."""
        ...

    def clear(self) -> None:
        """Delete every queued job, whatever its state (tests: simulates a lost job)."""
        ...


@runtime_checkable
class QueueBackend(JobProducer, JobConsumer, QueueAdmin, Protocol):
    """What the engine needs from a queue: the three roles, a name, its capabilities."""

    @property
    def name(self) -> str:
        """The backend's name (``jobs_table``, ``redis``, ...), as users select it."""
        ...

    @property
    def capabilities(self) -> Capabilities:
        """What it can do beyond this protocol (``Capabilities()``: nothing more)."""
        ...


@runtime_checkable
class InPlaceProducer(Protocol):
    """A backend whose jobs can be handed to the worker that wrote them (the jobs table).

    Declared with ``Capabilities(in_place=True)``.

    A worker that finishes a step whose run's next step is due now inserts that next job
    already claimed by itself and runs it in place, instead of queueing it for a claim.
    Such a backend also acknowledges a group of jobs in one statement, and lets the
    applier write its rows (``durable_jobs``) in the statement that applies a group.
    """

    queue: str
    max_attempts: int

    def wake_after_commit(self, session: Session) -> None:
        """Wake this process's idle workers once ``session``'s transaction commits."""
        ...

    def ack_all(self, session: Session, jobs: Sequence[ClaimedJob]) -> None:
        """Mark every job of ``jobs`` done in ``session``'s transaction."""
        ...

    def enqueue_claimed(
        self,
        session: Session,
        jobs: Sequence[tuple[JobSpec, datetime]],
        *,
        worker: str,
        now: datetime,
    ) -> list[ClaimedJob]:
        """Insert ``jobs`` claimed by ``worker``, each leased until its paired instant."""
        ...

    # What the applier's group statement needs when ``applier_writes_rows`` is true.

    @property
    def queue_rows(self) -> QueueRows:
        """The table the rows go to and how the group statement writes them."""
        ...

    def new_row(
        self, spec: JobSpec, *, taken_by: str | None, until: datetime | None, now: datetime
    ) -> dict[str, Any]:
        """The row of a new job: queued, or taken by worker ``taken_by`` until ``until``."""
        ...

    def taken(self, session: Session, job_id: int, row: Mapping[str, Any]) -> ClaimedJob:
        """The job of ``row``, which ``session`` inserted taken by this worker (id ``job_id``)."""
        ...

    def ack_rows(self, jobs: Sequence[ClaimedJob]) -> list[int]:
        """The ids of the rows that acknowledging ``jobs`` deletes."""
        ...

    def acknowledged(self, session: Session, jobs: Sequence[ClaimedJob]) -> None:
        """``jobs`` are done once ``session`` commits (their rows deleted in it)."""
        ...


@runtime_checkable
class BatchClaims(Protocol):
    """How a worker's pipeline claims from a backend: in batches.

    Declared with ``Capabilities(batch_claims=True)``.

    The jobs table claims rows on a connection the worker lends it; a relay backend
    (Redis Streams) reads its broker, and may wait there for messages. A backend that
    only has :meth:`QueueBackend.claim` is consumed through
    :class:`~durable_sa.queue.single_claims.SingleClaims`.
    """

    def claim_batch(  # noqa: PLR0913 - every option is keyword-only
        self,
        *,
        now: datetime,
        worker: str,
        lease: timedelta,
        limit: int,
        queues: Sequence[str] | None = None,
        workflows: Mapping[str, str] | None = None,
        fifo: bool = False,
        connection: Connection | None = None,
        kind: ClaimKind = ...,
        wait: bool = True,
    ) -> list[Claim]:
        """Take up to ``limit`` jobs for ``worker`` (with their runs, where read)."""
        ...

    def has_lapsed(
        self,
        *,
        now: datetime,
        queues: Sequence[str] | None = None,
        workflows: Mapping[str, str] | None = None,
    ) -> bool:
        """Whether a job's lease ran out, to be taken over alone."""
        ...
