"""User code inside the transaction that journals it: compensators and ``on_finish`` hooks.

Both follow the transactional step's rules (:mod:`durable_sa.engine.transactional`), on
the locked path: the run row is locked first, the user code runs on ``ctx.session``, and
the decision is applied in the same transaction, so the user's writes commit exactly
once with their journal row:

- **A transactional compensator** (``step(..., compensate=fn, transactional=True)``)
  runs in the transaction that journals ``<step>#compensate`` and moves the
  compensation cursor. A redelivered compensation job finds the row (or the cursor
  moved) and does not run it again; a crash before the commit rolls both back. If it
  raises, its writes are rolled back and the failed row is journaled in a fresh
  transaction: the rollback goes on, as for any compensator.
- **An ``on_finish`` hook** runs in the transaction that writes the run's final status
  (:func:`durable_sa.core.finish.decide_finish`). If it raises, its writes are rolled
  back and the failed attempt is journaled in a fresh transaction (retried, or the run
  ends with the hook's failure recorded).

A connection lost under the user code is the database's failure, not theirs: the job
is given back and runs again (:class:`~durable_sa.engine.execution.ConnectionLostError`),
using no attempt.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from durable_sa.core.decide import decide_compensation, is_current_compensation
from durable_sa.core.endings import pending_finish
from durable_sa.core.finish import decide_finish, hook_gives_up, is_current_finish
from durable_sa.core.plan import plan_acknowledge, plan_transition
from durable_sa.core.snapshot import JournalStatus
from durable_sa.core.units import FINISH_UNIT, compensate_unit
from durable_sa.engine.applier import Applier, PlanItem
from durable_sa.engine.decision import Decision, Done, Prepared, commit_alone
from durable_sa.engine.execution import (
    build_context,
    compensate_step,
    definition_for,
    raise_if_lost,
)
from durable_sa.execute.hooks import drive_finish
from durable_sa.results import JobOutcome
from durable_sa.store.queries import load_journal, lock_run
from durable_sa.telemetry.log_fields import run_fields
from durable_sa.telemetry.tracing import tracing

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.orm import Session

    from durable_sa.core.jobs import CompensateJob, FinishJob
    from durable_sa.core.outcomes import Failed
    from durable_sa.core.snapshot import JournalWrite, RunSnapshot
    from durable_sa.core.steps import StepDefinition
    from durable_sa.core.transition import Transition
    from durable_sa.engine.shell import Shell
    from durable_sa.queue.protocol import ClaimedJob

logger = logging.getLogger("durable_sa.engine.runner")


class _Undone(Exception):  # noqa: N818 - control flow, never escapes this module
    """The user code failed: roll its writes back, journal the failure in a fresh one."""

    def __init__(
        self, run: RunSnapshot, record: JournalWrite | None, failed: Failed | None
    ) -> None:
        super().__init__("transactional work failed")
        self.run = run
        self.record = record
        self.failed = failed


def _stale(tx: Session, shell: Shell, applier: Applier, claimed: ClaimedJob | None) -> Done:
    if claimed is not None:
        applier.apply_one(tx, PlanItem(plan_acknowledge(claimed.id), claimed), now=shell.now())
    return Done(JobOutcome.STALE)


def _apply(  # noqa: PLR0913 - the transaction, where it commits and what it applies
    tx: Session,
    shell: Shell,
    applier: Applier,
    claimed: ClaimedJob | None,
    *,
    transition: Transition,
    now: datetime,
) -> Done:
    plan = plan_transition(transition, acknowledge=None if claimed is None else claimed.id)
    applied = applier.apply_one(tx, PlanItem(plan, claimed), now=now)
    if not applied.applied:  # pragma: no cover - the run is locked
        msg = f"run {transition.before.id} moved while locked"
        raise RuntimeError(msg)
    shell.about_to_commit()
    return Done(JobOutcome.APPLIED)


# ── transactional compensators ──────────────────────────────────────────────────


def compensate_transactional(
    shell: Shell,
    job: CompensateJob,
    claimed: ClaimedJob | None,
    step: StepDefinition,
    *,
    applier: Applier | None = None,
) -> Prepared:
    """Undo ``step`` with its compensator's writes in the transaction that journals it."""
    applier = applier or shell.applier

    def locked(tx: Session) -> Done:
        current = lock_run(tx, job.run_id)
        if current is None or not is_current_compensation(current, job):
            return _stale(tx, shell, applier, claimed)
        journal = load_journal(tx, current.id)
        writes: tuple[JournalWrite, ...] = ()
        if compensate_unit(step.name) not in journal:
            record = compensate_step(current, step, journal, tx)
            if record.status is JournalStatus.FAILED:
                raise _Undone(current, record, None)
            writes = (record,)
        now = shell.now()
        transition = decide_compensation(current, index=job.index, journal=writes, now=now)
        return _apply(tx, shell, applier, claimed, transition=transition, now=now)

    try:
        return shell.transaction(locked)
    except _Undone as undone:
        record = undone.record
        logger.warning(
            "run %s: compensating %r failed, its writes were rolled back: %s",
            job.run_id,
            step.name,
            None if record is None else record.error,
            extra={**run_fields(undone.run, step.name, 1), "action": "compensate_failed"},
        )
        failed_writes = () if record is None else (record,)

        def decide(current: RunSnapshot | None, now: datetime) -> Transition | None:
            if current is None or not is_current_compensation(current, job):
                return None
            return decide_compensation(current, index=job.index, journal=failed_writes, now=now)

        decision = Decision(payload=job, job=claimed, run=undone.run, decide=decide)
        return commit_alone(shell, decision, applier=applier)


