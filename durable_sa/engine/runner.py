"""Running one job: what every consumer (worker, ``drain``, relay consumers) calls.

A job goes through the same three moves wherever it is run:

- **Phase A, no lock held.** Read the run (or take the snapshot the claim read with the
  job); a job that no longer matches its run is stale and only acknowledged. Otherwise
  run the user code (a step, or a step's compensators). The handler may take minutes; no
  row lock is held and no transaction is open.
- **Decide.** The pure core turns what happened into a transition and a write plan, on
  the snapshot read in phase A (:class:`Decision` keeps how to decide again).
- **Apply.** The one applier writes the plan with a compare-and-set on the run's
  revision, together with the job's acknowledgement. If the run moved meanwhile (a
  cancel, a signal, a duplicate delivery), nothing is written: the decision is made again
  on a fresh read, exactly as a locked decision would have seen it.

A worker groups the plans of different runs into one commit (:mod:`durable_sa.worker.
pipeline`); everyone else commits each plan alone with :func:`commit_alone`. Both use the
same applier, so what ``drain`` and the testing toolkit exercise is what workers run.

A ``transactional=True`` step runs its handler inside the transaction that applies its
plan, with the run locked, so the handler's own writes commit with the checkpoint; if it
fails, that transaction is rolled back and the failure is applied in a fresh one.

One delivery policy for every backend: a malformed job, or one whose attempts ran out
(it crashed its consumer each time), is dead-lettered, leaving the run untouched for
``recover``; a job whose run's workflow or pinned definition version this process does
not have is deferred (offered again later, no attempt used, never dead-lettered); a job
that no longer matches its run is acknowledged and dropped; unexpected errors (a lost
connection) give the job back for a retry, which uses an attempt.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

import attrs
from sqlalchemy.exc import DBAPIError

from durable_sa.core.context import DurableContext
from durable_sa.core.decide import (
    decide_compensation,
    decide_signal_timeout,
    decide_step,
    is_current_advance,
    is_current_compensation,
)
from durable_sa.core.definition import (
    DurableWorkflow,
    LoopStep,
    ParallelStep,
    RouteStep,
    StepDefinition,
    TaskStep,
)
from durable_sa.core.jobs import (
    AdvanceJob,
    CompensateJob,
    JobPayload,
    SignalTimeoutJob,
    decode_payload,
)
from durable_sa.core.outcomes import Complete, Failed, StepOutcome
from durable_sa.core.plan import WritePlan, continued, plan_acknowledge, plan_transition
from durable_sa.core.registry import registry
from durable_sa.core.snapshot import RunSnapshot
from durable_sa.core.transition import Transition
from durable_sa.engine.applier import Applied, Applier, PlanItem
from durable_sa.errors import DefinitionChanged, PayloadError, WorkflowNotRegisteredError
from durable_sa.execute.driver import describe, drive_compensation, drive_step
from durable_sa.queue.protocol import Claim, ClaimedJob
from durable_sa.results import JobOutcome
from durable_sa.store.queries import load_journal, load_run, lock_run

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlalchemy.orm import Session

    from durable_sa.core.snapshot import JournalRecord, JournalWrite
    from durable_sa.core.stored import StoredForm
    from durable_sa.engine.shell import Shell

logger = logging.getLogger(__name__)

_RELEASE_BACKOFF: Final = timedelta(seconds=2)
DEFER_DELAY: Final = timedelta(seconds=5)
"""How long a job that no consumer here can run waits before it is offered again."""
_MAX_REDECISIONS: Final = 20
"""A run that moves under every decision this often is moved by a bug, not by traffic."""
_UNIT_STEPS: Final = (ParallelStep, RouteStep, LoopStep)
"""Step kinds that journal units inside the step, read back on a redelivery."""


@attrs.frozen
class Decision:
    """A job whose user code has run: how to decide its writes on a given run snapshot.

    ``decide`` is pure (the core's decision for this job's outcome); it returns ``None``
    when the snapshot shows the job stale. Deciding again on a fresh read after a missed
    compare-and-set is what replaces a row lock.
    """

    payload: JobPayload
    job: ClaimedJob | None
    run: RunSnapshot | None
    decide: Callable[[RunSnapshot | None, datetime], Transition | None]

    def plan(
        self, run: RunSnapshot | None, *, now: datetime, lease: timedelta | None
    ) -> WritePlan | None:
        """The plan for ``run``; ``None`` when there is nothing to write at all."""
        transition = self.decide(run, now)
        ack = None if self.job is None else self.job.id
        if transition is None:
            return None if ack is None else plan_acknowledge(ack)
        return plan_transition(
            transition,
            acknowledge=ack,
            now=now,
            continue_until=None if lease is None else now + lease,
        )


@attrs.frozen
class Done:
    """A job that needs no further writes: dead-lettered, released, or committed alone.

    ``follow`` is the run's next step when it was handed to this worker (run it in place).
    """

    outcome: JobOutcome
    follow: Claim | None = None


class Open:
    """A transactional step whose handler's writes and checkpoint wait for their COMMIT.

    The pipeline hands it to its committer, so the slot runs other work while the
    commit waits for the disk. :meth:`commit` (or :meth:`abandon`) must be called once.
    """

    __slots__ = ("applied", "plan", "session", "shell")

    def __init__(self, shell: Shell, session: Session, plan: WritePlan, applied: Applied) -> None:
        """Hold ``session``'s open transaction, which applied ``plan``."""
        self.shell = shell
        self.session = session
        self.plan = plan
        self.applied = applied

    def commit(self) -> Done:
        """COMMIT; the run's next step when it was handed to this worker."""
        try:
            self.shell.about_to_commit()
            self.session.commit()
        finally:
            self.session.close()
        return Done(JobOutcome.APPLIED, follow=follow(self.plan, self.applied))

    def abandon(self) -> None:
        """Roll back (the worker is stopping, or nobody will commit it)."""
        self.session.close()


