"""Signals (with timeouts), durable sleep, and agent suspension."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from durable_sa import Durable, DurableContext, JournalEntry, durable
from durable_sa.testing import drain, pending_jobs
from tests.integration.helpers import count, far_future, get_journal, get_run, step_ids


def test_signal_suspends_holding_no_job_then_resumes_on_the_match(engine: Durable) -> None:
    durable("approval").step("prepare", lambda ctx: "prepared").wait_for_signal(
        "gate", "manager-approval"
    ).step("finish", lambda ctx: {"approved": ctx.results["gate"], "via": ctx.signal("gate")})
    run_id = engine.start("approval").run_id
    drain(engine)

    run = get_run(engine, run_id)
    assert run.status == "suspended"
    assert run.awaiting_signal == "manager-approval"
    assert run.current_step == 1
    assert pending_jobs(engine) == 0

    wrong = engine.resume(run_id, "some-other-signal", {})
    assert wrong.accepted is False
    assert wrong.status == "suspended"
    assert get_run(engine, run_id).status == "suspended"

    ok = engine.resume(run_id, "manager-approval", {"ok": True})
    assert ok.accepted is True
    assert ok.status == "running"
    drain(engine)
    run = get_run(engine, run_id)
    assert run.status == "completed"
    assert run.result is not None
    assert run.result["finish"] == {"approved": {"ok": True}, "via": {"ok": True}}


def test_duplicate_resume_is_a_no_op(engine: Durable) -> None:
    durable("approval-dup").wait_for_signal("gate", "go").step("done", lambda ctx: 1)
    run_id = engine.start("approval-dup").run_id
    drain(engine)
    assert engine.resume(run_id, "go", {"n": 1}).accepted is True
    assert engine.resume(run_id, "go", {"n": 2}).accepted is False  # before the drain
    drain(engine)
    assert get_run(engine, run_id).status == "completed"
    dup = engine.resume(run_id, "go", {})
    assert dup.accepted is False
    assert dup.status == "completed"
    assert get_run(engine, run_id).result == {"gate": {"n": 1}, "done": 1}


def test_signal_timeout_fails_the_step_and_compensates(engine: Durable) -> None:
    undone: list[str] = []
    durable("approval-timeout").step(
        "book", lambda ctx: "booked", compensate=lambda ctx: undone.append("book")
    ).wait_for_signal("gate", "approve", timeout=timedelta(days=2)).step("after", lambda ctx: 1)
    run_id = engine.start("approval-timeout").run_id
    drain(engine)
    run = get_run(engine, run_id)
    assert run.status == "suspended"
    assert run.wake_at is not None
    assert pending_jobs(engine) == 1  # the timer

    drain(engine, now=datetime.now(UTC) + timedelta(days=1))
    assert get_run(engine, run_id).status == "suspended"

    drain(engine, now=datetime.now(UTC) + timedelta(days=2, minutes=1))
    run = get_run(engine, run_id)
    assert run.status == "failed"
    assert run.error is not None
    assert "timed out" in run.error
    assert "approve" in run.error
    assert undone == ["book"]
    gate = next(row for row in get_journal(engine, run_id) if row.step_id == "gate")
    assert gate.status == "failed"
    assert engine.resume(run_id, "approve", {}).accepted is False
    assert pending_jobs(engine) == 0


def test_signal_before_timeout_drops_the_timer(engine: Durable) -> None:
    durable("approval-in-time").wait_for_signal("gate", "approve", timeout=60).step(
        "after", lambda ctx: ctx.results["gate"]
    )
    run_id = engine.start("approval-in-time").run_id
    drain(engine)
    assert pending_jobs(engine) == 1
    assert engine.resume(run_id, "approve", "yes").accepted
    assert pending_jobs(engine) == 1  # the continuation only; the timer is gone
    drain(engine, now=far_future())
    run = get_run(engine, run_id)
    assert run.status == "completed"
    assert run.result == {"gate": "yes", "after": "yes"}


def test_sleep_stops_a_drain_and_resumes_when_due(engine: Durable) -> None:
    durable("sleeper").step("before", lambda ctx: "b").sleep("nap", 60).step(
        "after", lambda ctx: "a"
    )
    run_id = engine.start("sleeper").run_id
    drain(engine)
    run = get_run(engine, run_id)
    assert run.status == "running"
    assert run.current_step == 2
    assert run.wake_at is not None
    assert run.wake_at > datetime.now(UTC)
    assert pending_jobs(engine) == 1
    assert "nap" in step_ids(engine, run_id)

    drain(engine, now=datetime.now(UTC) + timedelta(seconds=61))
    run = get_run(engine, run_id)
    assert run.status == "completed"
    assert run.result == {"before": "b", "after": "a"}
    assert run.wake_at is None


def test_sleep_until_an_absolute_time(engine: Durable) -> None:
    wake = datetime.now(UTC) + timedelta(hours=3)
    durable("sleep-until").sleep("nap", wake)
    run_id = engine.start("sleep-until").run_id
    drain(engine, now=wake - timedelta(seconds=1))
    run = get_run(engine, run_id)
    assert run.status == "running"
    assert run.wake_at == wake
    drain(engine, now=wake)
    assert get_run(engine, run_id).status == "completed"


def test_sleep_as_timedelta_and_past_datetime(engine: Durable) -> None:
    durable("sleep-kinds").sleep("a", timedelta(0)).sleep(
        "b", datetime.now(UTC) - timedelta(hours=1)
    )
    run_id = engine.start("sleep-kinds").run_id
    drain(engine)
    assert get_run(engine, run_id).status == "completed"


def test_agent_suspension_and_resume_reenters_the_step(engine: Durable) -> None:
    passes: list[object] = []

    def think(ctx: DurableContext) -> dict[str, object]:
        prior = ctx.signal("think")
        passes.append(prior)
        if not prior:
            return {"status": "suspended", "pending_tool_calls": [{"id": "t1"}], "state": {"r": 1}}
        return {"answer": "done", "resumeWas": ctx.resume_data(), "snapshot": prior["state"]}

    durable("agent").step("think", think).step("after", lambda ctx: ctx.resume_data())
    run_id = engine.start("agent").run_id
    drain(engine)
    run = get_run(engine, run_id)
    assert run.status == "suspended"
    assert (run.wait_kind, run.wait_step, run.awaiting_signal) == ("agent", "think", None)
    assert engine.status(run_id).awaiting_signal == "think"  # what resume() accepts
    assert pending_jobs(engine) == 0
    assert count(engine, JournalEntry) == 0

    assert engine.resume(run_id, "wrong", {}).accepted is False
    assert engine.resume(run_id, "think", {"toolResult": 42}).accepted is True
    drain(engine)
    run = get_run(engine, run_id)
    assert run.status == "completed"
    assert run.result == {
        "think": {"answer": "done", "resumeWas": {"toolResult": 42}, "snapshot": {"r": 1}},
        "after": None,  # the resume payload is consumed by the step it resumed
    }
    assert len(passes) == 2


def test_agent_snapshot_as_an_object(engine: Durable) -> None:
    class Suspended:
        def __init__(self) -> None:
            self.status = "suspended"
            self.state = {"round": 2}
            self.pending_tool_calls = ["call"]

    def think(ctx: DurableContext) -> object:
        return ctx.resume_data() or Suspended()

    durable("agent-obj").step("think", think)
    run_id = engine.start("agent-obj").run_id
    drain(engine)
    assert get_run(engine, run_id).status == "suspended"
    assert engine.resume(run_id, "think", "go").accepted
    drain(engine)
    assert get_run(engine, run_id).result == {"think": "go"}


def test_step_after_a_signal_sees_the_payload_as_resume_data(engine: Durable) -> None:
    seen: list[object] = []

    def after(ctx: DurableContext) -> None:
        seen.append(ctx.resume_data())

    durable("resume-data").wait_for_signal("gate", "go").step("after", after).step("later", after)
    run_id = engine.start("resume-data").run_id
    drain(engine)
    engine.resume(run_id, "go", {"ok": 1})
    drain(engine)
    assert seen == [{"ok": 1}, None]
    assert get_run(engine, run_id).result == {"gate": {"ok": 1}, "after": None, "later": None}
