"""The pure decisions of buffered signals, timeout defaults and per-run deadlines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from durable_sa.core.decide import (
    decide_buffered_signal,
    decide_recovery,
    decide_resume,
    decide_signal_timeout,
    decide_step,
)
from durable_sa.core.jobs import AdvanceJob, SignalTimeoutJob
from durable_sa.core.outcomes import AwaitSignal, Sleep
from durable_sa.core.plan import plan_transition
from durable_sa.core.snapshot import BufferedSignal, JournalStatus, RunSnapshot, WaitKind
from durable_sa.core.status import RunEvent, RunStatus

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def waiting(**changes: Any) -> RunSnapshot:
    fields: dict[str, Any] = {
        "id": 7,
        "workflow_name": "orders",
        "status": RunStatus.SUSPENDED,
        "current_step": 1,
        "total_steps": 3,
        "state": {"first": 1},
        "wait_kind": WaitKind.SIGNAL,
        "wait_step": "gate",
        "awaiting_signal": "go",
        "wake_at": NOW + timedelta(hours=1),
        "revision": 4,
        **changes,
    }
    return RunSnapshot(**fields)


def test_suspending_on_a_signal_asks_the_shell_for_a_buffered_one() -> None:
    running = waiting(
        status=RunStatus.RUNNING, wait_kind=None, wait_step=None, awaiting_signal=None, wake_at=None
    )
    transition = decide_step(
        running, AwaitSignal(step_name="gate", signal="go"), attempt=1, now=NOW
    )
    assert transition.after.status is RunStatus.SUSPENDED
    assert transition.take_buffered == "go"
    assert transition.consume_signal is None
    plan = plan_transition(transition)
    assert plan.take_buffered == "go"
    assert plan.lock_free is False  # applied alone: the buffer is read with the row held


def test_a_deadline_given_as_an_instant_is_kept_as_is() -> None:
    running = waiting(
        status=RunStatus.RUNNING, wait_kind=None, wait_step=None, awaiting_signal=None, wake_at=None
    )
    until = NOW + timedelta(days=3)
    transition = decide_step(
        running, AwaitSignal(step_name="gate", signal="go", until=until), attempt=1, now=NOW
    )
    assert transition.after.wake_at == until
    (timer,) = transition.jobs
    assert timer.available_at == until
    assert timer.payload == SignalTimeoutJob(run_id=7, step_index=1, signal="go")
    # recovery rebuilds the same timer from the run alone
    recovered = decide_recovery(transition.after, now=NOW)
    assert recovered is not None
    assert recovered.available_at == until


def test_a_buffered_signal_is_delivered_like_resume_and_consumed() -> None:
    run = waiting()
    buffered = BufferedSignal(id=42, signal="go", data={"ok": True})
    transition = decide_buffered_signal(run, buffered, now=NOW)
    resumed = decide_resume(run, signal="go", data={"ok": True}, now=NOW)
    assert transition is not None
    assert resumed is not None
    assert transition.consume_signal == 42
    assert transition.after == resumed.after
    assert transition.journal == resumed.journal
    assert transition.after.state == {"first": 1, "gate": {"ok": True}}
    assert transition.after.resume_data == {"ok": True}
    assert transition.drop_jobs is True  # the timer goes
    assert plan_transition(transition).consume_signal == 42


@pytest.mark.parametrize(
    "run",
    [
        waiting(awaiting_signal="other"),
        waiting(status=RunStatus.RUNNING, wait_kind=None, wait_step=None, awaiting_signal=None),
        waiting(wait_kind=WaitKind.AGENT, wait_step="go", awaiting_signal=None),
    ],
    ids=["another-signal", "running", "agent-step"],
)
def test_a_buffered_signal_is_not_taken_by_a_run_not_waiting_for_it(run: RunSnapshot) -> None:
    buffered = BufferedSignal(id=1, signal="go", data=None)
    assert decide_buffered_signal(run, buffered, now=NOW) is None


def test_a_timeout_with_a_default_completes_the_step_with_it() -> None:
    run = waiting()
    job = SignalTimeoutJob(run_id=7, step_index=1, signal="go")
    transition = decide_signal_timeout(run, job, now=NOW, default={"approved": False})
    assert transition is not None
    assert transition.event is RunEvent.WAKE
    assert transition.after.status is RunStatus.RUNNING
    assert transition.after.current_step == 2
    assert transition.after.state == {"first": 1, "gate": {"approved": False}}
    (row,) = transition.journal
    assert (row.step_id, row.status, row.result) == (
        "gate",
        JournalStatus.COMPLETED,
        {"approved": False},
    )
    (job_spec,) = transition.jobs
    assert job_spec.payload == AdvanceJob(run_id=7, step_index=2)


def test_a_default_of_none_completes_and_no_default_fails() -> None:
    run = waiting()
    job = SignalTimeoutJob(run_id=7, step_index=1, signal="go")
    completed = decide_signal_timeout(run, job, now=NOW, default=None)
    assert completed is not None
    assert completed.after.state["gate"] is None
    assert completed.after.status is RunStatus.RUNNING
    failed = decide_signal_timeout(run, job, now=NOW)
    assert failed is not None
    assert failed.after.status is not RunStatus.RUNNING
    assert "timed out" in str(failed.after.error)


def test_a_stale_timer_decides_nothing_even_with_a_default() -> None:
    job = SignalTimeoutJob(run_id=7, step_index=1, signal="go")
    moved = waiting(
        status=RunStatus.RUNNING,
        current_step=2,
        wait_kind=None,
        wait_step=None,
        awaiting_signal=None,
    )
    assert decide_signal_timeout(moved, job, now=NOW, default=1) is None


def test_a_sleep_until_an_instant_decided_per_run_is_journaled() -> None:
    running = waiting(
        status=RunStatus.RUNNING, wait_kind=None, wait_step=None, awaiting_signal=None, wake_at=None
    )
    until = NOW + timedelta(minutes=5)
    transition = decide_step(running, Sleep(step_name="nap", until=until), attempt=1, now=NOW)
    (row,) = transition.journal
    assert row.result == {"wake_at": until.isoformat()}
    (job,) = transition.jobs
    assert job.available_at == until