Prepared = Decision | Done | Open


def build_context(
    run: RunSnapshot,
    step_name: str,
    attempt: int,
    session: Session | None = None,
) -> DurableContext:
    """The context handlers see for ``run`` at ``step_name``."""
    return DurableContext(
        run_id=run.id,
        workflow_name=run.workflow_name,
        step_name=step_name,
        attempt=attempt,
        input=run.input,
        results=run.public_results,
        resume_data=run.resume_data,
        session=session,
    )


def definition_for(run: RunSnapshot) -> DurableWorkflow:
    """The registered definition of ``run``'s workflow, checked against the run's pin.

    Raises:
        WorkflowNotRegisteredError: this process does not define the workflow.
        DefinitionChanged: it defines another version than the run started with.

    """
    workflow = registry.get(run.workflow_name)
    if run.workflow_version is not None and workflow.version != run.workflow_version:
        msg = (
            f"run {run.id} of workflow {run.workflow_name!r} was started with definition "
            f"version {run.workflow_version!r}, but this process has {workflow.version!r}; "
            f"run it on a worker that has version {run.workflow_version!r}"
        )
        raise DefinitionChanged(msg)
    if len(workflow.steps) != run.total_steps:
        msg = (
            f"run {run.id} of workflow {run.workflow_name!r} has {run.total_steps} steps, "
            f"but this process defines {len(workflow.steps)}"
        )
        raise DefinitionChanged(msg)
    return workflow


# ── one claimed job ─────────────────────────────────────────────────────────────


