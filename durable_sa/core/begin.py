"""The begin decision: a debounced run's window has passed, or has been moved on.

A debounced start creates its run ``pending`` with ``begin_at`` (the start's time plus
the window) and one :class:`~durable_sa.core.jobs.BeginJob` due then; a later start of
the same key only moves ``begin_at`` on (and replaces the input). When the job runs:

- the window has been moved on (``begin_at`` later than now): the job queues itself
  again for ``begin_at``; the run stays ``pending``;
- the window has passed, the workflow has no limits: the run begins, ``running`` with
  its first step's job due now;
- the window has passed, the workflow has limits: the run stays ``pending`` and the
  shell admits pending runs in the same transaction (:attr:`WritePlan.admit`), this one
  among them in priority then arrival order, if a place is free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from durable_sa.core.jobs import AdvanceJob, BeginJob
from durable_sa.core.moves import evolve, job_for
from durable_sa.core.status import RunEvent, RunStatus
from durable_sa.core.transition import Transition

if TYPE_CHECKING:
    from datetime import datetime

    from durable_sa.core.snapshot import RunSnapshot


def is_debouncing(run: RunSnapshot) -> bool:
    """True while ``run`` is a debounced run that has not begun."""
    return run.status is RunStatus.PENDING and run.begin_at is not None


def decide_begin(run: RunSnapshot, job: BeginJob, *, now: datetime) -> Transition | None:
    """What the begin job of ``run`` does at ``now``; ``None`` when the run has begun."""
    if job.run_id != run.id or not is_debouncing(run) or run.begin_at is None:
        return None
    if run.begin_at > job.at:  # moved on by a later start: look again then
        again = job_for(run, BeginJob(run_id=run.id, at=run.begin_at), run.begin_at)
        return Transition(event=RunEvent.PROGRESS, before=run, after=run, jobs=(again,))
    if run.limited:  # admitted by the shell, under the workflow's limits
        return Transition(event=RunEvent.BEGIN, before=run, after=run)
    after = evolve(run, RunEvent.BEGIN)
    first = job_for(run, AdvanceJob(run_id=run.id, step_index=0), now)
    return Transition(event=RunEvent.BEGIN, before=run, after=after, jobs=(first,))
