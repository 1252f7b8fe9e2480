"""The schema: ORM entities on durable-sa's own ``MetaData``.

Rules:
- These classes *are* the schema: ``metadata`` (exported) is what ``create_tables`` and an
  application's Alembic environment use. Every table starts with ``durable_``.
- Users may query them freely (``session.get(WorkflowRun, run_id)``); only the engine
  writes them, through :mod:`durable_sa.store.apply`.
- The indexes are the ones the engine's queries need: claiming due jobs by
  (queue, available_at), finding a run's jobs, children by parent, runs by status, and
  the unique (run_id, step_id) that makes a duplicate journal write a no-op.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, cast

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from durable_sa.core.status import RunStatus
from durable_sa.store.types import JSONColumn, StatusType, UTCDateTime

TABLE_PREFIX = "durable_"

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)
"""durable-sa's tables; include it in an Alembic ``target_metadata`` list."""

BigId = BigInteger().with_variant(Integer, "sqlite")

DEBOUNCING = "debounce_key IS NOT NULL AND status = 'pending'"
"""The runs a debounced start may collapse into: pending, under a debounce key."""


def utcnow() -> datetime:
    """Now, timezone-aware UTC (the default for timestamp columns)."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base bound to :data:`metadata`."""

    metadata = metadata
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        RunStatus: StatusType(),
    }


