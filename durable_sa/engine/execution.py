"""A step's user code, run with no lock held and no transaction open.

What every way of running a step shares: the context its handler sees
(:func:`build_context`), the definition it is run against, checked against the run's
pinned version (:func:`definition_for`), the run itself through the step driver with
its span and log line (:func:`execute_step`), and how its outcome is decided on a run
snapshot (:func:`step_decision`), which returns ``None`` for a snapshot the job no longer
matches. A step's compensators run through :func:`compensate_step`, in a span of their
own (``<step>#compensate``), plain or inside the transaction that journals them.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from durable_sa.core.context import DurableContext
from durable_sa.core.decide import decide_step, is_current_advance
from durable_sa.core.outcomes import Failed
from durable_sa.core.registry import registry
from durable_sa.core.snapshot import JournalStatus
from durable_sa.core.units import compensate_unit
from durable_sa.engine import observers
from durable_sa.errors import DefinitionChanged
from durable_sa.execute.driver import drive_compensation, drive_step
from durable_sa.telemetry.log_fields import run_fields
from durable_sa.telemetry.tracing import tracing

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from datetime import datetime

    from sqlalchemy import Connection
    from sqlalchemy.orm import Session

    from durable_sa.core.jobs import AdvanceJob
    from durable_sa.core.outcomes import StepOutcome
    from durable_sa.core.snapshot import JournalRecord, JournalWrite, RunSnapshot
    from durable_sa.core.status import RunStatus
    from durable_sa.core.steps import StepDefinition
    from durable_sa.core.stored import StoredForm
    from durable_sa.core.transition import Transition
    from durable_sa.core.workflow import DurableWorkflow
    from durable_sa.engine.shell import Shell

logger = logging.getLogger("durable_sa.engine.runner")
"""The runner's logger, whichever of its modules writes: log filters keep working."""


