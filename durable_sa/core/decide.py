"""Pure decisions: (run snapshot, what happened, now) → :class:`Transition`.

Rules:
- No clock, no randomness, no I/O: ``now`` and ``jitter`` are arguments, so hypothesis can
  replay every decision.
- A status changes only through :func:`next_status`; an illegal move raises
  :class:`IllegalTransition` instead of being written.
- Every decision that keeps a run going emits exactly one continuation job; a run that
  parks (signal, agent, child) or ends emits none, except a signal timeout's timer.
- The guards (``is_current_*``) say whether a job still matches the run; a stale job is
  never turned into a transition.

The moves the decisions share (go on, complete, roll back) are in
:mod:`durable_sa.core.moves`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, assert_never

import attrs

from durable_sa.core.backoff import backoff_delay
from durable_sa.core.endings import (
    CANCEL_KEY,
    canceled_with_compensation,
    pending_finish,
)
from durable_sa.core.jobs import (
    AdvanceJob,
    BeginJob,
    CompensateJob,
    FinishJob,
    JobSpec,
    SignalTimeoutJob,
)
from durable_sa.core.moves import (
    complete,
    evolve,
    finish_later,
    job_for,
    move_on,
    roll_back,
    settlement_of,
)
from durable_sa.core.outcomes import (
    Advance,
    AwaitChild,
    AwaitSignal,
    Complete,
    Failed,
    Sleep,
    StepOutcome,
    SuspendAgent,
)
from durable_sa.core.snapshot import (
    NOT_WAITING,
    BufferedSignal,
    JournalStatus,
    JournalWrite,
    RunSnapshot,
    WaitInfo,
    WaitKind,
)
from durable_sa.core.status import RunEvent, RunStatus
from durable_sa.core.steps import NO_DEFAULT
from durable_sa.core.transition import ChildSpawn, ParentSettlement, Settlement, Transition
from durable_sa.core.units import attempt_unit

if TYPE_CHECKING:
    from durable_sa.core.codec import JSONObject, JSONValue
    from durable_sa.core.steps import NoDefault

_ZERO = timedelta(0)

# ── guards ──────────────────────────────────────────────────────────────────────


def is_current_advance(run: RunSnapshot, job: AdvanceJob) -> bool:
    """True when ``job`` is the run's live continuation (not a stale redelivery)."""
    return (
        run.status is RunStatus.RUNNING
        and run.current_step == job.step_index
        and job.attempt >= run.attempt
        and pending_finish(run) is None
    )


def is_current_compensation(run: RunSnapshot, job: CompensateJob) -> bool:
    """True when ``job`` undoes the step the run's compensation cursor points at."""
    return run.status is RunStatus.COMPENSATING and run.compensation_cursor == job.index


def is_current_signal_timeout(run: RunSnapshot, job: SignalTimeoutJob) -> bool:
    """True when the run still waits at the job's step for the job's signal."""
    wait = run.waiting_for
    return (
        run.status is RunStatus.SUSPENDED
        and run.current_step == job.step_index
        and wait is not None
        and wait.kind is WaitKind.SIGNAL
        and wait.signal == job.signal
    )


# ── step outcomes ───────────────────────────────────────────────────────────────


def decide_step(  # noqa: PLR0911 - one case per outcome type
    run: RunSnapshot,
    outcome: StepOutcome,
    *,
    attempt: int,
    now: datetime,
    jitter: float = 0.0,
) -> Transition:
    """The transition for ``outcome`` of the run's current step, run as ``attempt``."""
    match outcome:
        case Complete():
            return complete(run, run.state, journal=(), now=now)
        case Advance():
            state = {**run.state, **outcome.result_patch}
            if run.current_step + 1 >= run.total_steps:
                return complete(run, state, journal=outcome.journal, now=now)
            return move_on(
                run, RunEvent.PROGRESS, outcome.journal, state, now=now, due=now, resume_data=None
            )
        case Sleep():
            return _sleep(run, outcome, attempt, now)
        case AwaitSignal():
            return _await_signal(run, outcome, now)
        case SuspendAgent():
            return _suspend_agent(run, outcome)
        case AwaitChild():
            return _await_child(run, outcome, now)
        case Failed():
            return decide_failure(run, outcome, attempt=attempt, now=now, jitter=jitter)
        case _:  # pragma: no cover - mypy proves every outcome is handled above
            assert_never(outcome)