class WorkflowRun(Base):
    """One execution of a workflow: where it stands and what it has gathered."""

    __tablename__ = f"{TABLE_PREFIX}runs"
    __table_args__ = (
        Index(None, "status", "id"),
        Index(None, "workflow_name", "status"),
        # Most runs have neither a key nor a parent: partial indexes skip them, so a start
        # does not pay for them and the indexes stay small however long the history.
        Index(
            None,
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
            sqlite_where=text("idempotency_key IS NOT NULL"),
        ),
        # One pending run per debounce key: a start within the window updates it.
        Index(
            None,
            "workflow_name",
            "debounce_key",
            unique=True,
            postgresql_where=text(DEBOUNCING),
            sqlite_where=text(DEBOUNCING),
        ),
        Index(
            None,
            "parent_run_id",
            postgresql_where=text("parent_run_id IS NOT NULL"),
            sqlite_where=text("parent_run_id IS NOT NULL"),
        ),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, Identity(), primary_key=True)
    workflow_name: Mapped[str] = mapped_column(String(255))
    workflow_version: Mapped[str | None] = mapped_column(String(255))
    input: Mapped[dict[str, Any]] = mapped_column(JSONColumn, default=dict)
    status: Mapped[RunStatus] = mapped_column(default=RunStatus.PENDING)
    state: Mapped[dict[str, Any]] = mapped_column(JSONColumn, default=dict)
    current_step: Mapped[int] = mapped_column(default=0)
    total_steps: Mapped[int] = mapped_column(default=0)
    attempt: Mapped[int] = mapped_column(default=1)
    compensation_cursor: Mapped[int | None]
    parent_run_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey(f"{TABLE_PREFIX}runs.id", ondelete="CASCADE")
    )
    parent_step_id: Mapped[str | None] = mapped_column(String(512))
    awaiting_signal: Mapped[str | None] = mapped_column(String(255))
    """The signal a suspended signal step waits for."""
    wait_kind: Mapped[str | None] = mapped_column(String(16))
    """What a suspended run waits for: ``signal``, ``agent`` or ``child``."""
    wait_step: Mapped[str | None] = mapped_column(String(512))
    """The step that waits."""
    resume_data: Mapped[Any | None] = mapped_column(JSONColumn)
    """The payload of the last resume, until the step that reads it has run."""
    wake_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONColumn)
    revision: Mapped[int] = mapped_column(default=0)
    """Bumped by every write of the row, so a worker can apply a step's outcome with one
    compare-and-set statement instead of locking the run first."""
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    concurrency_key: Mapped[str | None] = mapped_column(String(255))
    """The key a per-key limit counts the run under (``start(concurrency_key=...)``)."""
    priority: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    """Lower runs first: among pending runs, and the run's jobs among due jobs."""
    debounce_key: Mapped[str | None] = mapped_column(String(255))
    """Starts with this key within the debounce window collapse into this run."""
    begin_at: Mapped[datetime | None]
    """A debounced run begins at this time (the last start of its key plus the window)."""
    limited: Mapped[bool] = mapped_column(default=False, server_default=false())
    """The run's workflow has limits: while it is active it holds a place in
    ``durable_slots``, given back in the transaction that ends it."""
    trace_context: Mapped[dict[str, Any] | None] = mapped_column(JSONColumn)
    """The W3C trace context (``traceparent``, ``tracestate``) of the run's start, captured
    from the caller's current span in the caller's transaction: the run's step spans,
    run by any worker later, join that trace (:mod:`durable_sa.telemetry`)."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    journal: Mapped[list[JournalEntry]] = relationship(
        back_populates="run", order_by="JournalEntry.id", viewonly=True
    )
    children: Mapped[list[WorkflowRun]] = relationship(
        back_populates="parent", order_by="WorkflowRun.id", viewonly=True
    )
    parent: Mapped[WorkflowRun | None] = relationship(
        back_populates="children", remote_side="WorkflowRun.id", viewonly=True
    )

    def __repr__(self) -> str:
        return (
            f"<WorkflowRun {self.id} {self.workflow_name!r} {self.status} "
            f"step={self.current_step}/{self.total_steps}>"
        )


class Slots(Base):
    """The active runs of a workflow with limits, counted where starts serialize.

    One row per workflow (``concurrency_key`` ``''``) and one per key of a per-key limit.
    ``active`` is changed only by guarded statements made with the row locked, in the
    transaction that starts, admits or ends a run, so the count is exact at READ
    COMMITTED with any number of workers (:mod:`durable_sa.engine.limits`).
    ``max_active`` is the limit the last start declared (``NULL``: none).
    """

    __tablename__ = f"{TABLE_PREFIX}slots"

    workflow_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    concurrency_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    active: Mapped[int] = mapped_column(default=0)
    max_active: Mapped[int | None]

    def __repr__(self) -> str:
        key = self.concurrency_key or "*"
        return f"<Slots {self.workflow_name!r}[{key}] {self.active}/{self.max_active}>"


class JournalEntry(Base):
    """A checkpoint: one step, or one unit of a step (``p#x``, ``loop#iter2``...)."""

    __tablename__ = f"{TABLE_PREFIX}journal"
    __table_args__ = (
        UniqueConstraint("run_id", "step_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, Identity(), primary_key=True)
    run_id: Mapped[int] = mapped_column(
        BigId, ForeignKey(f"{TABLE_PREFIX}runs.id", ondelete="CASCADE")
    )
    step_id: Mapped[str] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(16))
    result: Mapped[Any] = mapped_column(JSONColumn, nullable=True)
    error: Mapped[str | None] = mapped_column(Text)
    """A failed unit's error, ``Type: message``."""
    error_type: Mapped[str | None] = mapped_column(String(255))
    """A failed unit's exception type (``KeyError``, ``myapp.billing.CardDeclined``)."""
    traceback: Mapped[str | None] = mapped_column(Text)
    """Where a failed unit's exception was raised (its last 8,000 characters)."""
    attempt: Mapped[int] = mapped_column(default=1)
    completed_at: Mapped[datetime] = mapped_column(default=utcnow)

    run: Mapped[WorkflowRun] = relationship(back_populates="journal", viewonly=True)

    def __repr__(self) -> str:
        return f"<JournalEntry run={self.run_id} {self.step_id!r} {self.status}>"


class Job(Base):
    """A queued job of the built-in jobs-table backend.

    A job is *claimed* by setting ``claimed_by``/``claimed_until`` (a lease); it is
    acknowledged by deleting it in the transaction that applies its outcome, so a job
    and its effect commit together. A claim whose lease expired may be taken over.
    """

    __tablename__ = f"{TABLE_PREFIX}jobs"
    __table_args__ = (
        # The claim's order: priority (lower first), then due order.
        Index(None, "queue", "priority", "available_at", "id"),
        # Workers that take every queue claim in due order: without this index each claim
        # sorts the whole backlog.
        Index(None, "priority", "available_at", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, Identity(), primary_key=True)
    queue: Mapped[str] = mapped_column(String(64), default="default")
    kind: Mapped[str] = mapped_column(String(32))
    run_id: Mapped[int] = mapped_column(
        BigId, ForeignKey(f"{TABLE_PREFIX}runs.id", ondelete="CASCADE"), index=True
    )
    workflow_name: Mapped[str] = mapped_column(String(255), default="")
    workflow_version: Mapped[str | None] = mapped_column(String(255))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONColumn)
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=5)
    available_at: Mapped[datetime] = mapped_column(default=utcnow)
    priority: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    """The run's priority: a claim takes due jobs lower priority first."""
    claimed_by: Mapped[str | None] = mapped_column(String(255))
    claimed_until: Mapped[datetime | None]
    claimed_alone: Mapped[bool] = mapped_column(server_default=false())
    """Whether the claim was made with no other job in the claimer's hand: taking over
    a job whose lease ran out counts an attempt only then (see
    :mod:`durable_sa.queue.claims`)."""
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.kind} run={self.run_id} queue={self.queue!r}>"


