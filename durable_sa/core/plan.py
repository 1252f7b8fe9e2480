"""Write plans: what one decision writes, as plain values the one applier executes.

Rules:
- A :class:`WritePlan` is the complete list of writes of one decision: the run row's new
  columns guarded by a compare-and-set on the revision the decision was made at, journal
  rows, jobs to insert, the job it acknowledges, the run's other jobs to discard, a run
  to create (a start or a child) and the parent to settle. The applier adds nothing and
  decides nothing, except the parent's own decision when a child settles (made by the
  core too, with the parent locked).
- Every run a plan touches moves only by the status table: :func:`plan_transition`
  refuses an illegal move before anything is written.
- Which plans may be applied without a row lock, grouped with other runs' plans in one
  commit, is the core's call: :data:`LOCK_FREE_FIELDS` lists the :class:`Transition`
  fields a compare-and-set write covers, :data:`LOCKED_FIELDS` those that need the rows
  they reach locked (a parent waiting for a child). A test holds the two sets to the
  fields of :class:`Transition`, so a new field is never silently dropped.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

import attrs

from durable_sa.core.admission import Limits
from durable_sa.core.codec import JSONObject
from durable_sa.core.endings import HOOKED_STATE
from durable_sa.core.jobs import AdvanceJob, JobSpec
from durable_sa.core.snapshot import JournalWrite, RunSnapshot
from durable_sa.core.status import RunEvent, RunStatus, is_legal_move
from durable_sa.core.transition import ChildSpawn, ParentSettlement, Transition
from durable_sa.errors import IllegalTransition

RUN_WRITE_FIELDS: Final = (
    "status",
    "current_step",
    "attempt",
    "compensation_cursor",
    "state",
    "result",
    "awaiting_signal",
    "wait_kind",
    "wait_step",
    "resume_data",
    "wake_at",
    "error",
)
"""The run columns a decision may change; a plan writes all of them (compare-and-set)."""

LOCK_FREE_FIELDS: Final = frozenset(
    {"event", "before", "after", "journal", "jobs", "drop_jobs", "spawn"}
)
"""Transition fields a compare-and-set on the run's revision makes safe without a lock:
they touch only the run itself, its journal and jobs, or a child run that is new."""
LOCKED_FIELDS: Final = frozenset({"settle_parent", "take_buffered", "consume_signal"})
"""Transition fields that reach another existing run (the parent), which must be locked
(child first, then parent) while its own decision is made and applied, or the run's
buffered signals, read and deleted with the run row held by the plan's own write: such
plans are applied alone."""


@attrs.frozen(kw_only=True)
class NewRun:
    """A run to insert, running at step 0, with its first advance job due at ``due``."""

    workflow_name: str
    workflow_version: str | None
    total_steps: int
    input: JSONObject
    due: datetime
    parent_run_id: int | None = None
    parent_step_id: str | None = None
    idempotency_key: str | None = None
    """With a key, a run that already holds it is returned instead of a new one."""
    state: JSONObject = attrs.field(factory=dict)
    """The run's initial state: empty, or the engine's own keys (an ``on_finish`` hook)."""
    concurrency_key: str | None = None
    priority: int = 0
    limits: Limits | None = None
    """The workflow's limits: the run is inserted pending and admitted when it may begin
    (:mod:`durable_sa.engine.limits`). ``None``: it begins at once."""
    debounce_key: str | None = None
    """Starts with this key collapse into one pending run until ``due`` (which a later
    start moves on); the run begins then (:mod:`durable_sa.core.begin`)."""
    trace_context: JSONObject | None = None
    """A child run: its parent's stored trace context, which its own start continues
    (``None`` for a start: the shell captures the caller's current span)."""

    @property
    def limited(self) -> bool:
        """True when the run is counted against its workflow's limits."""
        return self.limits is not None and self.limits.any

    @property
    def plain(self) -> bool:
        """True for a run started the plain way: no limits, default priority."""
        return not self.limited and self.priority == 0 and self.debounce_key is None

    def first_job(self, run_id: int) -> JobSpec:
        """The advance job of step 0, once the run's id is known."""
        return JobSpec(
            payload=AdvanceJob(run_id=run_id, step_index=0),
            available_at=self.due,
            workflow=self.workflow_name,
            version=self.workflow_version,
            priority=self.priority,
        )


@attrs.frozen(kw_only=True)
class Release:
    """A limited run ended: give back its place and admit what may begin now."""

    workflow_name: str
    concurrency_key: str | None = None


@attrs.frozen(kw_only=True)
class WritePlan:
    """Everything one decision writes, applied atomically (or not at all)."""

    run_id: int | None = None
    """The run whose row is written; ``None`` for a plan that only creates a run or only
    acknowledges a job."""
    revision: int | None = None
    """Compare-and-set: the run row is written only if it still has this revision."""
    run: RunSnapshot | None = None
    """The run as it must become (its :data:`RUN_WRITE_FIELDS` are written)."""
    event: RunEvent | None = None
    journal: tuple[JournalWrite, ...] = ()
    jobs: tuple[JobSpec, ...] = ()
    drop_jobs: bool = False
    """Discard the run's other queued jobs before inserting ``jobs``."""
    acknowledge: int | None = None
    """The id of the job this plan finishes (deleted, or settled with its broker)."""
    continue_until: datetime | None = None
    """Set when the first job is the run's next step due now: it is inserted already
    claimed by the applying worker until then, and run in place."""
    create: NewRun | None = None
    settle_parent: ParentSettlement | None = None
    take_buffered: str | None = None
    """After writing the run, deliver the oldest signal buffered under this name."""
    consume_signal: int | None = None
    """The buffered signal this plan delivers: its row is deleted."""
    release: Release | None = None
    """The run ends holding a place under its workflow's limits: the place is given
    back, and the next pending run admitted, in the same transaction."""
    admit: str | None = None
    """A limited run's debounce window has passed: admit the pending runs of this
    workflow that may begin now, in the same transaction."""

    @property
    def lock_free(self) -> bool:
        """True when the plan may be applied without locks, grouped with other runs'.

        A plan that gives back a place may join a group: the applier gives back all of
        a group's places at once, taking the workflows' counts in name order, so two
        groups never take them in opposite orders. One that admits after a debounce
        locks its workflow's count at once: applied alone.
        """
        return (
            self.settle_parent is None
            and self.take_buffered is None
            and self.consume_signal is None
            and self.admit is None
            and (self.create is None or not self.create.limited)
        )

    @property
    def writes_run(self) -> bool:
        """True when the plan writes an existing run's row (with compare-and-set)."""
        return self.run_id is not None and self.run is not None


def plan_transition(
    transition: Transition,
    *,
    acknowledge: int | None = None,
    now: datetime | None = None,
    continue_until: datetime | None = None,
) -> WritePlan:
    """The plan that applies ``transition`` (and acknowledges job ``acknowledge``).

    ``continue_until`` (with the decision's ``now``) asks for the run's next job to be
    handed to the applying worker, leased until then; it is honoured only when that job
    is the run's one next job and is due by ``now``. Otherwise the job is queued.

    Raises:
        IllegalTransition: the transition moves the run by a move the table lacks.

    """
    before, after = transition.before, transition.after
    if before.status != after.status and not is_legal_move(before.status, after.status):
        msg = f"run {before.id}: {before.status} → {after.status} is not a legal move"
        raise IllegalTransition(msg)
    return WritePlan(
        run_id=before.id,
        revision=before.revision,
        run=after,
        event=transition.event,
        journal=transition.journal,
        jobs=transition.jobs,
        drop_jobs=transition.drop_jobs,
        acknowledge=acknowledge,
        continue_until=continue_until if continues_in_place(transition, now) else None,
        create=None if transition.spawn is None else child_run(transition.spawn),
        settle_parent=transition.settle_parent,
        take_buffered=transition.take_buffered,
        consume_signal=transition.consume_signal,
        release=released_place(transition),
        admit=waiting_admission(transition),
    )


def waiting_admission(transition: Transition) -> str | None:
    """The workflow whose pending runs are admitted: a limited run's debounce is over."""
    after = transition.after
    if transition.event is RunEvent.BEGIN and after.status is RunStatus.PENDING and after.limited:
        return after.workflow_name
    return None


def released_place(transition: Transition) -> Release | None:
    """The place ``transition`` gives back: the run held one and ends now."""
    before, after = transition.before, transition.after
    if not before.holds_place or not after.status.is_terminal:
        return None
    return Release(workflow_name=before.workflow_name, concurrency_key=before.concurrency_key)


def continues_in_place(transition: Transition, now: datetime | None) -> bool:
    """True when the run's one next job (a step or a compensation) is due by ``now``."""
    jobs = transition.jobs
    return (
        now is not None
        and len(jobs) == 1
        and jobs[0].available_at <= now
        and transition.after.status in _CONTINUING
    )


_CONTINUING: Final = frozenset({RunStatus.RUNNING, RunStatus.COMPENSATING})


def plan_acknowledge(job_id: int) -> WritePlan:
    """A plan that only finishes a job whose run has moved on (a stale delivery)."""
    return WritePlan(acknowledge=job_id)


def plan_start(new: NewRun) -> WritePlan:
    """A plan that creates a run and queues its first job (``start``)."""
    return WritePlan(create=new)


def child_run(spawn: ChildSpawn) -> NewRun:
    """The child run a parent's step starts, due when the parent's decision commits."""
    return NewRun(
        workflow_name=spawn.workflow_name,
        workflow_version=spawn.workflow_version,
        total_steps=spawn.total_steps,
        input=spawn.input,
        due=spawn.due,
        parent_run_id=spawn.parent_run_id,
        parent_step_id=spawn.parent_step_id,
        state=dict(HOOKED_STATE) if spawn.on_finish else {},
        limits=spawn.limits,
        trace_context=spawn.trace_context,
    )


def continued(plan: WritePlan, state: JSONObject) -> RunSnapshot | None:
    """The run as the applier left it, for running its next step in place.

    ``state`` is the run's state as the database returned it after the write, so the next
    step sees exactly what a reload would give (a JSONB column, as an earlier release
    created them, reorders keys and normalises numbers). ``None`` when the plan writes no run.
    """
    if plan.run is None or plan.revision is None:
        return None
    return attrs.evolve(plan.run, state=state, revision=plan.revision + 1)