def decide_failure(
    run: RunSnapshot,
    failed: Failed,
    *,
    attempt: int,
    now: datetime,
    jitter: float = 0.0,
) -> Transition:
    """Retry the failed step, or, its attempts spent, journal the failure and roll back.

    A retry keeps the units the attempt finished, journals the attempt's failure on a row
    of its own (``step#attempt<n>``, so an operator sees every error, not just the last)
    and runs the step again after its backoff (``jitter`` in [0, 1) spreads retries of
    many runs); the last attempt's failure is journaled on the step's row and the run
    compensates what it completed.
    """
    if attempt < failed.max_attempts:
        kept = JournalWrite(
            step_id=attempt_unit(failed.step_name, attempt),
            status=JournalStatus.FAILED,
            error=failed.failure,
            attempt=attempt,
            error_type=failed.error_type,
            traceback=failed.traceback,
        )
        delay = backoff_delay(attempt, failed.backoff, jitter)
        after = evolve(
            run,
            RunEvent.PROGRESS,
            attempt=attempt + 1,
            wake_at=now + delay,
            error=f"attempt {attempt} of {failed.max_attempts} failed: {failed.failure}",
        )
        again = AdvanceJob(run_id=run.id, step_index=run.current_step, attempt=attempt + 1)
        return Transition(
            event=RunEvent.PROGRESS,
            before=run,
            after=after,
            journal=(*failed.journal, kept),
            jobs=(job_for(run, again, now + delay),),
        )
    row = JournalWrite(
        step_id=failed.step_name,
        status=JournalStatus.FAILED,
        error=failed.failure,
        attempt=attempt,
        error_type=failed.error_type,
        traceback=failed.traceback,
    )
    return roll_back(
        run,
        failed_index=run.current_step,
        failure=failed.failure,
        journal=(*failed.journal, row),
        undo_failed_step=failed.undo_failed_step,
        now=now,
    )


def _sleep(run: RunSnapshot, outcome: Sleep, attempt: int, now: datetime) -> Transition:
    wake_at = outcome.until if outcome.until is not None else now + (outcome.delay or _ZERO)
    write = JournalWrite(
        step_id=outcome.step_name,
        status=JournalStatus.COMPLETED,
        result={"wake_at": wake_at.isoformat()},
        attempt=attempt,
    )
    return move_on(
        run, RunEvent.PROGRESS, (write,), run.state, now=now, due=wake_at, resume_data=None
    )


def _suspend_agent(run: RunSnapshot, outcome: SuspendAgent) -> Transition:
    wait = WaitInfo(kind=WaitKind.AGENT, step=outcome.step_name)
    state = {**run.state, outcome.step_name: outcome.snapshot}
    after = evolve(run, RunEvent.SUSPEND, state=state, **wait.columns(), wake_at=None)
    return Transition(event=RunEvent.SUSPEND, before=run, after=after)


def _await_child(run: RunSnapshot, outcome: AwaitChild, now: datetime) -> Transition:
    wait = WaitInfo(kind=WaitKind.CHILD, step=outcome.step_name)
    after = evolve(run, RunEvent.SUSPEND, **wait.columns(), wake_at=None)
    spawn = ChildSpawn(
        workflow_name=outcome.child_name,
        workflow_version=outcome.child_version,
        total_steps=outcome.child_total_steps,
        input=outcome.child_input,
        parent_run_id=run.id,
        parent_step_id=outcome.step_name,
        due=now,
        on_finish=outcome.child_on_finish,
        limits=outcome.child_limits,
        trace_context=run.trace_context,
    )
    return Transition(event=RunEvent.SUSPEND, before=run, after=after, spawn=spawn)


