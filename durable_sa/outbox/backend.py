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
"""

from __future__ import annotations

import abc
import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Final

from sqlalchemy import Engine, delete, event, func, insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from durable_sa.errors import InvalidArgumentError
from durable_sa.outbox.message import OutboxMessage
from durable_sa.queue import dead_letters
from durable_sa.queue.claims import runs_by_id
from durable_sa.queue.protocol import Claim, ClaimedJob, ClaimKind
from durable_sa.queue.rows import job_row, overrides_producer, requeued_row
from durable_sa.queue.wake import WakeCallbacks
from durable_sa.store.models import outbox_table, runs_table
from durable_sa.store.statements import OUTBOX_ROWS, QueueRows

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

    from sqlalchemy import Connection

    from durable_sa.core.jobs import JobSpec

logger = logging.getLogger(__name__)

outbox = outbox_table

DEFAULT_QUEUE: Final = "default"
DEFAULT_MAX_ATTEMPTS: Final = 5
DEFAULT_KEEP_PUBLISHED: Final = timedelta(hours=1)
DEFER_DELAY: Final = timedelta(seconds=5)
"""How long a job no consumer here can run waits before it is offered again (the engine's
delivery policy uses the same delay for every backend)."""


def message_from_row(row: Mapping[Any, Any]) -> OutboxMessage:
    """The message for an outbox row (as mapped by SQLAlchemy)."""
    return OutboxMessage(
        id=int(row["id"]),
        queue=row["queue"],
        kind=row["kind"],
        run_id=int(row["run_id"]),
        workflow=row["workflow_name"],
        version=row["workflow_version"],
        payload=row["payload"],
        attempts=int(row["attempts"]),
        max_attempts=int(row["max_attempts"]),
        available_at=row["available_at"],
        redeliveries=int(row["redeliveries"]),
    )


class OutboxBackend(abc.ABC):
    """Producer half on the outbox table; subclasses add a broker's consumer half.

    Subclasses implement :meth:`publish` (relay side) and the consuming methods
    :meth:`claim`, :meth:`settle`, :meth:`renew`, :meth:`release_claims`,
    :meth:`next_due`, :meth:`broker_run_ids`, :meth:`broker_pending` and
    :meth:`broker_clear`. A backend whose messages are consumed by another system
    (Celery's own workers) returns ``None`` from ``claim``.
    """

    name: ClassVar[str] = "outbox"
    consumed_by_workers: ClassVar[bool] = True
    """Whether durable-sa workers consume this broker (False: its own workers do)."""
    tracks_delivery: ClassVar[bool] = False
    """Whether a row stays in the outbox until its job is done, deleted in the
    transaction that applies the job's outcome. For brokers that may lose a message
    without telling anyone (Celery): the relay publishes again a row still there
    ``redeliver_after`` after its last publication."""
    redeliver_after: timedelta | None = None
    applier_writes_rows: ClassVar[bool] = True
    """Whether the applier may write outbox rows itself, in the statement that applies a
    group (PostgreSQL). A subclass that overrides a producer method gets ``False``."""
    queue_rows: ClassVar[QueueRows] = OUTBOX_ROWS
    claims_on_connection: ClassVar[bool] = False
    """Claims read the broker: a worker lends them no database connection."""
    claims_wait: ClassVar[bool] = True
    """A claim with ``wait`` may block until the broker has messages."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        """A subclass that changes how rows are written has its own methods called."""
        super().__init_subclass__(**kwargs)
        if overrides_producer(cls, OutboxBackend):
            cls.applier_writes_rows = False

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
        self._held: dict[int, OutboxMessage] = {}
        self._in_place: set[int] = set()
        """Held jobs whose outbox rows this process wrote already taken (run in place)."""
        self._held_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} queue={self.queue!r} url={self.sa_engine.url!r}>"

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
        return [job.id for job in jobs if self.tracks_delivery or self.runs_in_place(job.id)]

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

    def runs_in_place(self, job_id: int) -> bool:
        """True when this process holds job ``job_id`` as a row it wrote taken (in place)."""
        with self._held_lock:
            return job_id in self._in_place

    def _split(self, job_ids: Collection[int]) -> tuple[list[int], list[int]]:
        """``job_ids`` as (held in place, delivered by the broker)."""
        with self._held_lock:
            taken = self._in_place & set(job_ids)
        return [i for i in job_ids if i in taken], [i for i in job_ids if i not in taken]

    # ── relay side ─────────────────────────────────────────────────────────────

    @abc.abstractmethod
    def publish(self, messages: Sequence[OutboxMessage]) -> None:
        """Hand ``messages`` to the broker; return only once it holds every one of them.

        Raise if any could not be published: the relay then leaves all of them
        unpublished and retries. Publishing a message twice must be harmless for the
        broker (the engine drops the duplicate when it is delivered).
        """

    # ── consumer side: what the engine calls ───────────────────────────────────

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

    def ack(self, session: Session, job: ClaimedJob) -> None:
        """Settle the broker's message once ``session`` commits (never on rollback).

        With ``tracks_delivery``, or for a job run in place, the job's outbox row is
        deleted in ``session`` too.
        """
        self.ack_all(session, [job])

    def release(self, job: ClaimedJob, *, error: str, retry_at: datetime) -> None:
        """Write the job back to the outbox, due at ``retry_at``; settle the delivery."""
        message = self._message_of(job)
        with self._sessions.begin() as session:
            if self._forget_row(session, job.id):
                self._write_back(session, message, attempts=job.attempts, due=retry_at, error=error)
        self._settle_quietly(job)

    def defer(self, job: ClaimedJob, *, until: datetime, reason: str) -> None:
        """Offer a delivered job again at ``until`` (no attempt used); settle the delivery.

        The engine calls this for a job whose run's definition this process lacks.
        """
        self.defer_message(self._message_of(job), until=until, reason=reason)
        self._settle_quietly(job)

    def defer_message(self, message: OutboxMessage, *, until: datetime, reason: str) -> int | None:
        """Offer a delivered message again at ``until`` (no attempt used); the new job id.

        ``None`` when another delivery of the same job already finished it.

        For a job this consumer cannot run (a workflow or version it does not define): a
        worker that has it will take it then.
        """
        with self._sessions.begin() as session:
            if not self._forget_row(session, message.id):
                return None
            return self._write_back(
                session,
                message,
                attempts=message.attempts + message.redeliveries,
                due=until,
                error=reason,
            )

    def dead_letter_unreadable(self, *, queue: str, raw: Mapping[str, Any], error: str) -> None:
        """Record a broker message that is no job document at all (kind ``unreadable``).

        ``raw`` is whatever the broker gave (as text), kept for the operator; such a
        dead letter cannot be requeued, since it names no run.
        """
        logger.error(error, extra={"action": "dead_letter"})
        job = ClaimedJob(
            id=0,
            queue=queue,
            kind="unreadable",
            run_id=None,
            payload=dict(raw),
            attempts=1,
            max_attempts=self.max_attempts,
            available_at=datetime.now(UTC),
        )
        with self._sessions.begin() as session:
            dead_letters.record(session, job, error=error)

    def count_redelivery(self, job_id: int) -> int | None:
        """Count one more redelivery of job ``job_id``; how many so far.

        For brokers that say a message is delivered again but not how often: the count
        lives on the outbox row, so a job that kills every consumer runs out of attempts.
        ``None``: the row is gone, so the job is over (done, given back as a new row, or
        dead-lettered) and this delivery is a stale copy.
        """
        with self._sessions.begin() as session:
            count = session.execute(
                update(outbox)
                .where(outbox.c.id == job_id)
                .values(redeliveries=outbox.c.redeliveries + 1)
                .returning(outbox.c.redeliveries)
            ).scalar()
        return None if count is None else int(count)

    def redeliveries_of(self, job_id: int) -> int | None:
        """The redeliveries counted for job ``job_id``; ``None`` when its row is gone."""
        with self._sessions() as session:
            count = session.execute(
                select(outbox.c.redeliveries).where(outbox.c.id == job_id)
            ).scalar()
        return None if count is None else int(count)

    def dead_letter(self, job: ClaimedJob, *, error: str) -> None:
        """Record the job in ``durable_dead_letters``, then settle its delivery."""
        with self._sessions.begin() as session:
            if self._forget_row(session, job.id):
                dead_letters.record(session, job, error=error)
        self._settle_quietly(job)

    def _forget_row(self, session: Session, job_id: int) -> bool:
        """End the job's outbox record (``tracks_delivery``); False if it had already ended.

        Two copies of one job may be delivered at once (the broker's redelivery and the
        relay's second publication): only the first to end the record may write a dead
        letter or a retry, so a job is never dead-lettered or released twice.
        """
        if not self.tracks_delivery and not self.runs_in_place(job_id):
            return True
        result = session.execute(delete(outbox).where(outbox.c.id == job_id))
        return bool(getattr(result, "rowcount", 0))

    def requeue(self, dead_letter_id: int, *, now: datetime) -> int | None:
        """Move a dead letter back to the outbox, due now; its new job id (or ``None``)."""
        with self._sessions.begin() as session:
            taken = dead_letters.take(session, dead_letter_id)
            if taken is None:
                return None
            row_id = session.execute(
                insert(outbox)
                .values(requeued_row(taken, max_attempts=self.max_attempts, now=now))
                .returning(outbox.c.id)
            ).scalar_one()
            self._wake.after_commit(session)
        return int(row_id)

    def _message_of(self, job: ClaimedJob) -> OutboxMessage:
        message = self.held_message(job.id)
        if message is not None:
            return message
        # Delivered through another instance: the workflow is the run's.
        with self._sessions() as session:
            row = session.execute(
                select(runs_table.c.workflow_name, runs_table.c.workflow_version).where(
                    runs_table.c.id == job.run_id
                )
            ).first()
        return OutboxMessage(
            id=job.id,
            queue=job.queue,
            kind=job.kind,
            run_id=job.run_id or 0,
            workflow=row.workflow_name if row else "",
            version=row.workflow_version if row else None,
            payload=job.payload,
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            available_at=job.available_at,
        )

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

    @abc.abstractmethod
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
        """Take the next message for ``worker`` from the broker (``None``: none came)."""

    def claim_batch(  # noqa: PLR0913 - the worker's claim, every option keyword-only
        self,
        *,
        now: datetime,
        worker: str,
        lease: timedelta,
        limit: int,
        queues: Sequence[str] | None = None,
        workflows: Mapping[str, str] | None = None,
        fifo: bool = False,
        connection: Connection | None = None,  # noqa: ARG002 - claims read the broker
        kind: ClaimKind = ClaimKind.BATCH,
        wait: bool = True,
    ) -> list[Claim]:
        """Take up to ``limit`` messages for ``worker``'s pipeline, with their runs.

        ``wait`` lets the read wait for the broker (a worker with nothing in hand). The
        runs of the batch are read in one statement after it. Only batches are claimed:
        a delivery whose consumer died is taken over by the broker's own redelivery (or
        the relay, for a row run in place).
        """
        if limit <= 0 or kind is not ClaimKind.BATCH:
            return []
        jobs = self.claim_many(
            now=now,
            worker=worker,
            lease=lease,
            limit=limit,
            queues=queues,
            workflows=workflows,
            fifo=fifo,
            wait=wait,
        )
        if not jobs:
            return []
        with self.sa_engine.connect() as conn:
            runs = runs_by_id(conn, [job.run_id for job in jobs])
        return [Claim(job=job, run=runs.get(job.run_id or 0)) for job in jobs]

    def claim_many(  # noqa: PLR0913 - every option is keyword-only
        self,
        *,
        now: datetime,
        worker: str,
        lease: timedelta,
        limit: int,  # noqa: ARG002 - one at a time unless a broker reads batches
        queues: Sequence[str] | None = None,
        workflows: Mapping[str, str] | None = None,
        fifo: bool = False,
        wait: bool = True,  # noqa: ARG002 - claim() waits as its broker does
    ) -> list[ClaimedJob]:
        """Take up to ``limit`` messages (a broker that can read a batch overrides this)."""
        job = self.claim(
            now=now, worker=worker, lease=lease, queues=queues, workflows=workflows, fifo=fifo
        )
        return [] if job is None else [job]

    def has_lapsed(
        self,
        *,
        now: datetime,  # noqa: ARG002
        queues: Sequence[str] | None = None,  # noqa: ARG002
        workflows: Mapping[str, str] | None = None,  # noqa: ARG002
    ) -> bool:
        """Always False: the broker redelivers a dead consumer's messages itself."""
        return False

    def renew(self, job_ids: Collection[int], *, worker: str, until: datetime) -> int:
        """Extend ``worker``'s hold on ``job_ids``; how many it holds.

        Rows run in place get a new lease in the database; broker deliveries are
        renewed with :meth:`renew_deliveries`.
        """
        in_place, delivered = self._split(job_ids)
        held = self._update_taken(in_place, worker, {"claimed_until": until})
        if delivered:
            held += self.renew_deliveries(delivered, worker=worker, until=until)
        return held

    def release_claims(self, job_ids: Collection[int], *, worker: str) -> int:
        """Give ``worker``'s jobs of ``job_ids`` back now, for any consumer.

        A row run in place becomes an unpublished row, due now, that a relay publishes;
        broker deliveries go back with :meth:`release_deliveries`.
        """
        in_place, delivered = self._split(job_ids)
        unpublished = {"published_at": None, "published_by": None, "claimed_until": None}
        released = self._update_taken(in_place, worker, unpublished)
        for job_id in in_place:
            self.forget(job_id)
        if delivered:
            released += self.release_deliveries(delivered, worker=worker)
        return released

    def _update_taken(self, job_ids: list[int], worker: str, values: dict[str, Any]) -> int:
        """Set ``values`` on the rows of ``job_ids`` that ``worker`` holds taken; how many."""
        if not job_ids:
            return 0
        with self._sessions.begin() as session:
            result = session.execute(
                update(outbox)
                .where(
                    outbox.c.id.in_(job_ids),
                    outbox.c.published_by == worker,
                    outbox.c.claimed_until.is_not(None),
                )
                .values(values)
            )
            self._wake.after_commit(session)  # a row given back: the relay publishes it
        return int(getattr(result, "rowcount", 0) or 0)

    @abc.abstractmethod
    def renew_deliveries(self, job_ids: Collection[int], *, worker: str, until: datetime) -> int:
        """Extend ``worker``'s hold on the broker's deliveries of ``job_ids``; how many."""

    @abc.abstractmethod
    def release_deliveries(self, job_ids: Collection[int], *, worker: str) -> int:
        """Give ``worker``'s broker deliveries of ``job_ids`` back to the broker now."""

    @abc.abstractmethod
    def next_due(
        self,
        *,
        now: datetime,
        queues: Sequence[str] | None = None,
        workflows: Mapping[str, str] | None = None,
    ) -> datetime | None:
        """When a consumer should look again (``now`` if ``claim`` waits by itself)."""

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
