from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest

from durable_sa.core.backoff import backoff_delay
from durable_sa.core.decide import (
    decide_cancel,
    decide_child_settled,
    decide_compensation,
    decide_failure,
    decide_recovery,
    decide_resume,
    decide_signal_timeout,
    decide_step,
    is_current_advance,
    is_current_compensation,
    is_current_signal_timeout,
)
from durable_sa.core.jobs import (
    AdvanceJob,
    CompensateJob,
    JobPayload,
    JobSpec,
    SignalTimeoutJob,
)
from durable_sa.core.outcomes import (
    Advance,
    AwaitChild,
    AwaitSignal,
    Complete,
    Failed,
    Sleep,
    SuspendAgent,
)
from durable_sa.core.snapshot import (
    JournalStatus,
    JournalWrite,
    RunSnapshot,
    WaitInfo,
    WaitKind,
)
from durable_sa.core.status import RunEvent, RunStatus
from durable_sa.core.transition import ChildSpawn, ParentSettlement, Settlement, Transition
from durable_sa.errors import IllegalTransition

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
S = RunStatus
RUN_ID = 11


def make_run(**changes: Any) -> RunSnapshot:
    base = RunSnapshot(
        id=RUN_ID,
        workflow_name="orders",
        workflow_version="v1",
        status=S.RUNNING,
        current_step=1,
        total_steps=4,
        input={"order": 7},
        state={"reserve": {"ok": True}},
    )
    return attrs.evolve(base, **changes)


def waiting(kind: WaitKind, step: str, signal: str | None = None, **changes: Any) -> RunSnapshot:
    wait = WaitInfo(kind=kind, step=step, signal=signal)
    values: dict[str, Any] = {"status": S.SUSPENDED, **wait.columns(), **changes}
    return make_run(**values)


def on_signal(**changes: Any) -> RunSnapshot:
    return waiting(WaitKind.SIGNAL, "approve", "go", **changes)


def on_agent(**changes: Any) -> RunSnapshot:
    return waiting(WaitKind.AGENT, "agent", **changes)


def on_child(**changes: Any) -> RunSnapshot:
    return waiting(WaitKind.CHILD, "kid", **changes)


def done(step_id: str, result: object = None, attempt: int = 1) -> JournalWrite:
    return JournalWrite(
        step_id=step_id, status=JournalStatus.COMPLETED, result=result, attempt=attempt
    )


def job(payload: JobPayload, at: datetime = NOW) -> JobSpec:
    """A job of the test run: tagged with its workflow and pinned version."""
    return JobSpec(payload=payload, available_at=at, workflow="orders", version="v1")


def advance_job(step_index: int, attempt: int = 1, at: datetime = NOW) -> JobSpec:
    return job(AdvanceJob(run_id=RUN_ID, step_index=step_index, attempt=attempt), at)


def compensate_job(index: int) -> JobSpec:
    return job(CompensateJob(run_id=RUN_ID, index=index))


