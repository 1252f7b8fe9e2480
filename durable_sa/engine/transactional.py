"""Transactional steps: the handler's writes and the step's checkpoint in one transaction.

A ``transactional=True`` step runs its handler inside the transaction that applies its
plan, with the run locked, so the handler's own writes (through ``ctx.session``) commit
exactly once, with the checkpoint. On PostgreSQL the run is not locked first: the
checkpoint's compare-and-set on the revision read with the job is the lock, and a run
that moved meanwhile rolls the handler's writes back and runs the step again, locked.
If the handler fails, its transaction is rolled back and the failure is applied in a
fresh one; if the transaction's connection is lost under it, the step runs again without
using an attempt (:class:`ConnectionLostError`).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError

from durable_sa.core.decide import decide_step, is_current_advance
from durable_sa.core.outcomes import Failed
from durable_sa.core.plan import WritePlan, plan_acknowledge, plan_transition
from durable_sa.engine.applier import Applied, Applier, PlanItem
from durable_sa.engine.decision import Decision, Done, Open, Prepared, commit_alone, follow
from durable_sa.engine.execution import (
    ConnectionLostError,
    build_context,
    log_step,
    observe_attempt,
    raise_if_lost,
    step_decision,
)
from durable_sa.execute.driver import drive_step
from durable_sa.results import JobOutcome
from durable_sa.store.queries import lock_run
from durable_sa.telemetry.tracing import tracing

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import timedelta

    from sqlalchemy.orm import Session

    from durable_sa.core.jobs import AdvanceJob
    from durable_sa.core.outcomes import StepOutcome
    from durable_sa.core.snapshot import RunSnapshot
    from durable_sa.core.steps import TaskStep
    from durable_sa.engine.shell import Shell
    from durable_sa.queue.protocol import ClaimedJob


logger = logging.getLogger(__name__)


class _RollBack(Exception):  # noqa: N818 - control flow, never escapes this module
    def __init__(self, outcome: StepOutcome, run: RunSnapshot) -> None:
        super().__init__("transactional step failed")
        self.outcome = outcome
        self.run = run


class _Moved(Exception):  # noqa: N818 - control flow, never escapes this module
    """The run moved since it was read: undo the handler's writes and try again, locked."""


class TransactionalStep:
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

        Raises :class:`_RollBack` (the handler failed), :class:`_Moved` (the
        compare-and-set on ``current``'s revision missed: the run moved since) or
        :class:`ConnectionLostError` (the transaction's connection was lost under the
        handler, whether it raised or not).
        """
        job, claimed, shell = self.job, self.claimed, self.shell
        connection = tx.connection()
        ctx = build_context(current, self.step.name, job.attempt, session=tx)
        started = time.perf_counter()
        with tracing.step(current, self.step.name, job.attempt) as span:
            # a task step journals no units of its own
            outcome = drive_step(self.step, ctx, {}, max_payload_bytes=shell.max_payload_bytes)
            raise_if_lost(connection, self.step.name, current, job.attempt)
            label = log_step(current, self.step.name, job.attempt, outcome, started)
            span.record(outcome, label)
        observe_attempt(current, self.step.name, label, started)
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


def advance_transactional(
    step: TransactionalStep, run: RunSnapshot, *, keep_open: bool
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
        decide = step_decision(shell, step.job, failed.outcome)
        decision = Decision(payload=step.job, job=step.claimed, run=failed.run, decide=decide)
        return commit_alone(shell, decision, applier=step.applier, lease=step.lease)


def _optimistic(shell: Shell, work: Callable[[Session], tuple[WritePlan, Applied]]) -> Open | None:
    """``work`` in a transaction left open; ``None`` when it must be tried again locked."""
    session = shell.sessions()
    try:
        plan, applied = work(session)
    except (_Moved, ConnectionLostError, DBAPIError):
        session.close()
        return None
    except BaseException:
        session.close()
        raise
    return Open(shell=shell, session=session, plan=plan, applied=applied)
