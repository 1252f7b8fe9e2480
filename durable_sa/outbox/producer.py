"""The producer half every relay backend shares: jobs written to the outbox table.

``enqueue`` inserts outbox rows in the engine's transaction, never touching the broker,
so a job exists exactly when the decision that made it commits; a relay publishes them
later. A run's next step due now is written already taken by the worker that committed
the step before it (``published_by`` is the worker, ``claimed_until`` its lease) and run
in place, never reaching the broker; the transaction that applies its outcome deletes
the row. Acknowledging a job settles its broker message once that transaction commits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import Engine, delete, event, insert

from durable_sa.outbox.deliveries import HeldDeliveries
from durable_sa.outbox.message import OutboxMessage, message_from_row
from durable_sa.queue.rows import job_row
from durable_sa.store.models import outbox_table

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping, Sequence
    from datetime import datetime

    from sqlalchemy.orm import Session, sessionmaker

    from durable_sa.core.jobs import JobSpec
    from durable_sa.queue.capabilities import Capabilities
    from durable_sa.queue.protocol import ClaimedJob
    from durable_sa.queue.wake import WakeCallbacks

outbox = outbox_table


class OutboxProducer(HeldDeliveries):
    """Jobs to the outbox: a base of :class:`~durable_sa.outbox.backend.OutboxBackend`."""

    sa_engine: Engine
    queue: str
    max_attempts: int
    capabilities: ClassVar[Capabilities]
    _sessions: sessionmaker[Session]
    _wake: WakeCallbacks

    @property
    def sessions(self) -> sessionmaker[Session]:
        """Sessions on the outbox's database (the relay uses them)."""
        return self._sessions

    # ── wake-ups ───────────────────────────────────────────────────────────────

    def add_wake_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after each commit that wrote outbox rows in this process.

        A relay in the same process uses it to publish at once.
        """
        self._wake.add(callback)

    def remove_wake_callback(self, callback: Callable[[], None]) -> None:
        """Stop calling ``callback``."""
        self._wake.remove(callback)

    # ── producer side ──────────────────────────────────────────────────────────

    def enqueue(self, session: Session, jobs: Sequence[JobSpec]) -> None:
        """INSERT outbox rows in ``session``'s transaction; a relay publishes them later."""
        if not jobs:
            return
        session.execute(
            insert(outbox),
            [job_row(spec, queue=self.queue, max_attempts=self.max_attempts) for spec in jobs],
        )
        self._wake.after_commit(session)

    def discard(self, session: Session, run_id: int, *, keep: Collection[int] = ()) -> None:
        """DELETE the run's unpublished rows (published ones turn stale on delivery)."""
        stmt = delete(outbox).where(outbox.c.run_id == run_id, outbox.c.published_at.is_(None))
        if keep:
            stmt = stmt.where(outbox.c.id.not_in(list(keep)))
        session.execute(stmt)

    def _write_back(
        self, session: Session, message: OutboxMessage, *, attempts: int, due: datetime, error: str
    ) -> int:
        row_id = session.execute(
            insert(outbox)
            .values(
                queue=message.queue,
                kind=message.kind,
                run_id=message.run_id,
                workflow_name=message.workflow,
                workflow_version=message.version,
                payload=message.payload,
                attempts=attempts,
                max_attempts=message.max_attempts,
                available_at=due,
                last_error=error,
            )
            .returning(outbox.c.id)
        ).scalar_one()
        self._wake.after_commit(session)
        return int(row_id)

    # ── in place: a run's next step, taken by the worker that wrote it ──────────

    def wake_after_commit(self, session: Session) -> None:
        """Wake an in-process relay once ``session``'s transaction commits."""
        self._wake.after_commit(session)

    def enqueue_claimed(
        self,
        session: Session,
        jobs: Sequence[tuple[JobSpec, datetime]],
        *,
        worker: str,
        now: datetime,
    ) -> list[ClaimedJob]:
        """INSERT rows already taken by ``worker`` until their paired instants.

        The relay leaves them alone while their leases last: ``worker`` runs them in
        place, and the transaction that applies each one's outcome deletes its row.
        """
        rows = [self.new_row(spec, taken_by=worker, until=until, now=now) for spec, until in jobs]
        ids = session.execute(
            insert(outbox).returning(outbox.c.id, sort_by_parameter_order=True), rows
        ).scalars()
        return [
            self.taken(session, int(row_id), row) for row_id, row in zip(ids, rows, strict=True)
        ]

    def new_row(
        self, spec: JobSpec, *, taken_by: str | None, until: datetime | None, now: datetime
    ) -> dict[str, Any]:
        """The outbox row of a new job; taken by ``taken_by`` until ``until`` (in place)."""
        row = job_row(spec, queue=self.queue, max_attempts=self.max_attempts)
        row["redeliveries"] = 0
        if taken_by is None:
            return row | {"published_by": None, "published_at": None, "claimed_until": None}
        return row | {"published_by": taken_by, "published_at": now, "claimed_until": until}

    def taken(self, session: Session, job_id: int, row: Mapping[str, Any]) -> ClaimedJob:
        """The job of a row ``session`` wrote taken by this worker: held here, in place.

        Forgotten again if ``session`` rolls back.
        """
        message = message_from_row({**row, "id": job_id})
        job = self.hold(message, deliveries=1, claimed_until=row["claimed_until"])
        with self._held_lock:
            self._in_place.add(job_id)

        def forget_on_rollback(_session: Session, *_: object) -> None:
            self.forget(job_id)

        event.listen(session, "after_soft_rollback", forget_on_rollback, once=True)
        return job

    def ack_rows(self, jobs: Sequence[ClaimedJob]) -> list[int]:
        """The rows acknowledging ``jobs`` deletes.

        Those of jobs run in place (and all, with ``tracks_delivery``); a delivered
        row otherwise stays, published, until the relay prunes it.
        """
        tracks = self.capabilities.tracks_delivery
        return [job.id for job in jobs if tracks or self.runs_in_place(job.id)]

    def acknowledged(self, session: Session, jobs: Sequence[ClaimedJob]) -> None:
        """Settle ``jobs`` with the broker, and forget them, once ``session`` commits."""
        if not jobs:
            return
        done = list(jobs)

        def settle_after_commit(_session: Session) -> None:
            self._settle_all_quietly(done)

        event.listen(session, "after_commit", settle_after_commit, once=True)

    def ack_all(self, session: Session, jobs: Sequence[ClaimedJob]) -> None:
        """Acknowledge ``jobs`` in ``session``, their rows deleted in one statement.

        Which rows: see :meth:`ack_rows`. The broker's messages are settled once
        ``session`` commits.
        """
        ids = self.ack_rows(jobs)
        if ids:
            session.execute(delete(outbox).where(outbox.c.id.in_(ids)))
        self.acknowledged(session, jobs)

    def ack(self, session: Session, job: ClaimedJob) -> None:
        """Settle the broker's message once ``session`` commits (never on rollback).

        With ``tracks_delivery``, or for a job run in place, the job's outbox row is
        deleted in ``session`` too.
        """
        self.ack_all(session, [job])