def settled(
    settlement: Settlement,
    *,
    step: str = "kid",
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> ParentSettlement:
    return ParentSettlement(
        parent_run_id=RUN_ID,
        child_run_id=99,
        child_workflow="billing",
        child_step_id=step,
        settlement=settlement,
        result=result,
        error=error,
    )


# ── Advance / Complete ────────────────────────────────────────────────────────


def test_advance_moves_to_the_next_step_with_one_job_due_now() -> None:
    run = make_run(attempt=3, error="attempt 2 of 3 failed: flaky")
    journal = (done("charge", {"id": "ch_1"}, attempt=3),)
    outcome = Advance(journal=journal, result_patch={"charge": {"id": "ch_1"}})
    t = decide_step(run, outcome, attempt=3, now=NOW)
    assert isinstance(t, Transition)
    assert t.event is RunEvent.PROGRESS
    assert t.before is run
    assert t.run_id == RUN_ID
    assert t.after.status is S.RUNNING
    assert t.after.current_step == 2
    assert t.after.attempt == 1
    assert t.after.error is None
    assert t.after.wake_at is None
    assert t.after.state == {"reserve": {"ok": True}, "charge": {"id": "ch_1"}}
    assert t.journal == journal
    assert t.jobs == (advance_job(2),)
    assert (t.drop_jobs, t.spawn, t.settle_parent) == (False, None, None)


def test_advance_drops_the_resume_payload() -> None:
    run = make_run(state={"reserve": 1}, resume_data={"answer": 42})
    t = decide_step(run, Advance(journal=(), result_patch={"s1": 2}), attempt=1, now=NOW)
    assert t.after.state == {"reserve": 1, "s1": 2}
    assert t.after.resume_data is None


def test_advance_on_the_last_step_completes_the_run() -> None:
    run = make_run(current_step=3, state={"a": 1}, resume_data={"x": 1})
    journal = (done("last", "done"),)
    t = decide_step(
        run, Advance(journal=journal, result_patch={"last": "done"}), attempt=1, now=NOW
    )
    assert t.event is RunEvent.COMPLETE
    assert t.after.status is S.COMPLETED
    assert t.after.result == {"a": 1, "last": "done"}
    assert t.after.result == t.after.public_results
    assert t.after.current_step == run.total_steps
    assert t.jobs == ()
    assert t.journal == journal
    assert t.settle_parent is None
    assert t.after.resume_data is None


def test_completing_a_child_run_settles_its_parent() -> None:
    run = make_run(current_step=3, parent_run_id=5, parent_step_id="sub", state={"a": 1})
    t = decide_step(run, Advance(journal=(), result_patch={"b": 2}), attempt=1, now=NOW)
    assert t.after.status is S.COMPLETED
    assert t.settle_parent == ParentSettlement(
        parent_run_id=5,
        child_run_id=RUN_ID,
        child_workflow="orders",
        child_step_id="sub",
        settlement=Settlement.COMPLETED,
        result={"a": 1, "b": 2},
        error=None,
    )


def test_complete_outcome_ends_the_run_with_its_public_results() -> None:
    run = make_run(current_step=4, state={"a": 1}, resume_data="r")
    t = decide_step(run, Complete(), attempt=1, now=NOW)
    assert t.after.status is S.COMPLETED
    assert t.after.result == {"a": 1}
    assert (t.journal, t.jobs) == ((), ())


# ── Sleep ─────────────────────────────────────────────────────────────────────


def test_sleep_journals_the_wake_time_and_delays_the_next_job() -> None:
    run = make_run()
    wake = NOW + timedelta(minutes=5)
    t = decide_step(run, Sleep(step_name="nap", delay=timedelta(minutes=5)), attempt=1, now=NOW)
    assert t.journal == (
        JournalWrite(
            step_id="nap",
            status=JournalStatus.COMPLETED,
            result={"wake_at": wake.isoformat()},
            attempt=1,
        ),
    )
    assert t.after.status is S.RUNNING
    assert t.after.current_step == 2
    assert t.after.wake_at == wake
    assert t.jobs == (advance_job(2, at=wake),)


def test_sleep_until_an_instant() -> None:
    until = NOW + timedelta(days=2)
    t = decide_step(make_run(), Sleep(step_name="nap", until=until), attempt=2, now=NOW)
    assert t.journal[0].result == {"wake_at": until.isoformat()}
    assert t.journal[0].attempt == 2
    assert t.after.wake_at == until
    assert t.jobs == (advance_job(2, at=until),)


def test_sleep_of_zero_is_due_now_and_not_sleeping() -> None:
    t = decide_step(make_run(), Sleep(step_name="nap", delay=timedelta(0)), attempt=1, now=NOW)
    assert t.after.wake_at is None
    assert t.jobs == (advance_job(2),)


# ── AwaitSignal ───────────────────────────────────────────────────────────────


def test_await_signal_suspends_without_a_job() -> None:
    run = make_run()
    t = decide_step(run, AwaitSignal(step_name="approve", signal="go"), attempt=1, now=NOW)
    assert t.event is RunEvent.SUSPEND
    assert t.after.status is S.SUSPENDED
    assert t.after.awaiting_signal == "go"
    assert t.after.current_step == 1
    assert t.after.wake_at is None
    assert t.after.waiting_for == WaitInfo(kind=WaitKind.SIGNAL, step="approve", signal="go")
    assert (t.jobs, t.journal, t.spawn) == ((), (), None)


def test_await_signal_with_a_timeout_arms_one_timer() -> None:
    run = make_run()
    outcome = AwaitSignal(step_name="approve", signal="go", timeout=timedelta(hours=2))
    t = decide_step(run, outcome, attempt=1, now=NOW)
    deadline = NOW + timedelta(hours=2)
    assert t.after.status is S.SUSPENDED
    assert t.after.wake_at == deadline
    assert t.jobs == (job(SignalTimeoutJob(run_id=RUN_ID, step_index=1, signal="go"), deadline),)


# ── SuspendAgent / AwaitChild ─────────────────────────────────────────────────


def test_suspend_agent_stores_the_snapshot_under_the_step_name() -> None:
    snapshot = {"status": "suspended", "state": {"turn": 3}, "pending_tool_calls": [{"id": 1}]}
    t = decide_step(
        make_run(), SuspendAgent(step_name="agent", snapshot=snapshot), attempt=1, now=NOW
    )
    assert t.event is RunEvent.SUSPEND
    assert t.after.status is S.SUSPENDED
    assert t.after.state["agent"] == snapshot
    assert t.after.awaiting_signal is None  # a column for signals only
    assert t.after.resume_signal == "agent"  # resume(run, "agent") wakes it
    assert t.after.waiting_for == WaitInfo(kind=WaitKind.AGENT, step="agent")
    assert t.after.current_step == 1
    assert t.jobs == ()


def test_await_child_suspends_and_spawns_the_child() -> None:
    outcome = AwaitChild(
        step_name="kid",
        child_name="billing",
        child_version="v2",
        child_total_steps=3,
        child_input={"amount": 5},
    )
    t = decide_step(make_run(), outcome, attempt=1, now=NOW)
    assert t.after.status is S.SUSPENDED
    assert t.after.awaiting_signal is None
    assert t.after.waiting_for == WaitInfo(kind=WaitKind.CHILD, step="kid")
    assert t.spawn == ChildSpawn(
        workflow_name="billing",
        workflow_version="v2",
        total_steps=3,
        input={"amount": 5},
        parent_run_id=RUN_ID,
        parent_step_id="kid",
        due=NOW,
    )
    assert t.jobs == ()


# ── Failed: retry ─────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(("strategy", "jitter"), [("exponential", 0.5), ("linear", 0.3)])
def test_retry_keeps_the_step_and_delays_the_next_attempt(strategy: str, jitter: float) -> None:
    run = make_run(attempt=2)
    journal = (done("fan#a", 1, attempt=2),)
    outcome = Failed(
        step_name="fan", journal=journal, failure="boom", backoff=strategy, max_attempts=3
    )  # type: ignore[arg-type]
    t = decide_step(run, outcome, attempt=2, now=NOW, jitter=jitter)
    assert t.event is RunEvent.PROGRESS
    assert t.after.status is S.RUNNING
    assert t.after.current_step == 1
    assert t.after.attempt == 3
    assert t.after.error is not None
    assert "boom" in t.after.error
    assert "attempt 2 of 3" in t.after.error
    kept = JournalWrite(
        step_id="fan#attempt2", status=JournalStatus.FAILED, error="boom", attempt=2
    )
    assert t.journal == (*journal, kept)  # the units it finished, and its own failure
    delay = backoff_delay(2, strategy, jitter)  # type: ignore[arg-type]
    assert t.jobs == (advance_job(1, attempt=3, at=NOW + delay),)


def test_retry_delay_for_exponential_is_four_seconds_and_jitter_at_attempt_two() -> None:
    outcome = Failed(step_name="s", journal=(), failure="x", backoff="exponential", max_attempts=5)
    t = decide_step(make_run(attempt=2), outcome, attempt=2, now=NOW, jitter=0.25)
    assert t.jobs[0].available_at == NOW + timedelta(seconds=4.25)


@pytest.mark.parametrize(("attempt", "retried"), [(1, True), (2, True), (3, False), (4, False)])
def test_the_core_retries_until_the_last_attempt_then_journals_the_failure(
    attempt: int, retried: bool
) -> None:
    finished = (done("fan#a", 1, attempt=attempt),)
    outcome = Failed(
        step_name="fan", journal=finished, failure="boom", backoff="linear", max_attempts=3
    )
    t = decide_failure(make_run(attempt=attempt), outcome, attempt=attempt, now=NOW)
    if retried:
        assert t.after.status is S.RUNNING
        kept = JournalWrite(
            step_id=f"fan#attempt{attempt}",
            status=JournalStatus.FAILED,
            error="boom",
            attempt=attempt,
        )
        assert t.journal == (*finished, kept)  # the step's row waits: it is not over
    else:
        assert t.after.status in {S.COMPENSATING, S.FAILED}
        failed = JournalWrite(
            step_id="fan", status=JournalStatus.FAILED, error="boom", attempt=attempt
        )
        assert t.journal == (*finished, failed)


# ── Failed: roll back ─────────────────────────────────────────────────────────────


def test_compensate_with_steps_before_begins_rollback() -> None:
    run = make_run(current_step=2)
    outcome = Failed(
        step_name="ship", journal=(), failure="no truck", backoff="linear", max_attempts=3
    )
    t = decide_step(run, outcome, attempt=3, now=NOW)
    journal = (
        JournalWrite(step_id="ship", status=JournalStatus.FAILED, error="no truck", attempt=3),
    )
    assert t.event is RunEvent.ROLLBACK
    assert t.after.status is S.COMPENSATING
    assert t.after.compensation_cursor == 1
    assert t.after.error == "no truck"
    assert t.journal == journal
    assert t.jobs == (compensate_job(1),)
    assert t.drop_jobs is True
    assert t.settle_parent is None


def test_compensate_at_step_zero_fails_the_run() -> None:
    run = make_run(current_step=0, parent_run_id=5, parent_step_id="sub")
    outcome = Failed(
        step_name="first", journal=(), failure="bad input", backoff="linear", max_attempts=1
    )
    t = decide_step(run, outcome, attempt=1, now=NOW)
    assert t.event is RunEvent.FAIL
    assert t.after.status is S.FAILED
    assert t.after.error == "bad input"
    assert t.after.compensation_cursor is None
    assert t.jobs == ()
    assert t.drop_jobs is True
    assert t.settle_parent == ParentSettlement(
        parent_run_id=5,
        child_run_id=RUN_ID,
        child_workflow="orders",
        child_step_id="sub",
        settlement=Settlement.FAILED,
        result=None,
        error="bad input",
    )


@pytest.mark.parametrize("index", [0, 2])
def test_undo_failed_step_starts_at_the_failed_step(index: int) -> None:
    run = make_run(current_step=index)
    outcome = Failed(
        step_name="s",
        journal=(),
        failure="half done",
        backoff="linear",
        max_attempts=1,
        undo_failed_step=True,
    )
    t = decide_step(run, outcome, attempt=1, now=NOW)
    assert t.after.status is S.COMPENSATING
    assert t.after.compensation_cursor == index
    assert t.jobs == (compensate_job(index),)


@pytest.mark.parametrize(
    "outcome",
    [
        Advance(journal=(), result_patch={}),
        Sleep(step_name="s", delay=timedelta(1)),
        AwaitSignal(step_name="s", signal="go"),
        Failed(step_name="s", journal=(), failure="x", backoff="linear", max_attempts=3),
        Complete(),
    ],
    ids=lambda outcome: type(outcome).__name__,
)
@pytest.mark.parametrize("status", [S.COMPLETED, S.FAILED, S.CANCELED, S.PENDING])
def test_decide_step_refuses_illegal_moves(status: RunStatus, outcome: object) -> None:
    with pytest.raises(IllegalTransition):
        decide_step(make_run(status=status), outcome, attempt=1, now=NOW)  # type: ignore[arg-type]


# ── decide_compensation ───────────────────────────────────────────────────────


def test_compensation_moves_the_cursor_down() -> None:
    run = make_run(status=S.COMPENSATING, current_step=3, compensation_cursor=2, error="boom")
    journal = (done("charge#compensate"),)
    t = decide_compensation(run, index=2, journal=journal, now=NOW)
    assert t.event is RunEvent.UNDO
    assert t.after.status is S.COMPENSATING
    assert t.after.compensation_cursor == 1
    assert t.after.error == "boom"
    assert t.journal == journal
    assert t.jobs == (compensate_job(1),)


def test_compensation_past_zero_fails_with_the_original_error() -> None:
    run = make_run(
        status=S.COMPENSATING,
        compensation_cursor=0,
        error="card declined",
        parent_run_id=5,
        parent_step_id="sub",
    )
    journal = (done("reserve#compensate"),)
    t = decide_compensation(run, index=0, journal=journal, now=NOW)
    assert t.event is RunEvent.FAIL
    assert t.after.status is S.FAILED
    assert t.after.error == "card declined"
    assert t.after.compensation_cursor == -1
    assert t.journal == journal
    assert t.jobs == ()
    assert t.settle_parent is not None
    assert t.settle_parent.settlement is Settlement.FAILED
    assert t.settle_parent.error == "card declined"


def test_compensation_without_a_recorded_error_still_fails_with_a_message() -> None:
    run = make_run(status=S.COMPENSATING, compensation_cursor=0, error=None)
    t = decide_compensation(run, index=0, journal=(), now=NOW)
    assert t.after.status is S.FAILED
    assert t.after.error


def test_compensation_walks_every_step_down_to_failure() -> None:
    run = make_run(status=S.COMPENSATING, current_step=3, compensation_cursor=3, error="e")
    cursors = []
    while run.status is S.COMPENSATING:
        assert run.compensation_cursor is not None
        job = CompensateJob(run_id=RUN_ID, index=run.compensation_cursor)
        assert is_current_compensation(run, job)
        t = decide_compensation(run, index=job.index, journal=(), now=NOW)
        run = t.after
        cursors.append(run.compensation_cursor)
    assert cursors == [2, 1, 0, -1]
    assert run.status is S.FAILED
    assert run.error == "e"


def test_compensation_of_a_run_that_is_not_compensating_is_illegal() -> None:
    with pytest.raises(IllegalTransition):
        decide_compensation(make_run(status=S.FAILED), index=1, journal=(), now=NOW)


# ── decide_resume ─────────────────────────────────────────────────────────────


def test_resume_of_a_signal_step_journals_the_data_and_advances() -> None:
    run = on_signal(wake_at=NOW + timedelta(hours=1))
    t = decide_resume(run, signal="go", data={"approved": True}, now=NOW)
    assert t is not None
    assert t.event is RunEvent.WAKE
    assert t.journal == (done("approve", {"approved": True}),)
    assert t.after.status is S.RUNNING
    assert t.after.current_step == 2
    assert t.after.state == {"reserve": {"ok": True}, "approve": {"approved": True}}
    assert t.after.resume_data == {"approved": True}  # the next step's ctx.resume_data()
    assert t.after.waiting_for is None
    assert t.after.awaiting_signal is None
    assert t.after.wake_at is None
    assert t.jobs == (advance_job(2),)
    assert t.drop_jobs is True  # the timeout's timer goes


def test_resume_of_an_agent_step_re_enters_it_with_the_payload() -> None:
    run = on_agent(attempt=2)
    t = decide_resume(run, signal="agent", data={"tool": "ok"}, now=NOW)
    assert t is not None
    assert t.event is RunEvent.WAKE
    assert t.after.status is S.RUNNING
    assert t.after.current_step == 1
    assert t.after.resume_data == {"tool": "ok"}
    assert t.after.waiting_for is None
    assert t.journal == ()
    assert t.jobs == (advance_job(1, attempt=2),)
    assert t.drop_jobs is True


@pytest.mark.parametrize(
    ("run", "signal"),
    [
        (on_signal(), "stop"),
        (on_signal(), "approve"),  # the step's name is not its signal
        (on_agent(), "go"),
        (on_child(), "kid"),
        (make_run(), "go"),
        (make_run(status=S.COMPLETED), "go"),
        (make_run(status=S.SUSPENDED, awaiting_signal="go"), "go"),  # no wait kind
        (attrs.evolve(on_signal(), status=S.CANCELED), "go"),
        (on_signal(awaiting_signal="other"), "go"),
    ],
)
def test_resume_is_refused_unless_the_run_waits_for_that_signal(
    run: RunSnapshot, signal: str
) -> None:
    assert decide_resume(run, signal=signal, data=1, now=NOW) is None


def test_a_duplicate_resume_is_refused() -> None:
    first = decide_resume(on_signal(), signal="go", data=1, now=NOW)
    assert first is not None
    assert decide_resume(first.after, signal="go", data=1, now=NOW) is None


# ── decide_signal_timeout ─────────────────────────────────────────────────────


def test_signal_timeout_fails_the_step_and_rolls_back() -> None:
    deadline = NOW - timedelta(seconds=1)
    run = on_signal(wake_at=deadline)
    job = SignalTimeoutJob(run_id=RUN_ID, step_index=1, signal="go")
    t = decide_signal_timeout(run, job, now=NOW)
    assert t is not None
    assert t.event is RunEvent.ROLLBACK
    assert t.after.status is S.COMPENSATING
    assert t.after.compensation_cursor == 0
    assert t.after.error is not None
    assert "timed out" in t.after.error
    assert "'go'" in t.after.error
    assert len(t.journal) == 1
    write = t.journal[0]
    assert (write.step_id, write.status) == ("approve", JournalStatus.FAILED)
    assert write.error is not None
    assert "timed out" in write.error
    assert t.after.waiting_for is None
    assert (t.after.awaiting_signal, t.after.wake_at) == (None, None)
    assert t.jobs == (compensate_job(0),)
    assert t.drop_jobs is True


def test_signal_timeout_at_step_zero_fails_the_run() -> None:
    run = on_signal(current_step=0, wake_at=NOW)
    job = SignalTimeoutJob(run_id=RUN_ID, step_index=0, signal="go")
    t = decide_signal_timeout(run, job, now=NOW)
    assert t is not None
    assert t.after.status is S.FAILED
    assert t.after.error is not None
    assert "timed out" in t.after.error
    assert t.jobs == ()


@pytest.mark.parametrize(
    ("run", "job"),
    [
        (make_run(), SignalTimeoutJob(run_id=RUN_ID, step_index=1, signal="go")),
        (on_signal(), SignalTimeoutJob(run_id=RUN_ID, step_index=2, signal="go")),
        (on_signal(), SignalTimeoutJob(run_id=RUN_ID, step_index=1, signal="stop")),
        (on_agent(), SignalTimeoutJob(run_id=RUN_ID, step_index=1, signal="agent")),
        (on_child(), SignalTimeoutJob(run_id=RUN_ID, step_index=1, signal="go")),
        (
            attrs.evolve(on_signal(), status=S.CANCELED),
            SignalTimeoutJob(run_id=RUN_ID, step_index=1, signal="go"),
        ),
    ],
)
def test_a_stale_signal_timeout_does_nothing(run: RunSnapshot, job: SignalTimeoutJob) -> None:
    assert decide_signal_timeout(run, job, now=NOW) is None


def test_signal_timeout_after_the_signal_arrived_is_stale() -> None:
    resumed = decide_resume(on_signal(wake_at=NOW), signal="go", data=1, now=NOW)
    assert resumed is not None
    job = SignalTimeoutJob(run_id=RUN_ID, step_index=1, signal="go")
    assert decide_signal_timeout(resumed.after, job, now=NOW) is None


# ── decide_child_settled ──────────────────────────────────────────────────────


def test_completed_child_resumes_the_parent_with_its_result() -> None:
    t = decide_child_settled(on_child(), settled(Settlement.COMPLETED, result={"x": 1}), now=NOW)
    assert t is not None
    assert t.event is RunEvent.WAKE
    assert t.journal == (done("kid", {"x": 1}),)
    assert t.after.status is S.RUNNING
    assert t.after.current_step == 2
    assert t.after.state == {"reserve": {"ok": True}, "kid": {"x": 1}}
    assert t.jobs == (advance_job(2),)


def test_completed_child_without_result_gives_an_empty_object() -> None:
    t = decide_child_settled(on_child(), settled(Settlement.COMPLETED), now=NOW)
    assert t is not None
    assert t.after.state["kid"] == {}


@pytest.mark.parametrize(
    ("settlement", "verb"), [(Settlement.FAILED, "failed"), (Settlement.CANCELED, "was canceled")]
)
def test_failed_or_canceled_child_fails_the_parent_step(settlement: Settlement, verb: str) -> None:
    t = decide_child_settled(on_child(), settled(settlement, error="card declined"), now=NOW)
    assert t is not None
    assert t.after.status is S.COMPENSATING
    assert t.after.compensation_cursor == 0
    error = t.after.error
    assert error is not None
    assert "'billing'" in error
    assert "99" in error
    assert verb in error
    assert "card declined" in error
    assert len(t.journal) == 1
    assert (t.journal[0].step_id, t.journal[0].status) == ("kid", JournalStatus.FAILED)
    assert t.journal[0].error == error
    assert t.jobs == (compensate_job(0),)
    assert t.after.waiting_for is None


def test_failed_child_at_step_zero_fails_the_parent() -> None:
    t = decide_child_settled(on_child(current_step=0), settled(Settlement.FAILED), now=NOW)
    assert t is not None
    assert t.after.status is S.FAILED
    assert t.jobs == ()


@pytest.mark.parametrize(
    ("parent", "settlement"),
    [
        (on_child(), settled(Settlement.COMPLETED, step="other")),
        (on_signal(), settled(Settlement.COMPLETED, step="approve")),
        (on_agent(), settled(Settlement.FAILED, step="agent")),
        (make_run(), settled(Settlement.COMPLETED)),
        (attrs.evolve(on_child(), status=S.CANCELED), settled(Settlement.FAILED)),
    ],
)
def test_child_settlement_is_ignored_when_the_parent_is_not_waiting_for_it(
    parent: RunSnapshot, settlement: ParentSettlement
) -> None:
    assert decide_child_settled(parent, settlement, now=NOW) is None


# ── decide_cancel ─────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "run",
    [
        make_run(status=S.PENDING, current_step=0),
        make_run(status=S.RUNNING, wake_at=NOW + timedelta(hours=1)),
        on_signal(wake_at=NOW),
        on_child(),
        make_run(status=S.COMPENSATING, compensation_cursor=0, error="x"),
    ],
    ids=["pending", "running", "suspended-signal", "suspended-child", "compensating"],
)
def test_cancel_ends_every_non_terminal_run(run: RunSnapshot) -> None:
    t = decide_cancel(run)
    assert t is not None
    assert t.event is RunEvent.CANCEL
    assert t.after.status is S.CANCELED
    assert t.drop_jobs is True
    assert t.jobs == ()
    assert t.after.waiting_for is None
    assert (t.after.awaiting_signal, t.after.wake_at) == (None, None)
    assert t.settle_parent is None


