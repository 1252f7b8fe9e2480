"""The built-in backend: jobs are rows of ``durable_jobs`` in the application's database.

Rules:
- Enqueueing is an INSERT in the engine's transaction, so a checkpoint and the job that
  drives the next step commit together or not at all.
- A claim is one statement: an UPDATE of the oldest due, unheld job, picked with
  ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so concurrent consumers never wait on or take
  the same row. It sets a lease (``claimed_until``) and counts the attempt.
- Acknowledging deletes the row in the transaction that applied the job's outcome.
- A job whose attempts run out is moved to ``durable_dead_letters`` with its error.

The claim statement is :mod:`durable_sa.queue.claims`; which jobs a worker may run and
when the next one is due, :mod:`durable_sa.queue.due`.
"""

from __future__ import annotations

import contextlib
import functools
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Final

import attrs
from sqlalchemy import Engine, bindparam, case, delete, func, insert, not_, select, update
from sqlalchemy.orm import Session, sessionmaker

from durable_sa.queue import dead_letters, due
from durable_sa.queue.capabilities import Capabilities, refuse_former_flags
from durable_sa.queue.claims import claim_jobs
from durable_sa.queue.defects import defective
from durable_sa.queue.protocol import Claim, ClaimedJob, ClaimKind
from durable_sa.queue.rows import job_row, overrides_producer, requeue_into
from durable_sa.queue.wake import WakeCallbacks
from durable_sa.store.models import jobs_table, runs_table
from durable_sa.store.statements import JOB_ROWS, QueueRows

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterator, Mapping, Sequence

    from sqlalchemy import Connection

    from durable_sa.core.jobs import JobSpec

jobs = jobs_table

DEFAULT_QUEUE: Final = "default"
DEFAULT_MAX_ATTEMPTS: Final = 5
DEFAULT_WRITE_TIMEOUT: Final = timedelta(seconds=10)
"""How long a worker's own short write (give back, renew, dead-letter) may wait for a
row lock on PostgreSQL before it fails (an application holding a job's row, e.g. an
uncommitted ``cancel(run_id, session=s)``, must not hold the worker's slot forever)."""

_DELETE_JOBS: Final = delete(jobs).where(jobs.c.id.in_(bindparam("ids", expanding=True)))


