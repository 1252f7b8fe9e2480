from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from durable_sa.core.decide import (
    decide_cancel,
    decide_child_settled,
    decide_compensation,
    decide_recovery,
    decide_resume,
    decide_signal_timeout,
    decide_step,
    is_current_advance,
    is_current_compensation,
    is_current_signal_timeout,
)
from durable_sa.core.jobs import AdvanceJob, CompensateJob, SignalTimeoutJob
from durable_sa.core.keys import RESERVED_PREFIX
from durable_sa.core.outcomes import AwaitSignal, Complete, Failed
from durable_sa.core.snapshot import WaitKind
from durable_sa.core.status import TERMINAL_STATUSES, RunStatus, is_legal_move, next_status
from durable_sa.errors import IllegalTransition
from tests.unit.core.strategies import (
    NOW,
    OUTCOME_KINDS,
    cases_of_kind,
    compensating_snapshots,
    journal_writes,
    json_values,
    resume_signals,
    run_snapshots,
    settlements,
    signal_timeout_jobs,
    step_cases,
    step_name,
    step_outcomes,
    suspended_snapshots,
)

if TYPE_CHECKING:
    from hypothesis.strategies import DataObject

    from durable_sa.core.outcomes import StepOutcome
    from durable_sa.core.snapshot import RunSnapshot
    from durable_sa.core.transition import Transition

S = RunStatus
jitters = st.floats(0, 1, exclude_max=True)


def check_transition(t: Transition) -> None:
    """What every transition must satisfy, whatever decided it."""
    before, after = t.before, t.after
    # the status change is a legal move, and the one its event names
    assert is_legal_move(before.status, after.status)
    assert next_status(before.status, t.event) is after.status
    assert after.id == before.id
    # journal writes are unique per step_id
    ids = [write.step_id for write in t.journal]
    assert len(ids) == len(set(ids))
    # every job is for this run
    assert all(job.run_id == before.id for job in t.jobs)
    # one continuation job while the run keeps going, none once it parks or ends
    if after.status is S.RUNNING:
        assert len(t.jobs) == 1
        payload = t.jobs[0].payload
        assert isinstance(payload, AdvanceJob)
        assert is_current_advance(after, payload)
    elif after.status is S.COMPENSATING:
        assert len(t.jobs) == 1
        payload = t.jobs[0].payload
        assert isinstance(payload, CompensateJob)
        assert is_current_compensation(after, payload)
    elif after.status is S.SUSPENDED:
        assert len(t.jobs) <= 1
        for job in t.jobs:
            assert isinstance(job.payload, SignalTimeoutJob)
            assert is_current_signal_timeout(after, job.payload)
            assert after.wake_at == job.available_at
    else:
        assert after.status in TERMINAL_STATUSES
        assert t.jobs == ()
    # a wait is recorded exactly while the run is suspended, in its columns alone
    assert (after.status is S.SUSPENDED) == (after.waiting_for is not None)
    if after.status is not S.SUSPENDED:
        assert (after.awaiting_signal, after.wait_kind, after.wait_step) == (None, None, None)
    assert not any(key.startswith(RESERVED_PREFIX) for key in after.state)
    if after.status is S.COMPLETED:
        assert after.result == after.public_results
        assert not any(key.startswith(RESERVED_PREFIX) for key in after.result)
    # a parent learns about a child that ended, and only then
    if after.status in TERMINAL_STATUSES and after.parent_run_id is not None:
        assert t.settle_parent is not None
        assert t.settle_parent.parent_run_id == after.parent_run_id
        assert t.settle_parent.settlement == after.status
    else:
        assert t.settle_parent is None


# ── decide_step ────────────────────────────────────────────────────────────────


def check_step(case: tuple[RunSnapshot, StepOutcome, int], jitter: float) -> Transition:
    run, outcome, attempt = case
    job = AdvanceJob(run_id=run.id, step_index=run.current_step, attempt=attempt)
    assert is_current_advance(run, job)  # the guard holds for the pair
    t = decide_step(run, outcome, attempt=attempt, now=NOW, jitter=jitter)
    assert t.before is run
    check_transition(t)
    if t.after.status is S.SUSPENDED and t.jobs:
        assert isinstance(outcome, AwaitSignal)
        assert outcome.timeout is not None
    if isinstance(outcome, Failed) and attempt < outcome.max_attempts:
        assert t.after.current_step == run.current_step
        assert t.after.attempt == attempt + 1
        assert t.jobs[0].available_at > NOW
    elif t.after.status is S.RUNNING:
        assert t.after.current_step == run.current_step + 1
        assert t.after.attempt == 1
    return t