def test_canceling_a_child_settles_its_parent() -> None:
    t = decide_cancel(make_run(parent_run_id=5, parent_step_id="sub"))
    assert t is not None
    assert t.settle_parent is not None
    assert t.settle_parent.settlement is Settlement.CANCELED
    assert t.settle_parent.parent_run_id == 5
    assert t.settle_parent.child_step_id == "sub"


@pytest.mark.parametrize("status", [S.COMPLETED, S.FAILED, S.CANCELED])
def test_cancel_of_a_terminal_run_does_nothing(status: RunStatus) -> None:
    assert decide_cancel(make_run(status=status)) is None


# ── decide_recovery ───────────────────────────────────────────────────────────


def test_recovery_of_a_running_run_is_its_current_step() -> None:
    assert decide_recovery(make_run(attempt=2), now=NOW) == advance_job(1, attempt=2)


def test_recovery_of_a_sleeping_run_waits_for_its_wake_time() -> None:
    wake = NOW + timedelta(minutes=30)
    assert decide_recovery(make_run(wake_at=wake), now=NOW) == advance_job(1, at=wake)


def test_recovery_of_an_overslept_run_is_due_now() -> None:
    run = make_run(wake_at=NOW - timedelta(minutes=30))
    assert decide_recovery(run, now=NOW) == advance_job(1)


