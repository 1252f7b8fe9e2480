"""Running a job: the advance, compensate and signal-timeout handlers.

Every handler has the reference's two phases:

- **Phase A, no lock held.** Load the run; drop the job if it is stale (the run moved on,
  or is not in the state the job expects); otherwise load the journal and run user code.
  The handler may take minutes; no row lock is held and no transaction is open.
- **Phase B, one transaction.** Lock the run, check again (a resume, a cancel or a
  concurrent duplicate may have moved it), let the core decide, apply the decision and
  acknowledge the job, all in the same commit.

A ``transactional=True`` step runs Phase A inside Phase B's transaction instead, so the
handler's own writes commit with the checkpoint. If it fails, that transaction is rolled
back and the failure is recorded in a fresh one.

:func:`run_job` wraps a claimed job: malformed payloads and workflows this process does
not know are dead-lettered (the run is untouched, ``recover`` can pick it up later);
unexpected errors such as a lost database connection give the job back for a retry.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from durable_sa.context import DurableContext
from durable_sa.core.decide import (
    decide_compensation,
    decide_signal_timeout,
    decide_step,
    is_current_advance,
    is_current_compensation,
)
from durable_sa.core.definition import DurableWorkflow, StepDefinition, TaskStep
from durable_sa.core.jobs import (
    AdvanceJob,
    CompensateJob,
    JobPayload,
    SignalTimeoutJob,
    decode_payload,
)
from durable_sa.core.outcomes import Compensate, Complete, Retry, StepOutcome
from durable_sa.core.registry import registry
from durable_sa.errors import (
    DefinitionChanged,
    PayloadError,
    WorkflowNotRegisteredError,
)
from durable_sa.execute.driver import describe, drive_compensation, drive_step
from durable_sa.results import JobOutcome
from durable_sa.store.apply import apply_transition
from durable_sa.store.queries import load_journal, load_run, lock_run

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlalchemy.orm import Session

    from durable_sa.core.snapshot import JournalRecord, JournalWrite, RunSnapshot
    from durable_sa.queue.protocol import ClaimedJob
    from durable_sa.shell import Shell

logger = logging.getLogger(__name__)

_RELEASE_BACKOFF: Final = timedelta(seconds=2)


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
        state=run.state,
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


# ── advance ─────────────────────────────────────────────────────────────────────


def advance(shell: Shell, job: AdvanceJob, claimed: ClaimedJob | None = None) -> JobOutcome:
    """Run one top-level step of a run (the ``advance`` job)."""
    with shell.reading() as session:
        run = load_run(session, job.run_id)
        if run is None or not is_current_advance(run, job):
            return _stale(shell, claimed, job)
        step: StepDefinition | None = None
        journal: Mapping[str, JournalRecord] = {}
        if run.current_step < run.total_steps:
            step = definition_for(run).steps[run.current_step]
            journal = load_journal(session, run.id)

    if step is None:
        outcome: StepOutcome = Complete()
    elif isinstance(step, TaskStep) and step.transactional:
        return _advance_transactional(shell, job, claimed, step)
    else:
        outcome = execute_step(run, step, job.attempt, journal)
    return apply_step_outcome(shell, job, claimed, outcome)


def execute_step(
    run: RunSnapshot, step: StepDefinition, attempt: int, journal: Mapping[str, JournalRecord]
) -> StepOutcome:
    """Run the user code of ``run``'s current ``step`` (no lock, no transaction) and log it."""
    started = time.perf_counter()
    outcome = drive_step(step, build_context(run, step.name, attempt), journal)
    _log_step(run, step.name, attempt, outcome, started)
    return outcome


def apply_step_outcome(
    shell: Shell,
    job: AdvanceJob,
    claimed: ClaimedJob | None,
    outcome: StepOutcome,
) -> JobOutcome:
    """Phase B of an advance job: lock the run, check again, decide and apply ``outcome``."""

    def phase_b(tx: Session) -> JobOutcome:
        locked = lock_run(tx, job.run_id)
        if locked is None or not is_current_advance(locked, job):
            if claimed is not None:
                shell.backend.ack(tx, claimed)
            return JobOutcome.STALE
        return _decide_and_apply(shell, tx, job, claimed=claimed, locked=locked, outcome=outcome)

    return shell.transaction(phase_b)


def _decide_and_apply(  # noqa: PLR0913 - the pieces of phase B, the run already locked
    shell: Shell,
    tx: Session,
    job: AdvanceJob,
    *,
    claimed: ClaimedJob | None,
    locked: RunSnapshot,
    outcome: StepOutcome,
) -> JobOutcome:
    now = shell.now()
    transition = decide_step(locked, outcome, attempt=job.attempt, now=now, jitter=shell.jitter())
    apply_transition(tx, transition, backend=shell.backend, now=now)
    if claimed is not None:
        shell.backend.ack(tx, claimed)
    shell.about_to_commit()
    return JobOutcome.APPLIED


class _RollBack(Exception):  # noqa: N818 - control flow, never escapes this module
    def __init__(self, outcome: StepOutcome) -> None:
        super().__init__("transactional step failed")
        self.outcome = outcome