@settings(max_examples=200, deadline=None)
@given(case=step_cases(), jitter=jitters)
def test_every_step_outcome_makes_a_legal_well_formed_transition(
    case: tuple[RunSnapshot, StepOutcome, int], jitter: float
) -> None:
    check_step(case, jitter)


EXPECTED_AFTER = {
    "complete": {S.COMPLETED},
    "advance": {S.RUNNING, S.COMPLETED},
    "sleep": {S.RUNNING},
    "await_signal": {S.SUSPENDED},
    "suspend_agent": {S.SUSPENDED},
    "await_child": {S.SUSPENDED},
    "retry": {S.RUNNING},
    "compensate": {S.COMPENSATING, S.FAILED},
}


@pytest.mark.parametrize("kind", [*OUTCOME_KINDS, "complete"])
@settings(max_examples=60, deadline=None)
@given(data=st.data(), jitter=jitters)
def test_each_outcome_kind_makes_a_legal_well_formed_transition(
    kind: str, data: DataObject, jitter: float
) -> None:
    t = check_step(data.draw(cases_of_kind(kind)), jitter)
    assert t.after.status in EXPECTED_AFTER[kind]


@settings(max_examples=100, deadline=None)
@given(run=run_snapshots(st.sampled_from([s for s in S if s is not S.RUNNING])))
def test_the_advance_guard_rejects_every_run_that_is_not_running(run: RunSnapshot) -> None:
    job = AdvanceJob(run_id=run.id, step_index=run.current_step, attempt=run.attempt)
    assert not is_current_advance(run, job)


# ── compensation ───────────────────────────────────────────────────────────────


@settings(max_examples=150, deadline=None)
@given(run=compensating_snapshots(), data=st.data())
def test_compensation_cursor_only_moves_down(run: RunSnapshot, data: DataObject) -> None:
    cursor = run.compensation_cursor
    assert cursor is not None
    assert is_current_compensation(run, CompensateJob(run_id=run.id, index=cursor))
    journal = data.draw(journal_writes(f"{step_name(cursor)}#compensate", 1))
    t = decide_compensation(run, index=cursor, journal=journal, now=NOW)
    check_transition(t)
    assert t.after.compensation_cursor is not None
    assert t.after.compensation_cursor < cursor
    assert t.after.status in {S.COMPENSATING, S.FAILED}
    if t.after.status is S.FAILED:
        assert cursor == 0
        assert t.after.error == run.error  # the original error is kept


@settings(max_examples=50, deadline=None)
@given(run=compensating_snapshots())
def test_compensation_reaches_failed_in_cursor_plus_one_steps(run: RunSnapshot) -> None:
    assert run.compensation_cursor is not None
    start = run.compensation_cursor
    steps = 0
    while run.status is S.COMPENSATING:
        assert run.compensation_cursor is not None
        previous = run.compensation_cursor
        t = decide_compensation(run, index=previous, journal=(), now=NOW)
        check_transition(t)
        run = t.after
        assert run.compensation_cursor is not None
        assert run.compensation_cursor < previous
        steps += 1
    assert run.status is S.FAILED
    assert run.compensation_cursor == -1
    assert steps == start + 1


# ── cancel ─────────────────────────────────────────────────────────────────────


@settings(max_examples=150, deadline=None)
@given(run=run_snapshots())
def test_cancel_never_leaves_a_terminal_status(run: RunSnapshot) -> None:
    t = decide_cancel(run)
    if run.status in TERMINAL_STATUSES:
        assert t is None
        return
    assert t is not None
    check_transition(t)
    assert t.after.status is S.CANCELED
    assert t.drop_jobs


# ── signals, timers, children, recovery: any snapshot, nothing raises ─────────


