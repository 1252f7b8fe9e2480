"""What phase A of a job hands on, and how a decision is committed alone.

Phase A (:mod:`durable_sa.engine.runner`) ends in one of three values:

- a :class:`Decision`: the job's user code has run; the core decides its write plan on
  a run snapshot, again on a fresh read whenever the run moved (the compare-and-set
  missed), which is what replaces a row lock;
- :class:`Done`: nothing more to write (dead-lettered, released, or committed alone);
- an :class:`Open` transaction: a transactional step whose writes wait for their COMMIT.

:func:`commit_alone` commits a decision in a transaction of its own; a worker's
pipeline groups decisions of different runs instead. Either way, :func:`follow` says
whether the commit handed the run's next step to this worker, to run in place.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

import attrs

from durable_sa.core.jobs import JobPayload
from durable_sa.core.plan import WritePlan, continued, plan_acknowledge, plan_transition
from durable_sa.core.snapshot import RunSnapshot
from durable_sa.core.transition import Transition
from durable_sa.engine.applier import Applied, Applier, PlanItem
from durable_sa.queue.protocol import Claim, ClaimedJob
from durable_sa.results import JobOutcome
from durable_sa.store.queries import load_run

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from durable_sa.engine.shell import Shell

_MAX_REDECISIONS: Final = 20
"""A run that moves under every decision this often is moved by a bug, not by traffic."""


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


def follow(plan: WritePlan, applied: Applied) -> Claim | None:
    """The run's next step, when the applier handed it to this worker (run it in place)."""
    if applied.next_job is None or applied.state is None:
        return None
    run = continued(plan, applied.state)
    return None if run is None else Claim(job=applied.next_job, run=run)


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