def _await_signal(run: RunSnapshot, outcome: AwaitSignal, now: datetime) -> Transition:
    """Suspend on the signal; the shell then delivers one buffered for it, if any.

    The deadline (``until``, or ``timeout`` from now) is kept on the run as its
    ``wake_at``, so a timer rebuilt by recovery has the same one.
    """
    wait = WaitInfo(kind=WaitKind.SIGNAL, step=outcome.step_name, signal=outcome.signal)
    deadline = outcome.until
    if deadline is None and outcome.timeout is not None:
        deadline = now + outcome.timeout
    after = evolve(
        run,
        RunEvent.SUSPEND,
        **wait.columns(),
        wake_at=deadline,
    )
    jobs: tuple[JobSpec, ...] = ()
    if deadline is not None:
        timer = SignalTimeoutJob(run_id=run.id, step_index=run.current_step, signal=outcome.signal)
        jobs = (job_for(run, timer, deadline),)
    return Transition(
        event=RunEvent.SUSPEND,
        before=run,
        after=after,
        jobs=jobs,
        take_buffered=outcome.signal,
    )


# ── compensation ────────────────────────────────────────────────────────────────


def decide_compensation(
    run: RunSnapshot,
    *,
    index: int,
    journal: tuple[JournalWrite, ...],
    now: datetime,
) -> Transition:
    """Record step ``index``'s compensation and move the cursor down (or end the run).

    The run ends ``failed``, or ``canceled`` when it rolled back for
    ``cancel(compensate=True)``.
    """
    nxt = index - 1
    if nxt < 0:
        canceled = canceled_with_compensation(run)
        event = RunEvent.CANCEL if canceled else RunEvent.FAIL
        settlement = Settlement.CANCELED if canceled else Settlement.FAILED
        error = run.error if canceled else run.error or "workflow failed"
        after = evolve(run, event, compensation_cursor=nxt, error=error)
        ended = Transition(
            event=event,
            before=run,
            after=after,
            journal=journal,
            settle_parent=settlement_of(after, settlement),
        )
        return finish_later(ended, now=now)
    after = evolve(run, RunEvent.UNDO, compensation_cursor=nxt)
    job = job_for(run, CompensateJob(run_id=run.id, index=nxt), now)
    return Transition(event=RunEvent.UNDO, before=run, after=after, journal=journal, jobs=(job,))


# ── signals, children, cancel ───────────────────────────────────────────────────


def decide_resume(
    run: RunSnapshot,
    *,
    signal: str,
    data: JSONValue,
    now: datetime,
) -> Transition | None:
    """Deliver ``signal`` with ``data``; ``None`` when the run does not wait for it.

    A signal step journals the payload as its result and moves on; the next step also sees
    it as ``ctx.resume_data()``. A suspended agent step is re-entered with the payload
    available as ``ctx.resume_data()``. The payload is consumed by the step that reads it.
    """
    wait = run.waiting_for
    if run.status is not RunStatus.SUSPENDED or wait is None:
        return None
    if wait.kind is WaitKind.SIGNAL and wait.signal == signal:
        write = JournalWrite(
            step_id=wait.step, status=JournalStatus.COMPLETED, result=data, attempt=1
        )
        state = {**run.state, wait.step: data}
        transition = move_on(
            run, RunEvent.WAKE, (write,), state, now=now, due=now, resume_data=data
        )
        return attrs.evolve(transition, drop_jobs=True)
    if wait.kind is WaitKind.AGENT and wait.step == signal:
        after = evolve(run, RunEvent.WAKE, **NOT_WAITING, resume_data=data, wake_at=None)
        job = job_for(
            run, AdvanceJob(run_id=run.id, step_index=run.current_step, attempt=run.attempt), now
        )
        return Transition(event=RunEvent.WAKE, before=run, after=after, jobs=(job,), drop_jobs=True)
    return None