def test_recovery_of_a_compensating_run_is_its_cursor() -> None:
    run = make_run(status=S.COMPENSATING, current_step=3, compensation_cursor=2, error="e")
    assert decide_recovery(run, now=NOW) == compensate_job(2)


@pytest.mark.parametrize(
    ("deadline", "due"),
    [(NOW + timedelta(hours=1), NOW + timedelta(hours=1)), (NOW - timedelta(hours=1), NOW)],
)
def test_recovery_of_a_signal_wait_with_a_timeout_rearms_the_timer(
    deadline: datetime, due: datetime
) -> None:
    recovered = decide_recovery(on_signal(wake_at=deadline), now=NOW)
    assert recovered == job(SignalTimeoutJob(run_id=RUN_ID, step_index=1, signal="go"), due)


@pytest.mark.parametrize(
    "run",
    [
        on_signal(),
        on_agent(),
        on_child(),
        make_run(status=S.PENDING, current_step=0),
        make_run(status=S.COMPLETED, current_step=4),
        make_run(status=S.FAILED, compensation_cursor=-1),
        make_run(status=S.CANCELED),
    ],
    ids=["signal-no-timeout", "agent", "child", "pending", "completed", "failed", "canceled"],
)
def test_recovery_has_nothing_to_do_for_other_runs(run: RunSnapshot) -> None:
    assert decide_recovery(run, now=NOW) is None