class OutboxEntry(Base):
    """A job waiting to be relayed to an outside broker (the relay backends' outbox).

    The engine's transaction inserts it beside the checkpoint that decided it, exactly
    as the jobs table would hold the job, so a job reaches the broker if and only if its
    decision commits. A relay publishes rows that are due, in due order, and stamps
    ``published_at``; published rows are kept for a while (to answer "was it sent?")
    and then pruned. A job delayed by a sleep or a backoff stays here, unpublished,
    until it is due: the broker only ever holds work that can run now.
    """

    __tablename__ = f"{TABLE_PREFIX}outbox"
    __table_args__ = (
        # The relay's pick: due rows not yet published. Partial, so published history
        # waiting to be pruned costs the pick nothing.
        Index(
            "ix_durable_outbox_unpublished",
            "available_at",
            "id",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
        Index(
            "ix_durable_outbox_published",
            "published_at",
            postgresql_where=text("published_at IS NOT NULL"),
            sqlite_where=text("published_at IS NOT NULL"),
        ),
        # The relay's look for rows run in place whose worker died. Partial: only rows
        # a worker holds now are in it.
        Index(
            "ix_durable_outbox_taken",
            "claimed_until",
            postgresql_where=text("claimed_until IS NOT NULL"),
            sqlite_where=text("claimed_until IS NOT NULL"),
        ),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, Identity(), primary_key=True)
    queue: Mapped[str] = mapped_column(String(64), default="default")
    kind: Mapped[str] = mapped_column(String(32))
    run_id: Mapped[int] = mapped_column(
        BigId, ForeignKey(f"{TABLE_PREFIX}runs.id", ondelete="CASCADE"), index=True
    )
    workflow_name: Mapped[str] = mapped_column(String(255), default="")
    workflow_version: Mapped[str | None] = mapped_column(String(255))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONColumn)
    attempts: Mapped[int] = mapped_column(default=0)
    """Deliveries already used up by earlier copies of this job (a released job)."""
    max_attempts: Mapped[int] = mapped_column(default=5)
    redeliveries: Mapped[int] = mapped_column(default=0)
    """Times a broker that cannot count them itself (Celery) delivered the job again."""
    available_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_at: Mapped[datetime | None]
    published_by: Mapped[str | None] = mapped_column(String(255))
    claimed_until: Mapped[datetime | None]
    """Set while the worker named in ``published_by`` runs the job in place (it wrote
    the row as the next step of a run it had just committed, and never sent it to the
    broker): its lease. A relay publishes the row once the lease has run out."""
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        sent = "unpublished" if self.published_at is None else f"published {self.published_at}"
        return f"<OutboxEntry {self.id} {self.kind} run={self.run_id} {sent}>"


class DeadLetter(Base):
    """A job that could not be run, kept with the reason so it can be requeued."""

    __tablename__ = f"{TABLE_PREFIX}dead_letters"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(BigId, Identity(), primary_key=True)
    job_id: Mapped[int] = mapped_column(BigId)
    queue: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    run_id: Mapped[int | None] = mapped_column(BigId, index=True)
    payload: Mapped[Any] = mapped_column(JSONColumn, nullable=True)
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str] = mapped_column(Text)
    failed_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]
    """When the dead letter stopped mattering: its job was requeued, or its run recovered."""
    resolved_by: Mapped[str | None] = mapped_column(String(32))
    """What resolved it: ``requeue`` or ``recover``. Open dead letters have neither."""

    def __repr__(self) -> str:
        return f"<DeadLetter {self.id} {self.kind} run={self.run_id}: {self.error[:60]!r}>"