def prepare(  # noqa: PLR0913 - the job, its run and how it was handed over
    shell: Shell,
    claimed: ClaimedJob,
    run: RunSnapshot | None = None,
    *,
    in_place: bool = False,
    applier: Applier | None = None,
    lease: timedelta | None = None,
    keep_open: bool = False,
) -> Prepared:
    """Phase A of a claimed job; never raises for a bad job or a failing database.

    ``run`` is the snapshot a claim read with the job (read here when ``None``);
    ``in_place`` says the job is the run's next step handed on by the commit that just
    made it, so no unit of it can be journaled yet. A transactional step commits alone,
    through ``applier``; with ``lease``, its run's next step is handed back to the
    applier's worker.
    """
    if claimed.attempts > claimed.max_attempts:
        error = (
            f"job {claimed.id} was claimed {claimed.attempts} times without finishing "
            f"(max {claimed.max_attempts}); its worker may have crashed on it each time"
        )
        return Done(dead_letter(shell, claimed, error))
    try:
        payload = decode_payload(claimed.kind, claimed.payload)
        if claimed.run_id is not None and payload.run_id != claimed.run_id:
            msg = f"job payload names run {payload.run_id} but the job row names {claimed.run_id}"
            raise PayloadError(msg)  # noqa: TRY301 - one handler for every malformed job
    except PayloadError as exc:
        return Done(dead_letter(shell, claimed, str(exc)))
    try:
        return prepare_payload(
            shell,
            payload,
            claimed,
            run,
            in_place=in_place,
            applier=applier,
            lease=lease,
            keep_open=keep_open,
        )
    except (WorkflowNotRegisteredError, DefinitionChanged) as exc:
        return Done(defer(shell, claimed, str(exc)))
    except Exception as exc:  # noqa: BLE001 - every unexpected error gives the job back
        return Done(job_failed(shell, claimed, exc))


def prepare_payload(  # noqa: PLR0913 - the job, its run and how it was handed over
    shell: Shell,
    payload: JobPayload,
    claimed: ClaimedJob | None = None,
    run: RunSnapshot | None = None,
    *,
    in_place: bool = False,
    applier: Applier | None = None,
    lease: timedelta | None = None,
    keep_open: bool = False,
) -> Prepared:
    """Phase A of ``payload``: run its user code; its :class:`Decision` (or :class:`Done`).

    With ``keep_open``, a transactional step comes back as an :class:`Open` transaction.

    Raises:
        WorkflowNotRegisteredError: the run's workflow is not defined here.
        DefinitionChanged: the run is pinned to another definition.

    """
    if run is None:
        with shell.reading() as session:
            run = load_run(session, payload.run_id)
    if isinstance(payload, AdvanceJob):
        return _advance(
            shell,
            payload,
            claimed,
            run,
            in_place=in_place,
            applier=applier,
            lease=lease,
            keep_open=keep_open,
        )
    if isinstance(payload, CompensateJob):
        return _compensate(shell, payload, claimed, run)
    return _signal_timeout(payload, claimed, run)


def run_job(
    shell: Shell,
    claimed: ClaimedJob,
    *,
    applier: Applier | None = None,
    lease: timedelta | None = None,
) -> JobOutcome:
    """Run a claimed job to its commit, alone; never raises for a bad job or database.

    With ``lease`` and an ``applier`` of a consumer that runs jobs in place, each next
    step of the run that the commit hands to that consumer runs here too, in turn,
    until the run stops (waits, ends, or its next step is not due now). The first
    job's outcome is returned.
    """
    done = _run_one(shell, Claim(job=claimed), in_place=False, applier=applier, lease=lease)
    follow = done.follow
    while follow is not None:
        follow = _run_one(shell, follow, in_place=True, applier=applier, lease=lease).follow
    return done.outcome


def _run_one(
    shell: Shell,
    claim: Claim,
    *,
    in_place: bool,
    applier: Applier | None,
    lease: timedelta | None,
) -> Done:
    claimed = claim.job
    prepared = prepare(shell, claimed, claim.run, in_place=in_place, applier=applier, lease=lease)
    if isinstance(prepared, Done):
        return prepared
    try:
        if isinstance(prepared, Open):  # pragma: no cover - only asked for with keep_open
            return prepared.commit()
        return commit_alone(shell, prepared, applier=applier, lease=lease)
    except Exception as exc:  # noqa: BLE001 - every unexpected error gives the job back
        return Done(job_failed(shell, claimed, exc))