# ── guards ────────────────────────────────────────────────────────────────────


def test_is_current_advance() -> None:
    run = make_run(current_step=2, attempt=2)
    assert is_current_advance(run, AdvanceJob(run_id=RUN_ID, step_index=2, attempt=2))
    assert not is_current_advance(run, AdvanceJob(run_id=RUN_ID, step_index=1, attempt=2))
    assert not is_current_advance(run, AdvanceJob(run_id=RUN_ID, step_index=3, attempt=2))
    assert not is_current_advance(run, AdvanceJob(run_id=RUN_ID, step_index=2, attempt=1))
    for status in (S.PENDING, S.SUSPENDED, S.COMPENSATING, S.COMPLETED, S.FAILED, S.CANCELED):
        stale = attrs.evolve(run, status=status)
        assert not is_current_advance(stale, AdvanceJob(run_id=RUN_ID, step_index=2, attempt=2))


def test_is_current_compensation() -> None:
    run = make_run(status=S.COMPENSATING, current_step=3, compensation_cursor=1)
    assert is_current_compensation(run, CompensateJob(run_id=RUN_ID, index=1))
    assert not is_current_compensation(run, CompensateJob(run_id=RUN_ID, index=2))
    assert not is_current_compensation(run, CompensateJob(run_id=RUN_ID, index=0))
    for status in (S.RUNNING, S.FAILED, S.CANCELED, S.SUSPENDED):
        stale = attrs.evolve(run, status=status)
        assert not is_current_compensation(stale, CompensateJob(run_id=RUN_ID, index=1))