# ── on_finish hooks ─────────────────────────────────────────────────────────────


def finish_run(
    shell: Shell,
    job: FinishJob,
    claimed: ClaimedJob | None,
    *,
    applier: Applier | None = None,
) -> Prepared:
    """Run the workflow's hook and write the run's final status, in one transaction.

    Raises:
        WorkflowNotRegisteredError: the run's workflow is not defined here.
        DefinitionChanged: the run is pinned to another definition.

    """
    applier = applier or shell.applier

    def locked(tx: Session) -> Done:
        current = lock_run(tx, job.run_id)
        if current is None or not is_current_finish(current, job):
            return _stale(tx, shell, applier, claimed)
        _run_hook(tx, current, job)
        now = shell.now()
        transition = decide_finish(current, job, now=now, jitter=shell.jitter())
        if transition is None:  # pragma: no cover - checked above, with the run locked
            return _stale(tx, shell, applier, claimed)
        return _apply(tx, shell, applier, claimed, transition=transition, now=now)

    try:
        return shell.transaction(locked)
    except _Undone as undone:
        failed = undone.failed
        if failed is None:  # pragma: no cover - a hook's failure always has its outcome
            raise
        _log_hook_failure(undone.run, job, failed)

        def decide(current: RunSnapshot | None, now: datetime) -> Transition | None:
            if current is None:
                return None
            return decide_finish(current, job, now=now, failure=failed, jitter=shell.jitter())

        decision = Decision(payload=job, job=claimed, run=undone.run, decide=decide)
        return commit_alone(shell, decision, applier=applier)


def _run_hook(tx: Session, run: RunSnapshot, job: FinishJob) -> None:
    """Call the run's hook on ``tx``; raise :class:`_Undone` when it fails.

    A run whose definition no longer has a hook ends without one.
    """
    hook = definition_for(run).finish_hook
    pending = pending_finish(run)
    if hook is None or pending is None:
        return
    ctx = build_context(
        run, FINISH_UNIT, job.attempt, tx, final_status=pending.status, error=pending.error
    )
    # ── traced hook (durable_sa.telemetry): the finish job's attempt is the span's ──
    with tracing.step(run, FINISH_UNIT, job.attempt) as span:
        failed = drive_finish(hook, ctx)
        raise_if_lost(tx.connection(), FINISH_UNIT, run, job.attempt)
        if failed is None:
            span.record_unit("finished")
        else:
            span.record(failed, "finish_failed" if hook_gives_up(job, failed) else "retry")
    if failed is not None:
        raise _Undone(run, None, failed)


def _log_hook_failure(run: RunSnapshot, job: FinishJob, failed: Failed) -> None:
    """A WARNING for an attempt that will be retried, an ERROR for the last one."""
    last = hook_gives_up(job, failed)
    pending = pending_finish(run)
    status = "?" if pending is None else pending.status.value
    logger.log(
        logging.ERROR if last else logging.WARNING,
        "run %s %s on_finish attempt %d of %d failed, %s: %s%s",
        run.id,
        run.workflow_name,
        job.attempt,
        failed.max_attempts,
        f"the run ends {status} without the hook's writes" if last else "will retry",
        failed.failure,
        f"\n{failed.traceback.rstrip()}" if failed.traceback else "",
        extra={
            **run_fields(run, FINISH_UNIT, job.attempt),
            "action": "finish_failed" if last else "finish_retry",
            "error_type": failed.error_type,
        },
    )