def run_payload(shell: Shell, payload: JobPayload, claimed: ClaimedJob | None = None) -> JobOutcome:
    """Run ``payload`` to its commit, alone (a duplicate delivery, a direct call).

    Raises:
        WorkflowNotRegisteredError: the run's workflow is not defined here.
        DefinitionChanged: the run is pinned to another definition.

    """
    prepared = prepare_payload(shell, payload, claimed)
    if isinstance(prepared, Done):
        return prepared.outcome
    if isinstance(prepared, Open):  # pragma: no cover - only asked for with keep_open
        return prepared.commit().outcome
    return commit_alone(shell, prepared).outcome


def commit_alone(
    shell: Shell,
    decision: Decision,
    *,
    applier: Applier | None = None,
    reread: bool = False,
    lease: timedelta | None = None,
) -> Done:
    """Apply ``decision`` in a transaction of its own, deciding again if the run moved.

    ``reread`` decides on a fresh read of the run from the start (the decision's own
    snapshot is known to be out of date). With ``lease``, the run's next step is handed
    to ``applier``'s consumer when it is due now (``Done.follow``). The transaction is
    the engine's, so the test hook :meth:`Shell.about_to_commit` can fail it at its
    commit boundary, as a process dying there would.
    """
    applier = applier or shell.applier
    run = decision.run
    if reread:
        with shell.reading() as session:
            run = load_run(session, decision.payload.run_id)
    for _ in range(_MAX_REDECISIONS):
        now = shell.now()
        plan = decision.plan(run, now=now, lease=lease)
        if plan is None:
            return Done(JobOutcome.STALE)
        item = PlanItem(plan, decision.job)

        def work(tx: Session, item: PlanItem = item, now: datetime = now) -> Applied:
            applied = applier.apply_one(tx, item, now=now)
            if applied.applied and item.plan.run is not None:
                shell.about_to_commit()
            return applied

        applied = shell.transaction(work)
        if applied.applied:
            if plan.run is None:
                return Done(JobOutcome.STALE)
            return Done(JobOutcome.APPLIED, follow=follow(plan, applied))
        with shell.reading() as session:
            run = load_run(session, decision.payload.run_id)
    msg = f"run {decision.payload.run_id} moved under {_MAX_REDECISIONS} decisions in a row"
    raise RuntimeError(msg)


# ── advance ─────────────────────────────────────────────────────────────────────


def _advance(  # noqa: PLR0913 - the job, its run and how it was handed over
    shell: Shell,
    job: AdvanceJob,
    claimed: ClaimedJob | None,
    run: RunSnapshot | None,
    *,
    in_place: bool,
    applier: Applier | None,
    lease: timedelta | None,
    keep_open: bool,
) -> Prepared:
    """Run one top-level step of a run (the ``advance`` job)."""
    if run is None or not is_current_advance(run, job):
        return _stale(job, claimed, run)
    if run.current_step >= run.total_steps:
        return Decision(
            payload=job, job=claimed, run=run, decide=_step_decision(shell, job, Complete())
        )
    step = definition_for(run).steps[run.current_step]
    if isinstance(step, TaskStep) and step.transactional:
        transactional = _TransactionalStep(
            shell=shell,
            job=job,
            claimed=claimed,
            step=step,
            applier=applier or shell.applier,
            lease=lease,
        )
        return _advance_transactional(transactional, run, keep_open=keep_open)
    journal: Mapping[str, JournalRecord] = {}
    if isinstance(step, _UNIT_STEPS) and not (in_place and job.attempt == 1):
        with shell.reading() as session:
            journal = load_journal(session, run.id)
    outcome = execute_step(run, step, job.attempt, journal, stored=shell.stored_form)
    return Decision(payload=job, job=claimed, run=run, decide=_step_decision(shell, job, outcome))