def test_is_current_signal_timeout() -> None:
    run = on_signal(wake_at=NOW)
    job = SignalTimeoutJob(run_id=RUN_ID, step_index=1, signal="go")
    assert is_current_signal_timeout(run, job)
    assert not is_current_signal_timeout(run, attrs.evolve(job, step_index=0))
    assert not is_current_signal_timeout(run, attrs.evolve(job, signal="stop"))
    assert not is_current_signal_timeout(attrs.evolve(run, status=S.RUNNING), job)
    assert not is_current_signal_timeout(attrs.evolve(run, status=S.CANCELED), job)
    assert not is_current_signal_timeout(attrs.evolve(run, wait_kind=None), job)
    assert not is_current_signal_timeout(on_agent(), attrs.evolve(job, signal="agent"))


def test_the_jobs_a_decision_emits_pass_their_guard() -> None:
    t1 = decide_step(make_run(), Advance(journal=(), result_patch={}), attempt=1, now=NOW)
    assert isinstance(t1.jobs[0].payload, AdvanceJob)
    assert is_current_advance(t1.after, t1.jobs[0].payload)
    assert not is_current_advance(t1.after, AdvanceJob(run_id=RUN_ID, step_index=1))
    retry = Failed(step_name="s", journal=(), failure="x", backoff="linear", max_attempts=3)
    t2 = decide_step(make_run(), retry, attempt=1, now=NOW)
    assert isinstance(t2.jobs[0].payload, AdvanceJob)
    assert is_current_advance(t2.after, t2.jobs[0].payload)
    # the failed attempt's redelivery is stale once the retry is decided
    assert not is_current_advance(t2.after, AdvanceJob(run_id=RUN_ID, step_index=1, attempt=1))
    outcome = AwaitSignal(step_name="approve", signal="go", timeout=timedelta(1))
    t3 = decide_step(make_run(), outcome, attempt=1, now=NOW)
    assert isinstance(t3.jobs[0].payload, SignalTimeoutJob)
    assert is_current_signal_timeout(t3.after, t3.jobs[0].payload)