class JobsTableBackend:
    """Jobs as rows in the same database as the runs (the default backend)."""

    name = "jobs_table"
    capabilities: ClassVar[Capabilities] = Capabilities(
        batch_claims=True,
        claims_on_connection=True,  # claims are statements: a worker lends its connection
        in_place=True,
        applier_writes_rows=True,
    )
    """Claims never wait for jobs: idle workers sleep until ``next_due`` or a NOTIFY. A
    subclass that overrides a producer method (to count, log or route jobs) loses
    ``applier_writes_rows``, so its methods are called, on every database."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        """A subclass that changes how jobs are written has its own methods called."""
        super().__init_subclass__(**kwargs)
        refuse_former_flags(cls)
        if overrides_producer(cls, JobsTableBackend):
            cls.capabilities = attrs.evolve(cls.capabilities, applier_writes_rows=False)

    def __init__(
        self,
        sa_engine: Engine,
        *,
        queue: str = DEFAULT_QUEUE,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        write_timeout: timedelta | None = DEFAULT_WRITE_TIMEOUT,
    ) -> None:
        """Use ``sa_engine``'s database; new jobs go to ``queue``.

        ``write_timeout`` bounds how long the consumer's own writes wait for a lock
        (see :data:`DEFAULT_WRITE_TIMEOUT`; ``None``: wait as long as it takes).
        """
        self.sa_engine = sa_engine
        self.queue = queue
        self.max_attempts = max_attempts
        self.write_timeout = write_timeout
        self._sessions = sessionmaker(bind=sa_engine, expire_on_commit=False)
        self._wake = WakeCallbacks()

    def add_wake_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after each commit that enqueued jobs in this process.

        Workers in the same process use it to wake at once, which matters on SQLite
        (no NOTIFY) and saves a round trip through the server on PostgreSQL.
        """
        self._wake.add(callback)

    def remove_wake_callback(self, callback: Callable[[], None]) -> None:
        """Stop calling ``callback``."""
        self._wake.remove(callback)

    def wake_after_commit(self, session: Session) -> None:
        """Call the wake callbacks once ``session``'s transaction commits."""
        self._wake.after_commit(session)

    def wake_local(self) -> None:
        """Call the wake callbacks now (a job was queued by a commit made elsewhere)."""
        self._wake.call_all()

    def __repr__(self) -> str:
        return f"<JobsTableBackend queue={self.queue!r} url={self.sa_engine.url!r}>"

    # ── producer side ──────────────────────────────────────────────────────────

    def enqueue(self, session: Session, jobs_to_add: Sequence[JobSpec]) -> None:
        """INSERT the jobs in ``session``'s transaction."""
        if not jobs_to_add:
            return
        session.connection().execute(
            insert(jobs),
            [
                job_row(spec, queue=self.queue, max_attempts=self.max_attempts)
                | {"priority": spec.priority}
                for spec in jobs_to_add
            ],
        )
        self._wake.after_commit(session)

    def discard(self, session: Session, run_id: int, *, keep: Collection[int] = ()) -> None:
        """DELETE the run's jobs in ``session``'s transaction, sparing ids in ``keep``."""
        stmt = delete(jobs).where(jobs.c.run_id == run_id)
        if keep:
            stmt = stmt.where(jobs.c.id.not_in(list(keep)))
        session.execute(stmt)

    # ── consumer side ──────────────────────────────────────────────────────────

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
        """Lease the oldest due job that is unclaimed or whose lease expired.

        ``workflows`` (name → definition version) limits the claim to jobs of runs this
        consumer can execute; ``fifo`` orders by enqueue order instead of due time. The
        job is claimed alone (the caller holds nothing else from this claim).
        """
        claims = self.claim_batch(
            now=now,
            worker=worker,
            lease=lease,
            limit=1,
            queues=queues,
            workflows=workflows,
            fifo=fifo,
            kind=ClaimKind.ANY,
        )
        return claims[0].job if claims else None

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
        kind: ClaimKind = ClaimKind.BATCH,
        wait: bool = True,  # noqa: ARG002 - a claim on the table never waits for jobs
    ) -> list[Claim]:
        """Lease up to ``limit`` due jobs and read their runs with them, in one transaction.

        The one claim of this backend: ``claim``, ``drain`` and workers all go through it.
        On PostgreSQL it is one statement, committed without waiting for the WAL flush (a
        claim lost in a crash only makes its job claimable again). ``connection`` is a
        worker's held autocommit connection, already set up that way. ``kind`` says
        which jobs it may take (a batch never takes over a lapsed lease; see
        :mod:`durable_sa.queue.claims`).
        """
        if limit <= 0:
            return []
        claim = functools.partial(
            claim_jobs,
            now=now,
            worker=worker,
            lease=lease,
            limit=limit,
            queues=queues,
            workflows=workflows,
            fifo=fifo,
            kind=kind,
        )
        if connection is not None:
            return claim(connection)
        with self._sessions.begin() as session:
            conn = session.connection()
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            return claim(conn)

    def ack(self, session: Session, job: ClaimedJob) -> None:
        """DELETE the job in ``session``'s transaction."""
        self.ack_all(session, [job])

    def ack_all(self, session: Session, jobs_done: Sequence[ClaimedJob]) -> None:
        """DELETE the jobs in ``session``'s transaction, in one statement."""
        session.connection().execute(_DELETE_JOBS, {"ids": [job.id for job in jobs_done]})

    def enqueue_claimed(
        self,
        session: Session,
        jobs_to_add: Sequence[tuple[JobSpec, datetime]],
        *,
        worker: str,
        now: datetime,
    ) -> list[ClaimedJob]:
        """INSERT jobs already claimed by ``worker`` (a run's next step, run in place)."""
        rows = [
            self.new_row(spec, taken_by=worker, until=until, now=now) for spec, until in jobs_to_add
        ]
        ids = (
            session.connection()
            .execute(insert(jobs).returning(jobs.c.id, sort_by_parameter_order=True), rows)
            .scalars()
        )
        return [
            self.taken(session, int(job_id), row) for job_id, row in zip(ids, rows, strict=True)
        ]

    # ── rows the applier writes in its group statement ─────────────────────────

    queue_rows: ClassVar[QueueRows] = JOB_ROWS

    def new_row(
        self, spec: JobSpec, *, taken_by: str | None, until: datetime | None, now: datetime
    ) -> dict[str, Any]:
        """The row of a new job; taken by ``taken_by`` until ``until`` (claimed, in place)."""
        del now  # created_at takes the column default, as for every other job
        row = job_row(spec, queue=self.queue, max_attempts=self.max_attempts)
        row["priority"] = spec.priority
        if taken_by is None:
            return row | {"claimed_by": None, "claimed_until": None}
        return row | {"attempts": 1, "claimed_by": taken_by, "claimed_until": until}

    def taken(self, session: Session, job_id: int, row: Mapping[str, Any]) -> ClaimedJob:
        """The job a group inserted claimed by this worker, as a claim would return it."""
        del session  # nothing to remember: the row is the claim
        return ClaimedJob(
            id=job_id,
            queue=row["queue"],
            kind=row["kind"],
            run_id=row["run_id"],
            payload=row["payload"],
            attempts=1,
            max_attempts=row["max_attempts"],
            available_at=row["available_at"],
            claimed_until=row["claimed_until"],
        )

    def ack_rows(self, jobs_done: Sequence[ClaimedJob]) -> list[int]:
        """Acknowledging a job deletes its row: all of them."""
        return [job.id for job in jobs_done]

    def acknowledged(self, session: Session, jobs_done: Sequence[ClaimedJob]) -> None:
        """Nothing more: deleting its row is all a job's acknowledgement takes."""

    def release(self, job: ClaimedJob, *, error: str, retry_at: datetime) -> None:
        """Unclaim the job and make it due again at ``retry_at``."""
        self._give_back(job, due=retry_at, error=error)

    def defer(self, job: ClaimedJob, *, until: datetime, reason: str) -> None:
        """Unclaim the job, due again at ``until``; the claim's attempt is given back."""
        attempts = case((jobs.c.attempts > 0, jobs.c.attempts - 1), else_=0)
        self._give_back(job, due=until, error=reason, attempts=attempts)

    @contextlib.contextmanager
    def _bounded(self) -> Iterator[Session]:
        """A transaction for the consumer's own writes, bounded by ``write_timeout``."""
        with self._sessions.begin() as session:
            if self.write_timeout is not None and self.sa_engine.dialect.name == "postgresql":
                ms = max(1, int(self.write_timeout.total_seconds() * 1000))
                connection = session.connection()
                connection.exec_driver_sql(f"SET LOCAL lock_timeout = {ms}")
                connection.exec_driver_sql(f"SET LOCAL statement_timeout = {ms}")
            yield session

    def _give_back(self, job: ClaimedJob, *, due: datetime, error: str, **more: object) -> None:
        with self._bounded() as session:
            session.execute(
                update(jobs)
                .where(jobs.c.id == job.id)
                .values(
                    claimed_by=None, claimed_until=None, available_at=due, last_error=error, **more
                )
            )

    def dead_letter(self, job: ClaimedJob, *, error: str) -> None:
        """Move the job to ``durable_dead_letters`` and delete it, in one transaction."""
        with self._bounded() as session:
            dead_letters.record(session, job, error=error)
            session.execute(delete(jobs).where(jobs.c.id == job.id))

    def renew(self, job_ids: Collection[int], *, worker: str, until: datetime) -> int:
        """Extend the leases ``worker`` holds on ``job_ids`` to ``until``; how many it holds."""
        if not job_ids:
            return 0
        with self._bounded() as session:
            result = session.execute(
                update(jobs)
                .where(jobs.c.id.in_(list(job_ids)), jobs.c.claimed_by == worker)
                .values(claimed_until=until)
            )
        return int(getattr(result, "rowcount", 0) or 0)

    def release_claims(self, job_ids: Collection[int], *, worker: str) -> int:
        """Give back ``worker``'s claims on ``job_ids`` at once (a stopping worker)."""
        if not job_ids:
            return 0
        with self._bounded() as session:
            result = session.execute(
                update(jobs)
                .where(jobs.c.id.in_(list(job_ids)), jobs.c.claimed_by == worker)
                .values(claimed_by=None, claimed_until=None)
            )
        return int(getattr(result, "rowcount", 0) or 0)

    def has_lapsed(
        self,
        *,
        now: datetime,
        queues: Sequence[str] | None = None,
        workflows: Mapping[str, str] | None = None,
    ) -> bool:
        """Whether a job's lease ran out (its worker died or gave up): one to take alone."""
        return due.has_lapsed(self._sessions, now=now, queues=queues, workflows=workflows)

    def next_due(
        self,
        *,
        now: datetime,
        queues: Sequence[str] | None = None,
        workflows: Mapping[str, str] | None = None,
    ) -> datetime | None:
        """When the next job becomes claimable: due, or its lease runs out."""
        return due.next_due(
            self._sessions,
            dialect=self.sa_engine.dialect.name,
            now=now,
            queues=queues,
            workflows=workflows,
        )

    def requeue(self, dead_letter_id: int, *, now: datetime) -> int | None:
        """Move a dead letter back to the queue as a fresh job; its new id (or ``None``)."""
        with self._sessions.begin() as session:
            return requeue_into(
                session, jobs, dead_letter_id, max_attempts=self.max_attempts, now=now
            )

    # ── inspection ─────────────────────────────────────────────────────────────

    def live_run_ids(self, session: Session, run_ids: Collection[int]) -> set[int]:
        """Which of ``run_ids`` have a job row (queued or claimed) that can be run.

        A row that cannot be run as it stands (:mod:`durable_sa.queue.defects`) is not a
        live job: ``recover()`` gives its run a sound one.
        """
        if not run_ids:
            return set()
        rows = session.execute(
            select(jobs.c.run_id)
            .join(runs_table, runs_table.c.id == jobs.c.run_id)
            .where(jobs.c.run_id.in_(list(run_ids)), not_(defective(jobs)))
            .distinct()
        )
        return {int(r) for r in rows.scalars()}

    def pending_count(self) -> int:
        """Rows in the jobs table (dead letters live in their own table)."""
        with self._sessions() as session:
            return int(session.execute(select(func.count()).select_from(jobs)).scalar_one())

    def clear(self) -> None:
        """Delete every job row."""
        with self._sessions.begin() as session:
            session.execute(delete(jobs))