def _step_decision(
    shell: Shell, job: AdvanceJob, outcome: StepOutcome
) -> Callable[[RunSnapshot | None, datetime], Transition | None]:
    """How ``outcome`` of the job's step is decided on a run snapshot (``None``: stale)."""

    def decide(current: RunSnapshot | None, now: datetime) -> Transition | None:
        if current is None or not is_current_advance(current, job):
            return None
        return decide_step(current, outcome, attempt=job.attempt, now=now, jitter=shell.jitter())

    return decide


def execute_step(
    run: RunSnapshot,
    step: StepDefinition,
    attempt: int,
    journal: Mapping[str, JournalRecord],
    *,
    stored: StoredForm,
) -> StepOutcome:
    """Run the user code of ``run``'s current ``step`` (no lock, no transaction) and log it."""
    started = time.perf_counter()
    outcome = drive_step(step, build_context(run, step.name, attempt), journal, stored)
    _log_step(run, step.name, attempt, outcome, started)
    return outcome


class _RollBack(Exception):  # noqa: N818 - control flow, never escapes this module
    def __init__(self, outcome: StepOutcome, run: RunSnapshot) -> None:
        super().__init__("transactional step failed")
        self.outcome = outcome
        self.run = run


class _Moved(Exception):  # noqa: N818 - control flow, never escapes this module
    """The run moved since it was read: undo the handler's writes and try again, locked."""


class _TransactionalStep:
    """A transactional step's handler and checkpoint, for one transaction."""

    __slots__ = ("applier", "claimed", "job", "lease", "shell", "step")

    def __init__(  # noqa: PLR0913 - the job, its step and where it commits
        self,
        *,
        shell: Shell,
        job: AdvanceJob,
        claimed: ClaimedJob | None,
        step: TaskStep,
        applier: Applier,
        lease: timedelta | None,
    ) -> None:
        self.shell = shell
        self.job = job
        self.claimed = claimed
        self.step = step
        self.applier = applier
        self.lease = lease

    def apply(self, tx: Session, current: RunSnapshot) -> tuple[WritePlan, Applied]:
        """Run the handler in ``tx`` on ``current`` and apply its checkpoint there.

        Raises :class:`_RollBack` (the handler failed) or :class:`_Moved` (the
        compare-and-set on ``current``'s revision missed: the run moved since).
        """
        job, claimed, shell = self.job, self.claimed, self.shell
        ctx = build_context(current, self.step.name, job.attempt, session=tx)
        started = time.perf_counter()
        outcome = drive_step(self.step, ctx, {})  # a task step journals no units of its own
        _log_step(current, self.step.name, job.attempt, outcome, started)
        if isinstance(outcome, Failed):
            raise _RollBack(outcome, current)
        now = shell.now()
        transition = decide_step(
            current, outcome, attempt=job.attempt, now=now, jitter=shell.jitter()
        )
        plan = plan_transition(
            transition,
            acknowledge=None if claimed is None else claimed.id,
            now=now,
            continue_until=None if self.lease is None else now + self.lease,
        )
        applied = self.applier.apply_one(tx, PlanItem(plan, claimed), now=now)
        if not applied.applied:
            raise _Moved
        return plan, applied

    def locked(self, tx: Session) -> Done:
        """The step with its run row locked first (SQLite, or after the run moved)."""
        current = lock_run(tx, self.job.run_id)
        if current is None or not is_current_advance(current, self.job):
            if self.claimed is not None:
                ack = PlanItem(plan_acknowledge(self.claimed.id), self.claimed)
                self.applier.apply_one(tx, ack, now=self.shell.now())
            return Done(JobOutcome.STALE)
        plan, applied = self.apply(tx, current)  # locked: the compare-and-set holds
        self.shell.about_to_commit()
        return Done(JobOutcome.APPLIED, follow=follow(plan, applied))