def decide_buffered_signal(
    run: RunSnapshot, buffered: BufferedSignal, *, now: datetime
) -> Transition | None:
    """Deliver a signal that was sent before the run waited for it, and consume it.

    Exactly a ``resume`` with its data (the step completes with it, the next step sees it
    as ``ctx.resume_data()``), plus the deletion of the buffered row. ``None`` when the
    run does not wait on a signal step for it (only signal steps take buffered signals).
    """
    wait = run.waiting_for
    if wait is None or wait.kind is not WaitKind.SIGNAL or wait.signal != buffered.signal:
        return None
    transition = decide_resume(run, signal=buffered.signal, data=buffered.data, now=now)
    if transition is None:  # pragma: no cover - the run waits for it, checked above
        return None
    return attrs.evolve(transition, consume_signal=buffered.id)


def decide_signal_timeout(
    run: RunSnapshot,
    job: SignalTimeoutJob,
    *,
    now: datetime,
    default: JSONValue | NoDefault = NO_DEFAULT,
) -> Transition | None:
    """The waiting step's signal did not arrive in time; ``None`` if the job is stale.

    Without a ``default`` the step fails (and the run compensates). With one, the step
    completes with it exactly as if the signal had arrived carrying it: journaled as the
    step's result and seen by the next step as ``ctx.resume_data()``.
    """
    if not is_current_signal_timeout(run, job):
        return None
    if default is not NO_DEFAULT:
        return decide_resume(run, signal=job.signal, data=default, now=now)
    wait = run.waiting_for
    step = wait.step if wait is not None else str(job.step_index)
    deadline = run.wake_at.isoformat() if run.wake_at is not None else "its deadline"
    failure = f"step {step!r} timed out waiting for signal {job.signal!r} (deadline {deadline})"
    write = JournalWrite(step_id=step, status=JournalStatus.FAILED, error=failure, attempt=1)
    return roll_back(
        run,
        failed_index=run.current_step,
        failure=failure,
        journal=(write,),
        undo_failed_step=False,
        now=now,
    )


def decide_child_settled(
    parent: RunSnapshot, settled: ParentSettlement, *, now: datetime
) -> Transition | None:
    """Fan a finished child into its waiting parent; ``None`` when the parent is not waiting."""
    wait = parent.waiting_for
    if (
        parent.status is not RunStatus.SUSPENDED
        or wait is None
        or wait.kind is not WaitKind.CHILD
        or wait.step != settled.child_step_id
    ):
        return None
    if settled.settlement is Settlement.COMPLETED:
        result: JSONObject = settled.result or {}
        write = JournalWrite(
            step_id=wait.step, status=JournalStatus.COMPLETED, result=result, attempt=1
        )
        state = {**parent.state, wait.step: result}
        return move_on(
            parent,
            RunEvent.WAKE,
            (write,),
            state,
            now=now,
            due=now,
            resume_data=parent.resume_data,
        )
    verb = "was canceled" if settled.settlement is Settlement.CANCELED else "failed"
    failure = f"child workflow {settled.child_workflow!r} (run {settled.child_run_id}) {verb}"
    if settled.error:
        failure = f"{failure}: {settled.error}"
    write = JournalWrite(step_id=wait.step, status=JournalStatus.FAILED, error=failure, attempt=1)
    return roll_back(
        parent,
        failed_index=parent.current_step,
        failure=failure,
        journal=(write,),
        undo_failed_step=False,
        now=now,
    )