@settings(max_examples=200, deadline=None)
@given(run=run_snapshots() | suspended_snapshots(), data=st.data())
def test_resume_is_legal_or_refused(run: RunSnapshot, data: DataObject) -> None:
    signal = data.draw(resume_signals(run))
    t = decide_resume(run, signal=signal, data=data.draw(json_values), now=NOW)
    if t is None:
        return
    assert run.status is S.SUSPENDED
    assert run.resume_signal == signal
    check_transition(t)
    assert t.after.status is S.RUNNING
    assert t.drop_jobs
    # a second delivery of the same signal is refused
    assert decide_resume(t.after, signal=signal, data=None, now=NOW) is None


@settings(max_examples=200, deadline=None)
@given(run=run_snapshots() | suspended_snapshots(st.just(WaitKind.SIGNAL)), data=st.data())
def test_signal_timeout_is_legal_or_stale(run: RunSnapshot, data: DataObject) -> None:
    job = data.draw(signal_timeout_jobs(run))
    t = decide_signal_timeout(run, job, now=NOW)
    assert (t is not None) == is_current_signal_timeout(run, job)
    if t is None:
        return
    check_transition(t)
    assert t.after.status in {S.COMPENSATING, S.FAILED}
    assert t.after.error is not None
    assert "timed out" in t.after.error
    assert len(t.journal) == 1


@settings(max_examples=200, deadline=None)
@given(run=run_snapshots() | suspended_snapshots(st.just(WaitKind.CHILD)), data=st.data())
def test_child_settlement_is_legal_or_ignored(run: RunSnapshot, data: DataObject) -> None:
    settlement = data.draw(settlements(run))
    t = decide_child_settled(run, settlement, now=NOW)
    wait = run.waiting_for
    waiting_here = (
        run.status is S.SUSPENDED
        and wait is not None
        and wait.kind is WaitKind.CHILD
        and wait.step == settlement.child_step_id
    )
    assert (t is not None) == waiting_here
    if t is None:
        return
    check_transition(t)
    assert len(t.journal) == 1
    assert t.journal[0].step_id == settlement.child_step_id


@settings(max_examples=150, deadline=None)
@given(run=run_snapshots() | suspended_snapshots(st.just(WaitKind.SIGNAL)))
def test_recovery_jobs_pass_their_guards(run: RunSnapshot) -> None:
    spec = decide_recovery(run, now=NOW)
    if spec is None:
        assert run.status is not S.RUNNING
        return
    assert spec.run_id == run.id
    assert spec.available_at >= NOW
    payload = spec.payload
    if isinstance(payload, AdvanceJob):
        assert is_current_advance(run, payload)
    elif isinstance(payload, CompensateJob):
        assert is_current_compensation(run, payload)
    else:
        assert is_current_signal_timeout(run, payload)


# ── the guarded inputs never hit an illegal move ───────────────────────────────


@settings(max_examples=200, deadline=None)
@given(run=run_snapshots() | suspended_snapshots(), data=st.data(), jitter=jitters)
def test_no_guarded_decision_raises_illegal_transition(
    run: RunSnapshot, data: DataObject, jitter: float
) -> None:
    try:
        if is_current_advance(
            run, AdvanceJob(run_id=run.id, step_index=run.current_step, attempt=run.attempt)
        ):
            kind = data.draw(st.sampled_from(OUTCOME_KINDS))
            outcome = (
                Complete()
                if run.current_step >= run.total_steps
                else data.draw(step_outcomes(run, run.attempt, kind))
            )
            decide_step(run, outcome, attempt=run.attempt, now=NOW, jitter=jitter)
        cursor = run.compensation_cursor
        if (
            cursor is not None
            and cursor >= 0
            and is_current_compensation(run, CompensateJob(run_id=run.id, index=cursor))
        ):
            decide_compensation(run, index=cursor, journal=(), now=NOW)
        decide_resume(run, signal=data.draw(resume_signals(run)), data=None, now=NOW)
        decide_signal_timeout(run, data.draw(signal_timeout_jobs(run)), now=NOW)
        decide_child_settled(run, data.draw(settlements(run)), now=NOW)
        decide_cancel(run)
        decide_recovery(run, now=NOW)
    except IllegalTransition as exc:  # pragma: no cover - the failure being tested for
        pytest.fail(f"illegal transition for a guarded input: {exc}")