def _advance_transactional(
    step: _TransactionalStep, run: RunSnapshot, *, keep_open: bool
) -> Prepared:
    """Run the handler inside the checkpoint's transaction (exactly-once writes).

    On PostgreSQL the run is not locked first: the checkpoint's compare-and-set on the
    revision read with the job is the lock. If the run moved meanwhile (a duplicate
    delivery, a cancel), the transaction rolls back, the handler's writes with it, and
    the step is tried again with the run row locked first. ``keep_open`` returns the
    transaction uncommitted (:class:`Open`) for a committer to finish.
    """
    shell = step.shell
    try:
        if shell.dialect == "postgresql":
            opened = _optimistic(shell, lambda tx: step.apply(tx, run))
            if opened is not None:
                return opened if keep_open else opened.commit()
        return shell.transaction(step.locked)
    except _RollBack as failed:
        decide = _step_decision(shell, step.job, failed.outcome)
        decision = Decision(payload=step.job, job=step.claimed, run=failed.run, decide=decide)
        return commit_alone(shell, decision, applier=step.applier, lease=step.lease)


def _optimistic(shell: Shell, work: Callable[[Session], tuple[WritePlan, Applied]]) -> Open | None:
    """``work`` in a transaction left open; ``None`` when it must be tried again locked."""
    session = shell.sessions()
    try:
        plan, applied = work(session)
    except (_Moved, DBAPIError):
        session.close()
        return None
    except BaseException:
        session.close()
        raise
    return Open(shell=shell, session=session, plan=plan, applied=applied)


def follow(plan: WritePlan, applied: Applied) -> Claim | None:
    """The run's next step, when the applier handed it to this worker (run it in place)."""
    if applied.next_job is None or applied.state is None:
        return None
    run = continued(plan, applied.state)
    return None if run is None else Claim(job=applied.next_job, run=run)


# ── compensate ──────────────────────────────────────────────────────────────────


def _compensate(
    shell: Shell, job: CompensateJob, claimed: ClaimedJob | None, run: RunSnapshot | None
) -> Prepared:
    """Undo one step of a compensating run and move the cursor down (or fail the run)."""
    if run is None or not is_current_compensation(run, job):
        return _stale(job, claimed, run)
    workflow = definition_for(run)
    with shell.reading() as session:
        journal = load_journal(session, run.id)
    step = workflow.steps[job.index]
    writes: tuple[JournalWrite, ...] = ()
    if f"{step.name}#compensate" not in journal:
        record = drive_compensation(step, build_context(run, step.name, 1), journal)
        writes = (record,)
        if record.error:
            logger.warning(
                "run %s: compensating %r failed: %s",
                run.id,
                step.name,
                record.error,
                extra={"action": "compensate_failed", "run_id": run.id, "step": step.name},
            )

    def decide(current: RunSnapshot | None, now: datetime) -> Transition | None:
        if current is None or not is_current_compensation(current, job):
            return None
        return decide_compensation(current, index=job.index, journal=writes, now=now)

    return Decision(payload=job, job=claimed, run=run, decide=decide)


# ── signal timeout ──────────────────────────────────────────────────────────────


def _signal_timeout(
    job: SignalTimeoutJob, claimed: ClaimedJob | None, run: RunSnapshot | None
) -> Prepared:
    """Fail a step whose signal did not arrive before its deadline."""

    def decide(current: RunSnapshot | None, now: datetime) -> Transition | None:
        transition = None if current is None else decide_signal_timeout(current, job, now=now)
        if transition is not None:
            logger.info(
                "run %s: %s",
                job.run_id,
                transition.after.error,
                extra={"action": "signal_timeout", "run_id": job.run_id},
            )
        return transition

    return Decision(payload=job, job=claimed, run=run, decide=decide)


# ── failures ────────────────────────────────────────────────────────────────────