def build_context(  # noqa: PLR0913 - the run's position, then a hook's extras
    run: RunSnapshot,
    step_name: str,
    attempt: int,
    session: Session | None = None,
    *,
    final_status: RunStatus | None = None,
    error: str | None = None,
) -> DurableContext:
    """The context handlers see for ``run`` at ``step_name``.

    An ``on_finish`` hook also gets the run's ``final_status`` and ``error``.
    """
    return DurableContext(
        run_id=run.id,
        workflow_name=run.workflow_name,
        step_name=step_name,
        attempt=attempt,
        input=run.input,
        results=run.public_results,
        resume_data=run.resume_data,
        session=session,
        final_status=final_status,
        error=error,
        types=registry.get(run.workflow_name),  # ctx.input's and ctx.result's types
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


def execute_step(  # noqa: PLR0913 - the step, its run and position, keyword options
    run: RunSnapshot,
    step: StepDefinition,
    attempt: int,
    journal: Mapping[str, JournalRecord],
    *,
    stored: StoredForm,
    max_payload_bytes: int | None = None,
) -> StepOutcome:
    """Run the user code of ``run``'s current ``step`` (no lock, no transaction) and log it.

    The attempt's span is current meanwhile: the handler's own spans nest under it.
    """
    started = time.perf_counter()
    ctx = build_context(run, step.name, attempt)
    # ── traced attempt (durable_sa.telemetry): the span and the log line inside it ──
    with tracing.step(run, step.name, attempt) as span:
        outcome = drive_step(step, ctx, journal, stored, max_payload_bytes=max_payload_bytes)
        label = log_step(run, step.name, attempt, outcome, started)
        span.record(outcome, label)
    observe_attempt(run, step.name, label, started)
    return outcome


def observe_attempt(run: RunSnapshot, step: str, label: str, started: float) -> None:
    """Tell the step observers (:mod:`durable_sa.engine.observers`) an attempt ended.

    Every way of running a step calls it (plain here, transactional in
    :mod:`~durable_sa.engine.transactional`); one tuple test when nothing listens.
    """
    if observers.step_observers:
        seconds = time.perf_counter() - started
        observers.step_ended(run.workflow_name, step, label, seconds)


class ConnectionLostError(Exception):
    """The database connection of a transactional unit's ``ctx.session`` was lost.

    It is the database's failure, not the user code's, like a connection lost at COMMIT:
    the unit runs again (at once, locked; then with the job released and claimed again)
    without using one of its attempts, and the run is never failed or rolled back for it.
    """

    def __init__(self, unit: str, run_id: int) -> None:
        super().__init__(
            f"run {run_id} step {unit!r}: the database connection of its transaction was lost "
            "while the step ran; it runs again without using one of its attempts"
        )


def raise_if_lost(connection: Connection, unit: str, run: RunSnapshot, attempt: int) -> None:
    """Raise :class:`ConnectionLostError` if the user code lost ``connection``.

    Called inside the unit's span, so the span ends with that error rather than with
    the outcome the user code reported, which is rolled back with the transaction.
    """
    if connection.invalidated:  # whatever the user code made of it
        lost = ConnectionLostError(unit, run.id)
        logger.warning(
            "%s", lost, extra={**run_fields(run, unit, attempt), "action": "connection_lost"}
        )
        raise lost


def compensate_step(
    run: RunSnapshot,
    step: StepDefinition,
    journal: Mapping[str, JournalRecord],
    session: Session | None = None,
) -> JournalWrite:
    """Run ``step``'s compensators for ``run`` (on ``session`` when transactional).

    Returns the ``<step>#compensate`` row; raises :class:`ConnectionLostError` if the
    compensator lost ``session``'s connection. Its span, a sibling of the run's step spans,
    is current meanwhile (the compensator's own spans nest under it) and records
    ``compensated`` or ``compensate_failed`` with the error.
    """
    ctx = build_context(run, step.name, 1, session=session)
    # ── traced compensation (durable_sa.telemetry): one span per compensate unit ──
    with tracing.step(run, compensate_unit(step.name), 1) as span:
        record = drive_compensation(step, ctx, journal)
        if session is not None:
            raise_if_lost(session.connection(), compensate_unit(step.name), run, 1)
        failed = record.status is JournalStatus.FAILED
        span.record_unit("compensate_failed" if failed else "compensated", record.error)
    return record


def step_decision(
    shell: Shell, job: AdvanceJob, outcome: StepOutcome
) -> Callable[[RunSnapshot | None, datetime], Transition | None]:
    """How ``outcome`` of the job's step is decided on a run snapshot (``None``: stale)."""

    def decide(current: RunSnapshot | None, now: datetime) -> Transition | None:
        if current is None or not is_current_advance(current, job):
            return None
        return decide_step(current, outcome, attempt=job.attempt, now=now, jitter=shell.jitter())

    return decide


def outcome_name(outcome: StepOutcome) -> str:
    """``AwaitSignal`` → ``await_signal``: the outcome's name for logs."""
    name = type(outcome).__name__
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def outcome_label(outcome: StepOutcome, attempt: int) -> str:
    """The outcome as logs and spans name it: a failure by what follows it.

    ``retry`` (the step runs again) or ``compensate`` (its last attempt: the run rolls
    back); any other outcome by its name (:func:`outcome_name`).
    """
    if isinstance(outcome, Failed):
        return "compensate" if attempt >= outcome.max_attempts else "retry"
    return outcome_name(outcome)


def log_step(
    run: RunSnapshot, step: str, attempt: int, outcome: StepOutcome, started: float
) -> str:
    """Log a step's outcome and duration at INFO (skipped cheaply when INFO is off).

    A failed attempt is a WARNING whatever the level, with its error and traceback: what
    an operator needs to see first. Returns the outcome's label (:func:`outcome_label`),
    which the attempt's span records too.
    """
    name = outcome_label(outcome, attempt)
    if isinstance(outcome, Failed):
        _log_failure(run, step, attempt, outcome, started, label=name)
        return name
    if not logger.isEnabledFor(logging.INFO):
        return name
    duration_ms = (time.perf_counter() - started) * 1000
    logger.info(
        "run %s %s step %r attempt %d: %s (%.1f ms)",
        run.id,
        run.workflow_name,
        step,
        attempt,
        name,
        duration_ms,
        extra=_fields(run, step, attempt, name, duration_ms),
    )
    return name


def _log_failure(  # noqa: PLR0913 - log_step's arguments and the outcome's label
    run: RunSnapshot, step: str, attempt: int, failed: Failed, started: float, *, label: str
) -> None:
    duration_ms = (time.perf_counter() - started) * 1000
    last = label == "compensate"
    logger.warning(
        "run %s %s step %r attempt %d of %d failed (%.1f ms), %s: %s%s",
        run.id,
        run.workflow_name,
        step,
        attempt,
        failed.max_attempts,
        duration_ms,
        "rolling back" if last else "will retry",
        failed.failure,
        f"\n{failed.traceback.rstrip()}" if failed.traceback else "",
        extra={
            **_fields(run, step, attempt, label, duration_ms),
            "error_type": failed.error_type,
        },
    )


def _fields(
    run: RunSnapshot, step: str, attempt: int, outcome: str, duration_ms: float
) -> dict[str, object]:
    """A step log record's structured fields (``extra``), for JSON log handlers."""
    return {
        "duration_ms": round(duration_ms, 3),
        "action": "step",
        "run_id": run.id,
        "workflow": run.workflow_name,
        "step": step,
        "attempt": attempt,
        "outcome": outcome,
    }