def decide_cancel(
    run: RunSnapshot, *, compensate: bool = False, now: datetime | None = None
) -> Transition | None:
    """Cancel a run that has not ended; ``None`` for a terminal or finishing run.

    With ``compensate``, the run rolls back first, as a failure would: from its current
    step (whatever of it had completed: a parallel step's finished entries) down, one
    compensation job per step, and then ends ``canceled``; its queued jobs (a sleep's
    wake-up, a signal's timer) are dropped, so it stops waiting. A run already rolling
    back after a failure goes on rolling back and ends ``canceled``. ``now`` (when the
    compensation is due) is needed with ``compensate`` and for a run with an
    ``on_finish`` hook, whose cancel leaves the final status to its finish job. A
    pending run (waiting under a limit) never began: it ends ``canceled`` at once, and
    its hook does not run.

    Raises:
        ValueError: ``now`` is needed and was not given.

    """
    if run.status.is_terminal or pending_finish(run) is not None:
        return None
    if compensate and run.status is not RunStatus.PENDING and run.total_steps > 0:
        if now is None:
            msg = "cancel with compensation needs the decision's now"
            raise ValueError(msg)
        return _cancel_compensating(run, now)
    after = evolve(
        run,
        RunEvent.CANCEL,
        **NOT_WAITING,
        wake_at=None,
    )
    ended = Transition(
        event=RunEvent.CANCEL,
        before=run,
        after=after,
        drop_jobs=True,
        settle_parent=settlement_of(after, Settlement.CANCELED),
    )
    if run.status is RunStatus.PENDING:  # it never began: there is nothing to finish
        return ended
    return finish_later(ended, now=now)


def _begin_again(run: RunSnapshot, now: datetime) -> JobSpec | None:
    """A debounced run's begin job, due at the end of its window (or now, if it passed)."""
    if run.begin_at is None:
        return None
    return job_for(run, BeginJob(run_id=run.id, at=run.begin_at), max(run.begin_at, now))


def _cancel_compensating(run: RunSnapshot, now: datetime) -> Transition:
    state = {**run.state, CANCEL_KEY: True}
    if run.status is RunStatus.COMPENSATING:
        after = evolve(run, RunEvent.UNDO, state=state)
        return Transition(event=RunEvent.UNDO, before=run, after=after)
    cursor = min(run.current_step, run.total_steps - 1)
    after = evolve(
        run,
        RunEvent.ROLLBACK,
        state=state,
        compensation_cursor=cursor,
        **NOT_WAITING,
        wake_at=None,
        error=None,
    )
    job = job_for(run, CompensateJob(run_id=run.id, index=cursor), now)
    return Transition(event=RunEvent.ROLLBACK, before=run, after=after, jobs=(job,), drop_jobs=True)


def decide_recovery(run: RunSnapshot, *, now: datetime) -> JobSpec | None:  # noqa: PLR0911 - one per status
    """The job that gets a run going again after its job was lost; ``None`` if none is due.

    A running run gets its current step (delayed to ``wake_at`` if it sleeps), a
    compensating run its cursor, a run waiting for a signal with a deadline its timer, a
    run whose final status waits for its ``on_finish`` hook its finish job, a debounced
    run its begin job. A run pending under a limit has no job: it is admitted when a
    place frees.
    """
    if run.status is RunStatus.PENDING:
        return _begin_again(run, now)
    pending = pending_finish(run)
    if pending is not None:
        return job_for(run, FinishJob(run_id=run.id, attempt=pending.attempt), now)
    if run.status is RunStatus.RUNNING:
        due = run.wake_at if run.wake_at is not None and run.wake_at > now else now
        return job_for(
            run, AdvanceJob(run_id=run.id, step_index=run.current_step, attempt=run.attempt), due
        )
    if run.status is RunStatus.COMPENSATING and run.compensation_cursor is not None:
        if run.compensation_cursor < 0:
            return None
        return job_for(run, CompensateJob(run_id=run.id, index=run.compensation_cursor), now)
    wait = run.waiting_for
    if (
        run.status is RunStatus.SUSPENDED
        and wait is not None
        and wait.kind is WaitKind.SIGNAL
        and wait.signal is not None
        and run.wake_at is not None
    ):
        timer = SignalTimeoutJob(run_id=run.id, step_index=run.current_step, signal=wait.signal)
        return job_for(run, timer, max(run.wake_at, now))
    return None