class PendingSignal(Base):
    """A signal ``send`` kept for a run that was not yet waiting for it.

    The run's next ``wait_for_signal`` on that signal takes the oldest one (by ``id``)
    and deletes it in the transaction that completes the step; a run that ends leaves
    its unread signals here until it is pruned (or deleted, by cascade).
    """

    __tablename__ = f"{TABLE_PREFIX}signals"
    __table_args__ = (
        Index(None, "run_id", "signal", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, Identity(), primary_key=True)
    run_id: Mapped[int] = mapped_column(
        BigId, ForeignKey(f"{TABLE_PREFIX}runs.id", ondelete="CASCADE")
    )
    signal: Mapped[str] = mapped_column(String(255))
    data: Mapped[Any] = mapped_column(JSONColumn, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"<PendingSignal {self.id} run={self.run_id} {self.signal!r}>"


class WorkerRecord(Base):
    """A live worker process, as its heartbeat last described it.

    Operators read this table to see who is working; ``status`` reads it to tell whether
    any live worker has the definition version a run is pinned to.
    """

    __tablename__ = f"{TABLE_PREFIX}workers"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int]
    concurrency: Mapped[int]
    queues: Mapped[list[str] | None] = mapped_column(JSONColumn)
    workflows: Mapped[dict[str, str]] = mapped_column(JSONColumn, default=dict)
    in_flight: Mapped[int] = mapped_column(default=0)
    processed: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    """When the worker counts as dead if it has not beaten again (a few heartbeats on)."""

    def __repr__(self) -> str:
        return f"<WorkerRecord {self.id} pid={self.pid} in_flight={self.in_flight}>"


class Schedule(Base):
    """A cron schedule: which workflow to start, when, and what it did last.

    Workers fire due rows (``next_fire_at`` reached, or a ``buffer_one`` tick waiting)
    in the transaction that starts their runs and advances ``next_fire_at``; see
    :mod:`durable_sa.engine.schedules`. ``input`` is ``NULL`` when the input is made by a
    callable registered in the firing process (``input_callable``).
    """

    __tablename__ = f"{TABLE_PREFIX}schedules"
    __table_args__ = (Index(None, "paused", "next_fire_at"),)

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    workflow_name: Mapped[str] = mapped_column(String(255))
    cron: Mapped[str] = mapped_column(String(255))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    input: Mapped[dict[str, Any] | None] = mapped_column(JSONColumn)
    input_callable: Mapped[bool] = mapped_column(server_default=false())
    overlap: Mapped[str] = mapped_column(String(16), default="skip")
    catchup_window: Mapped[float | None]
    """Seconds; ``NULL``: no catch-up after downtime."""
    next_fire_at: Mapped[datetime | None]
    """The earliest tick not yet fired or passed over; ``NULL`` when none will come."""
    buffered_at: Mapped[datetime | None]
    """The tick ``buffer_one`` keeps waiting for the active run to end."""
    last_fired_at: Mapped[datetime | None]
    last_run_id: Mapped[int | None] = mapped_column(BigId)
    """The run of the last tick started (no foreign key: pruning a run keeps its schedule)."""
    last_error: Mapped[str | None] = mapped_column(Text)
    """Why the last firing could not start its run, if it could not."""
    paused: Mapped[bool] = mapped_column(server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"<Schedule {self.name!r} {self.cron!r} {self.timezone} -> {self.workflow_name!r}>"


class RateLimitRecord(Base):
    """A shared rate limit: at most ``limit`` executions begin per ``per_ms`` milliseconds.

    Set with ``engine.set_rate_limit``; every worker reads it when a step naming it is
    about to begin, so a change takes effect at once. Its row is locked while a grant is
    decided, which makes the count exact across workers.
    """

    __tablename__ = f"{TABLE_PREFIX}rate_limits"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    limit: Mapped[int]
    per_ms: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"<RateLimitRecord {self.name!r} {self.limit} per {self.per_ms} ms>"


class RateGrant(Base):
    """An execution a rate limit let begin, at ``granted_at`` by the database's clock.

    Grants older than their limit's window are deleted by the next grant of that limit.
    """

    __tablename__ = f"{TABLE_PREFIX}rate_grants"
    __table_args__ = (Index(None, "name", "granted_at"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(BigId, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    granted_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"<RateGrant {self.id} {self.name!r} at {self.granted_at}>"


class PausedWorkflow(Base):
    """A paused workflow: no job of its runs is claimed until ``engine.unpause``."""

    __tablename__ = f"{TABLE_PREFIX}paused_workflows"

    workflow_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    paused_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"<PausedWorkflow {self.workflow_name!r}>"


# Core handles on the same tables, for the engine's hot path (typed as ``Table``).
runs_table = cast("Table", WorkflowRun.__table__)
journal_table = cast("Table", JournalEntry.__table__)
jobs_table = cast("Table", Job.__table__)
dead_letters_table = cast("Table", DeadLetter.__table__)
outbox_table = cast("Table", OutboxEntry.__table__)
workers_table = cast("Table", WorkerRecord.__table__)
signals_table = cast("Table", PendingSignal.__table__)
slots_table = cast("Table", Slots.__table__)
schedules_table = cast("Table", Schedule.__table__)
rate_limits_table = cast("Table", RateLimitRecord.__table__)
rate_grants_table = cast("Table", RateGrant.__table__)
paused_table = cast("Table", PausedWorkflow.__table__)