def job_failed(shell: Shell, claimed: ClaimedJob, exc: BaseException) -> JobOutcome:
    """An unexpected error (a lost connection, a bug) ran the job: give it back for later.

    The job is released with a growing delay, or dead-lettered once its attempts are used
    up. If even that fails (the database is gone), its lease runs out instead.
    """
    error = f"{type(exc).__name__}: {describe(exc)}"
    logger.error(
        "job %s (%s, run %s) failed: %s",
        claimed.id,
        claimed.kind,
        claimed.run_id,
        error,
        exc_info=exc,
        extra={"action": "job_error", "run_id": claimed.run_id},
    )
    if claimed.attempts >= claimed.max_attempts:
        return dead_letter(shell, claimed, error)
    retry_at = shell.now() + _RELEASE_BACKOFF * 2 ** (claimed.attempts - 1)
    try:
        shell.backend.release(claimed, error=error, retry_at=retry_at)
    except Exception:  # the database is gone: the lease runs out instead
        logger.exception("could not release job %s", claimed.id)
    return JobOutcome.RELEASED


def defer(shell: Shell, claimed: ClaimedJob, reason: str) -> JobOutcome:
    """Give back a job this process cannot run (its run's definition is not here).

    The delivery policy, the same for every backend: such a job is never dead-lettered
    and uses none of its attempts. It is offered again after :data:`DEFER_DELAY`, so a
    worker that has the definition (a deploy in progress, another service's worker)
    runs it; ``durable-sa status`` shows a run that waits for a version no live worker
    has.
    """
    logger.warning(
        "job %s (%s, run %s) deferred: %s",
        claimed.id,
        claimed.kind,
        claimed.run_id,
        reason,
        extra={"action": "defer", "run_id": claimed.run_id},
    )
    try:
        shell.backend.defer(claimed, until=shell.now() + DEFER_DELAY, reason=reason)
    except Exception:  # the database is gone: the lease runs out and the job comes back
        logger.exception("could not defer job %s", claimed.id)
        return JobOutcome.RELEASED
    return JobOutcome.DEFERRED


def dead_letter(shell: Shell, claimed: ClaimedJob, error: str) -> JobOutcome:
    """Move ``claimed`` to the dead letters with ``error`` (its run stays as it is)."""
    logger.error(
        "job %s (%s, run %s) dead-lettered: %s",
        claimed.id,
        claimed.kind,
        claimed.run_id,
        error,
        extra={"action": "dead_letter", "run_id": claimed.run_id},
    )
    try:
        shell.backend.dead_letter(claimed, error=error)
    except Exception:  # the database is gone: the lease runs out and the job comes back
        logger.exception("could not dead-letter job %s", claimed.id)
        return JobOutcome.RELEASED
    return JobOutcome.DEAD_LETTERED


def _stale(job: JobPayload, claimed: ClaimedJob | None, run: RunSnapshot | None) -> Prepared:
    """A job that no longer matches its run: only acknowledged (the decision is ``None``)."""
    logger.debug(
        "stale %s job for run %s ignored",
        job.kind,
        job.run_id,
        extra={"action": "stale", "run_id": job.run_id},
    )
    if claimed is None:
        return Done(JobOutcome.STALE)
    return Decision(payload=job, job=claimed, run=run, decide=lambda _run, _now: None)


def outcome_name(outcome: StepOutcome) -> str:
    """``AwaitSignal`` → ``await_signal``: the outcome's name for logs."""
    name = type(outcome).__name__
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def _log_step(
    run: RunSnapshot, step: str, attempt: int, outcome: StepOutcome, started: float
) -> None:
    if not logger.isEnabledFor(logging.INFO):
        return
    duration_ms = (time.perf_counter() - started) * 1000
    logger.info(
        "run %s %s step %r attempt %d: %s (%.1f ms)",
        run.id,
        run.workflow_name,
        step,
        attempt,
        outcome_name(outcome),
        duration_ms,
        extra={
            "duration_ms": round(duration_ms, 3),
            "action": "step",
            "run_id": run.id,
            "workflow": run.workflow_name,
            "step": step,
            "attempt": attempt,
            "outcome": outcome_name(outcome),
        },
    )
