"""The finish decision: a run with an ``on_finish`` hook writes its final status.

A run whose workflow has a hook does not end in the decision that finishes its steps
(:func:`durable_sa.core.moves.finish_later`): its final status waits under
``FINISH_KEY`` and a :class:`FinishJob` is queued. That job runs the hook in the
transaction that applies :func:`decide_finish`, so the hook's writes commit with the
final status or not at all.

A hook that fails is retried like a step (its ``max_retries`` and ``retry_backoff``),
each failed attempt journaled as ``#finish#attempt<n>``. When its attempts are spent,
the run still ends with the status it was given: the ``#finish`` row is journaled
``failed`` with the hook's error, type and traceback, and none of the hook's writes are
kept. A hook can delay the end of a run; it never keeps a run from ending.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from durable_sa.core.backoff import backoff_delay
from durable_sa.core.endings import FINISH_KEY, pending_finish
from durable_sa.core.jobs import FinishJob
from durable_sa.core.moves import evolve, job_for, settlement_of, without
from durable_sa.core.snapshot import NOT_WAITING, JournalStatus, JournalWrite
from durable_sa.core.status import RunEvent, RunStatus
from durable_sa.core.transition import Settlement, Transition
from durable_sa.core.units import FINISH_UNIT, attempt_unit

if TYPE_CHECKING:
    from datetime import datetime

    from durable_sa.core.outcomes import Failed
    from durable_sa.core.snapshot import RunSnapshot

_END: Final[dict[RunStatus, tuple[RunEvent, Settlement]]] = {
    RunStatus.COMPLETED: (RunEvent.COMPLETE, Settlement.COMPLETED),
    RunStatus.FAILED: (RunEvent.FAIL, Settlement.FAILED),
    RunStatus.CANCELED: (RunEvent.CANCEL, Settlement.CANCELED),
}

_STAY: Final[dict[RunStatus, RunEvent]] = {
    RunStatus.RUNNING: RunEvent.PROGRESS,
    RunStatus.COMPENSATING: RunEvent.UNDO,
}
"""The event that keeps a finishing run where it is while its hook is retried."""


def is_current_finish(run: RunSnapshot, job: FinishJob) -> bool:
    """True when ``run`` waits for its finish job and ``job`` is its current attempt."""
    pending = pending_finish(run)
    return pending is not None and job.attempt >= pending.attempt


def hook_gives_up(job: FinishJob, failure: Failed) -> bool:
    """True when ``failure`` was the hook's last attempt: the run ends without its writes."""
    return job.attempt >= failure.max_attempts


def decide_finish(
    run: RunSnapshot,
    job: FinishJob,
    *,
    now: datetime,
    failure: Failed | None = None,
    jitter: float = 0.0,
) -> Transition | None:
    """End ``run`` with its pending status (``failure``: the hook's attempt failed).

    ``None`` when the job is stale. A failed attempt with attempts left journals
    ``#finish#attempt<n>`` and queues the next attempt after its backoff; otherwise the
    run ends, its ``#finish`` row ``completed``, or ``failed`` with the hook's error.
    """
    pending = pending_finish(run)
    if pending is None or job.attempt < pending.attempt:
        return None
    if failure is not None and not hook_gives_up(job, failure):
        return _retry(run, job, failure, now=now, jitter=jitter)
    row = JournalWrite(
        step_id=FINISH_UNIT,
        status=JournalStatus.COMPLETED if failure is None else JournalStatus.FAILED,
        result={"final_status": pending.status.value},
        error=None if failure is None else failure.failure,
        attempt=job.attempt,
        error_type=None if failure is None else failure.error_type,
        traceback=None if failure is None else failure.traceback,
    )
    event, settlement = _END[pending.status]
    state = without(run.state, FINISH_KEY)
    completed = pending.status is RunStatus.COMPLETED
    after = evolve(
        run,
        event,
        state=state,
        result=run.public_results if completed else None,
        **NOT_WAITING,
        wake_at=None,
        error=pending.error,
    )
    return Transition(
        event=event,
        before=run,
        after=after,
        journal=(row,),
        drop_jobs=True,
        settle_parent=settlement_of(after, settlement),
    )


def _retry(
    run: RunSnapshot, job: FinishJob, failure: Failed, *, now: datetime, jitter: float
) -> Transition:
    row = JournalWrite(
        step_id=attempt_unit(FINISH_UNIT, job.attempt),
        status=JournalStatus.FAILED,
        error=failure.failure,
        attempt=job.attempt,
        error_type=failure.error_type,
        traceback=failure.traceback,
    )
    pending = pending_finish(run)
    marker = {} if pending is None else pending.as_json()
    event = _STAY[run.status]
    after = evolve(
        run, event, state={**run.state, FINISH_KEY: {**marker, "attempt": job.attempt + 1}}
    )
    delay = backoff_delay(job.attempt, failure.backoff, jitter)
    again = job_for(run, FinishJob(run_id=run.id, attempt=job.attempt + 1), now + delay)
    return Transition(event=event, before=run, after=after, journal=(row,), jobs=(again,))