def _advance_transactional(
    shell: Shell, job: AdvanceJob, claimed: ClaimedJob | None, step: TaskStep
) -> JobOutcome:
    """Run the handler inside the checkpoint's transaction (exactly-once writes)."""

    def in_one_transaction(tx: Session) -> JobOutcome:
        locked = lock_run(tx, job.run_id)
        if locked is None or not is_current_advance(locked, job):
            if claimed is not None:
                shell.backend.ack(tx, claimed)
            return JobOutcome.STALE
        journal = load_journal(tx, locked.id)
        ctx = build_context(locked, step.name, job.attempt, session=tx)
        started = time.perf_counter()
        outcome = drive_step(step, ctx, journal)
        _log_step(locked, step.name, job.attempt, outcome, started)
        if isinstance(outcome, (Retry, Compensate)):
            raise _RollBack(outcome)
        return _decide_and_apply(shell, tx, job, claimed=claimed, locked=locked, outcome=outcome)

    try:
        return shell.transaction(in_one_transaction)
    except _RollBack as failed:
        return apply_step_outcome(shell, job, claimed, failed.outcome)


# ── compensate ──────────────────────────────────────────────────────────────────


def compensate(shell: Shell, job: CompensateJob, claimed: ClaimedJob | None = None) -> JobOutcome:
    """Undo one step of a compensating run and move the cursor down (or fail the run)."""
    with shell.reading() as session:
        run = load_run(session, job.run_id)
        if run is None or not is_current_compensation(run, job):
            return _stale(shell, claimed, job)
        workflow = definition_for(run)
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

    def phase_b(tx: Session) -> JobOutcome:
        locked = lock_run(tx, job.run_id)
        if locked is None or not is_current_compensation(locked, job):
            if claimed is not None:
                shell.backend.ack(tx, claimed)
            return JobOutcome.STALE
        now = shell.now()
        transition = decide_compensation(locked, index=job.index, journal=writes, now=now)
        apply_transition(tx, transition, backend=shell.backend, now=now)
        if claimed is not None:
            shell.backend.ack(tx, claimed)
        shell.about_to_commit()
        return JobOutcome.APPLIED

    return shell.transaction(phase_b)


# ── signal timeout ──────────────────────────────────────────────────────────────


def signal_timeout(
    shell: Shell, job: SignalTimeoutJob, claimed: ClaimedJob | None = None
) -> JobOutcome:
    """Fail a step whose signal did not arrive before its deadline."""

    def phase_b(tx: Session) -> JobOutcome:
        locked = lock_run(tx, job.run_id)
        now = shell.now()
        transition = None if locked is None else decide_signal_timeout(locked, job, now=now)
        if transition is not None:
            apply_transition(tx, transition, backend=shell.backend, now=now)
            logger.info(
                "run %s: %s",
                job.run_id,
                transition.after.error,
                extra={"action": "signal_timeout", "run_id": job.run_id},
            )
        if claimed is not None:
            shell.backend.ack(tx, claimed)
        if transition is not None:
            shell.about_to_commit()
        return JobOutcome.STALE if transition is None else JobOutcome.APPLIED

    return shell.transaction(phase_b)


# ── one claimed job ─────────────────────────────────────────────────────────────


def dispatch(shell: Shell, payload: JobPayload, claimed: ClaimedJob | None = None) -> JobOutcome:
    """Run ``payload`` with the handler of its kind."""
    if isinstance(payload, AdvanceJob):
        return advance(shell, payload, claimed)
    if isinstance(payload, CompensateJob):
        return compensate(shell, payload, claimed)
    return signal_timeout(shell, payload, claimed)


def run_job(shell: Shell, claimed: ClaimedJob) -> JobOutcome:
    """Run a claimed job; never raises for a bad job or a failing database."""
    if claimed.attempts > claimed.max_attempts:
        error = (
            f"job {claimed.id} was claimed {claimed.attempts} times without finishing "
            f"(max {claimed.max_attempts}); its worker may have crashed on it each time"
        )
        return _dead_letter(shell, claimed, error)
    try:
        payload = decode_payload(claimed.kind, claimed.payload)
        if claimed.run_id is not None and payload.run_id != claimed.run_id:
            msg = f"job payload names run {payload.run_id} but the job row names {claimed.run_id}"
            raise PayloadError(msg)  # noqa: TRY301 - one handler for every malformed job
    except PayloadError as exc:
        return _dead_letter(shell, claimed, str(exc))
    try:
        return dispatch(shell, payload, claimed)
    except (WorkflowNotRegisteredError, DefinitionChanged) as exc:
        return _dead_letter(shell, claimed, str(exc))
    except Exception as exc:  # noqa: BLE001 - every unexpected error gives the job back
        return job_failed(shell, claimed, exc)


def job_failed(shell: Shell, claimed: ClaimedJob, exc: Exception) -> JobOutcome:
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
        return _dead_letter(shell, claimed, error)
    retry_at = shell.now() + _RELEASE_BACKOFF * 2 ** (claimed.attempts - 1)
    try:
        shell.backend.release(claimed, error=error, retry_at=retry_at)
    except Exception:  # the database is gone: the lease runs out instead
        logger.exception("could not release job %s", claimed.id)
    return JobOutcome.RELEASED


def _dead_letter(shell: Shell, claimed: ClaimedJob, error: str) -> JobOutcome:
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


def _stale(shell: Shell, claimed: ClaimedJob | None, job: JobPayload) -> JobOutcome:
    logger.debug(
        "stale %s job for run %s ignored",
        job.kind,
        job.run_id,
        extra={"action": "stale", "run_id": job.run_id},
    )
    if claimed is not None:
        shell.transaction(lambda tx: shell.backend.ack(tx, claimed))
    return JobOutcome.STALE


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
