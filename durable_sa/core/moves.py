"""How a run moves: the pieces every decision of :mod:`durable_sa.core.decide` is built of.

A decision is one of a few moves: go on to the next step (:func:`move_on`), end
completed (:func:`complete`), or roll back into compensation, or fail when nothing is
left to undo (:func:`roll_back`). A run whose workflow has an ``on_finish`` hook does
not end in those moves: :func:`finish_later` turns the ending into a pending final
status and a finish job, which writes it with the hook's writes. Each returns a
:class:`Transition`; the helpers below them change a snapshot only through the status
table (:func:`evolve`), tag a job with its run's workflow and pinned version
(:func:`job_for`), and tell a waiting parent how its child ended
(:func:`settlement_of`). Pure, like the decisions that use them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import attrs

from durable_sa.core.endings import FINISH_KEY, PendingFinish, has_finish_hook
from durable_sa.core.jobs import AdvanceJob, CompensateJob, FinishJob, JobPayload, JobSpec
from durable_sa.core.snapshot import NOT_WAITING
from durable_sa.core.status import RunEvent, RunStatus, next_status
from durable_sa.core.transition import ParentSettlement, Settlement, Transition

if TYPE_CHECKING:
    from datetime import datetime

    from durable_sa.core.codec import JSONObject, JSONValue
    from durable_sa.core.snapshot import JournalWrite, RunSnapshot


def move_on(  # noqa: PLR0913 - the pieces of a forward move
    run: RunSnapshot,
    event: RunEvent,
    journal: tuple[JournalWrite, ...],
    state: JSONObject,
    *,
    now: datetime,
    due: datetime,
    resume_data: JSONValue,
) -> Transition:
    """Move to the next step and enqueue its job, due at ``due``.

    ``resume_data`` is what the next step reads as ``ctx.resume_data()``: a resume's
    payload, kept, or ``None`` once a step has consumed it.
    """
    nxt = run.current_step + 1
    sleeping = due > now
    after = evolve(
        run,
        event,
        state=state,
        current_step=nxt,
        attempt=1,
        **NOT_WAITING,
        resume_data=resume_data,
        wake_at=due if sleeping else None,
        error=None,
    )
    job = job_for(run, AdvanceJob(run_id=run.id, step_index=nxt), due)
    return Transition(event=event, before=run, after=after, journal=journal, jobs=(job,))


def complete(
    run: RunSnapshot,
    state: JSONObject,
    *,
    journal: tuple[JournalWrite, ...],
    now: datetime | None = None,
) -> Transition:
    """End the run completed; its result is every public result it gathered.

    ``now`` is needed for a run with an ``on_finish`` hook (its finish job is due then).
    """
    done = attrs.evolve(run, state=state)
    after = evolve(
        done,
        RunEvent.COMPLETE,
        current_step=max(run.current_step, run.total_steps),
        result=done.public_results,
        **NOT_WAITING,
        resume_data=None,
        wake_at=None,
        error=None,
    )
    ended = Transition(
        event=RunEvent.COMPLETE,
        before=run,
        after=after,
        journal=journal,
        settle_parent=settlement_of(after, Settlement.COMPLETED),
    )
    return finish_later(ended, now=now)


def roll_back(  # noqa: PLR0913 - the pieces of a failure
    run: RunSnapshot,
    *,
    failed_index: int,
    failure: str,
    journal: tuple[JournalWrite, ...],
    undo_failed_step: bool,
    now: datetime,
) -> Transition:
    """Begin compensation below ``failed_index``, or fail at once when nothing precedes it."""
    cursor = failed_index if undo_failed_step else failed_index - 1
    if cursor < 0:
        after = evolve(run, RunEvent.FAIL, **NOT_WAITING, wake_at=None, error=failure)
        ended = Transition(
            event=RunEvent.FAIL,
            before=run,
            after=after,
            journal=journal,
            drop_jobs=True,
            settle_parent=settlement_of(after, Settlement.FAILED),
        )
        return finish_later(ended, now=now)
    after = evolve(
        run,
        RunEvent.ROLLBACK,
        compensation_cursor=cursor,
        **NOT_WAITING,
        wake_at=None,
        error=failure,
    )
    job = job_for(run, CompensateJob(run_id=run.id, index=cursor), now)
    return Transition(
        event=RunEvent.ROLLBACK,
        before=run,
        after=after,
        journal=journal,
        jobs=(job,),
        drop_jobs=True,
    )


_PENDING_EVENT: Final[dict[tuple[RunStatus, RunStatus], RunEvent]] = {
    (RunStatus.RUNNING, RunStatus.RUNNING): RunEvent.PROGRESS,
    (RunStatus.RUNNING, RunStatus.COMPENSATING): RunEvent.ROLLBACK,
    (RunStatus.SUSPENDED, RunStatus.COMPENSATING): RunEvent.ROLLBACK,
    (RunStatus.COMPENSATING, RunStatus.COMPENSATING): RunEvent.UNDO,
}
"""How a run that would end moves to wait for its finish job: a completing run keeps
running, a failing or canceled one is (still) compensating, with nothing left to undo."""


def finish_later(ended: Transition, *, now: datetime | None) -> Transition:
    """``ended`` itself, or, for a run with an ``on_finish`` hook, its pending form.

    The pending form journals what ``ended`` journals and drops the run's other jobs,
    but leaves the run non-terminal with its final status under ``FINISH_KEY`` and
    queues a :class:`FinishJob`; that job writes the status (and settles a parent) in
    the transaction that runs the hook. A run without a hook ends here, as always.

    Raises:
        ValueError: the run has a hook and ``now`` was not given.

    """
    before, final = ended.before, ended.after
    if not final.status.is_terminal or not has_finish_hook(before):
        return ended
    if now is None:
        msg = f"run {before.id} has an on_finish hook: its ending needs the decision's now"
        raise ValueError(msg)
    waiting = RunStatus.RUNNING if final.status is RunStatus.COMPLETED else RunStatus.COMPENSATING
    event = _PENDING_EVENT.get((before.status, waiting), RunEvent.ROLLBACK)
    pending = PendingFinish(status=final.status, error=final.error)
    after = attrs.evolve(
        final,
        status=next_status(before.status, event),
        state={**final.state, FINISH_KEY: pending.as_json()},
        result=None,
        compensation_cursor=-1 if waiting is RunStatus.COMPENSATING else final.compensation_cursor,
    )
    job = job_for(before, FinishJob(run_id=before.id), now)
    return Transition(
        event=event,
        before=before,
        after=after,
        journal=ended.journal,
        jobs=(job,),
        drop_jobs=True,
    )


def job_for(run: RunSnapshot, payload: JobPayload, due: datetime) -> JobSpec:
    """A job for ``run``, tagged with its workflow, pinned version and priority."""
    return JobSpec(
        payload=payload,
        available_at=due,
        workflow=run.workflow_name,
        version=run.workflow_version,
        priority=run.priority,
    )


def evolve(run: RunSnapshot, event: RunEvent, **changes: object) -> RunSnapshot:
    """``run`` with ``changes``, its status moved by ``event`` (:func:`next_status`)."""
    status = next_status(run.status, event)
    return attrs.evolve(run, status=status, **changes)  # type: ignore[arg-type]


def without(state: JSONObject, *keys: str) -> JSONObject:
    """``state`` without ``keys`` (the same object when it has none of them)."""
    if not any(key in state for key in keys):
        return state
    return {k: v for k, v in state.items() if k not in keys}


def settlement_of(after: RunSnapshot, settlement: Settlement) -> ParentSettlement | None:
    """What the parent of a child run that ended as ``after`` learns; ``None``: no parent."""
    if after.parent_run_id is None or after.parent_step_id is None:
        return None
    return ParentSettlement(
        parent_run_id=after.parent_run_id,
        child_run_id=after.id,
        child_workflow=after.workflow_name,
        child_step_id=after.parent_step_id,
        settlement=settlement,
        result=after.result if settlement is Settlement.COMPLETED else None,
        error=after.error if settlement is not Settlement.COMPLETED else None,
    )
