"""Buffered signals (``send``), resume reasons, timeouts with a default, durations per run.

Every test runs on SQLite and PostgreSQL (the ``engine`` fixture); the races between a
``send`` and a worker reaching the wait are played deterministically, with the worker's
transaction held open at its commit while the ``send`` runs in another thread.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from durable_sa import Durable, DurableContext, RunNotFoundError, durable
from durable_sa.engine.decision import commit_alone
from durable_sa.engine.runner import prepare
from durable_sa.errors import DefinitionError, PayloadError, RunTerminalError
from durable_sa.models import PendingSignal
from durable_sa.results import SendResult
from durable_sa.testing import SimulatedCrash, drain, pending_jobs
from tests.integration.helpers import count, far_future, get_journal, get_run

# ── send ────────────────────────────────────────────────────────────────────────


def _gated(name: str) -> None:
    durable(name).step("prepare", lambda ctx: "ready").wait_for_signal("gate", "go").step(
        "finish", lambda ctx: {"gate": ctx.results["gate"], "seen": ctx.resume_data()}
    )


def test_send_before_the_wait_is_taken_by_it_without_suspending(engine: Durable) -> None:
    _gated("send-early")
    run_id = engine.start("send-early").run_id

    sent = engine.send(run_id, "go", {"n": 1})  # the run has not reached its wait yet
    assert sent == SendResult(run_id=run_id, signal="go", delivered=False, status="running")
    assert count(engine, PendingSignal) == 1

    drain(engine)
    run = get_run(engine, run_id)
    assert run.status == "completed"
    assert run.result == {
        "prepare": "ready",
        "gate": {"n": 1},
        "finish": {"gate": {"n": 1}, "seen": {"n": 1}},
    }
    assert count(engine, PendingSignal) == 0  # taken, exactly once


def test_send_while_waiting_is_delivered_like_resume(engine: Durable) -> None:
    _gated("send-waiting")
    run_id = engine.start("send-waiting").run_id
    drain(engine)
    assert get_run(engine, run_id).status == "suspended"

    sent = engine.send(run_id, "go", "yes")
    assert sent.delivered is True
    assert sent.status == "running"
    assert count(engine, PendingSignal) == 0
    drain(engine)
    assert get_run(engine, run_id).result == {
        "prepare": "ready",
        "gate": "yes",
        "finish": {"gate": "yes", "seen": "yes"},
    }


def test_sends_are_taken_first_in_first_out_one_per_wait(engine: Durable) -> None:
    durable("send-fifo").wait_for_signal("one", "item").wait_for_signal("two", "item").step(
        "three", lambda ctx: "done"
    )
    run_id = engine.start("send-fifo").run_id
    other = engine.start("send-fifo").run_id
    for n in (1, 2, 3):
        assert engine.send(run_id, "item", n).delivered is False
    engine.send(other, "item", "not for the first run")
    engine.send(run_id, "unrelated", "kept, never taken")

    drain(engine)
    run = get_run(engine, run_id)
    assert run.status == "completed"
    assert run.result == {"one": 1, "two": 2, "three": "done"}
    with Session(engine.sa_engine) as session:
        left = session.execute(
            sa.select(PendingSignal.run_id, PendingSignal.signal, PendingSignal.data).order_by(
                PendingSignal.id
            )
        ).all()
    assert [tuple(row) for row in left] == [
        (run_id, "item", 3),
        (run_id, "unrelated", "kept, never taken"),
    ]
    assert get_run(engine, other).status == "suspended"  # its own signal went to "one" only
    assert get_run(engine, other).state == {"one": "not for the first run"}


def test_a_run_suspended_on_another_signal_keeps_the_send_for_later(engine: Durable) -> None:
    durable("send-other").wait_for_signal("first", "a").wait_for_signal("second", "b")
    run_id = engine.start("send-other").run_id
    drain(engine)
    assert engine.send(run_id, "b", "early b").delivered is False
    assert engine.send(run_id, "a", "a").delivered is True
    drain(engine)
    run = get_run(engine, run_id)
    assert run.status == "completed"
    assert run.result == {"first": "a", "second": "early b"}


def test_send_to_an_unknown_or_ended_run_is_an_error(engine: Durable) -> None:
    durable("send-ended").step("only", lambda ctx: 1)
    run_id = engine.start("send-ended").run_id
    drain(engine)
    with pytest.raises(RunTerminalError, match=rf"run {run_id} is completed"):
        engine.send(run_id, "go")
    with pytest.raises(RunNotFoundError):
        engine.send(run_id + 1000, "go")
    with pytest.raises(PayloadError):
        engine.send(run_id, "go", object())
    with pytest.raises(DefinitionError):
        engine.send(run_id, "")
    assert count(engine, PendingSignal) == 0


def test_send_in_a_session_commits_or_rolls_back_with_it(engine: Durable) -> None:
    _gated("send-session")
    run_id = engine.start("send-session").run_id
    with Session(engine.sa_engine) as session:
        engine.send(run_id, "go", "lost", session=session)
        session.rollback()
    assert count(engine, PendingSignal) == 0
    with Session(engine.sa_engine) as session, session.begin():
        engine.send(run_id, "go", "kept", session=session)
    drain(engine)
    assert get_run(engine, run_id).state["gate"] == "kept"


def test_canceled_run_refuses_sends_and_prune_removes_its_buffered_signals(
    engine: Durable,
) -> None:
    durable("send-prune").step("wait", lambda ctx: 1).wait_for_signal("gate", "go")
    run_id = engine.start("send-prune").run_id
    engine.send(run_id, "never", "x")
    engine.cancel(run_id)
    with pytest.raises(RunTerminalError, match="canceled"):
        engine.send(run_id, "go")
    assert count(engine, PendingSignal) == 1
    dry = engine.admin.prune(older_than=timedelta(0), dry_run=True)
    assert dry.signals == 1
    pruned = engine.admin.prune(older_than=timedelta(0))
    assert (pruned.runs, pruned.signals) == (1, 1)
    assert count(engine, PendingSignal) == 0


# ── the races: a send while a worker reaches the wait ──────────────────────────


def test_a_send_committed_after_the_worker_read_the_run_is_taken_by_its_wait(
    engine: Durable,
) -> None:
    durable("race-before").wait_for_signal("gate", "go").step("after", lambda ctx: 1)
    run_id = engine.start("race-before").run_id
    job = engine.admin.claim()
    assert job is not None
    prepared = prepare(engine.shell, job)  # phase A: the run read as running, at the wait
    assert engine.send(run_id, "go", "raced").delivered is False  # committed meanwhile
    commit_alone(engine.shell, prepared)  # the suspension finds it
    run = get_run(engine, run_id)
    assert run.status == "running"
    assert run.state == {"gate": "raced"}
    assert count(engine, PendingSignal) == 0
    drain(engine)
    assert get_run(engine, run_id).status == "completed"


def test_a_send_waiting_on_the_worker_commit_is_delivered_after_it(engine: Durable) -> None:
    durable("race-during").wait_for_signal("gate", "go").step("after", lambda ctx: 1)
    run_id = engine.start("race-during").run_id
    results: list[SendResult] = []
    errors: list[BaseException] = []

    def send() -> None:
        try:
            results.append(engine.send(run_id, "go", "during"))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)

    sender = threading.Thread(target=send)

    def hold_commit_open() -> None:
        # The worker has written the suspension (its row is held) and read the buffer:
        # the send must wait for this commit, then find the run waiting for it.
        engine.shell.crash_before_commit = None
        sender.start()
        sender.join(timeout=1.0)
        assert sender.is_alive(), "send did not wait for the worker's transaction"

    engine.shell.crash_before_commit = hold_commit_open
    drain(engine, max=1)
    sender.join(timeout=30)
    assert not errors, errors
    assert results == [SendResult(run_id=run_id, signal="go", delivered=True, status="running")]
    assert count(engine, PendingSignal) == 0
    drain(engine)
    assert get_run(engine, run_id).result == {"gate": "during", "after": 1}


def test_many_sends_racing_many_waits_are_each_taken_once_in_order(engine: Durable) -> None:
    waits = 12
    flow = durable("race-many")
    for i in range(waits):
        flow.wait_for_signal(f"w{i}", "tick")
    run_id = engine.start("race-many").run_id

    def sender() -> None:
        for i in range(waits):
            engine.send(run_id, "tick", i)

    thread = threading.Thread(target=sender)
    thread.start()
    deadline = datetime.now(UTC) + timedelta(seconds=60)
    while thread.is_alive() or get_run(engine, run_id).status != "completed":
        drain(engine)
        assert datetime.now(UTC) < deadline, get_run(engine, run_id).state
        thread.join(timeout=0.01)
    assert get_run(engine, run_id).result == {f"w{i}": i for i in range(waits)}
    assert count(engine, PendingSignal) == 0


# ── resume keeps its semantics, and says why ──────────────────────────────────


def test_resume_says_why_it_was_not_accepted(engine: Durable) -> None:
    durable("resume-reasons").step("first", lambda ctx: 1).wait_for_signal("gate", "go")
    run_id = engine.start("resume-reasons").run_id

    running = engine.resume(run_id, "go", 1)
    assert (running.accepted, running.reason) == (False, "not_waiting")
    drain(engine)
    other = engine.resume(run_id, "other", 1)
    assert (other.accepted, other.reason) == (False, "not_waiting")
    assert count(engine, PendingSignal) == 0  # resume keeps nothing for later
    ok = engine.resume(run_id, "go", 1)
    assert (ok.accepted, ok.reason) == (True, "accepted")
    drain(engine)
    ended = engine.resume(run_id, "go", 1)
    assert (ended.accepted, ended.reason, ended.status) == (False, "terminal", "completed")


# ── timeouts with a default ─────────────────────────────────────────────────────


def test_a_timeout_with_a_default_completes_the_step_and_a_route_branches_on_it(
    engine: Durable,
) -> None:
    durable("timeout-default").wait_for_signal(
        "approval", "approve", timeout=timedelta(hours=1), default={"approved": False}
    ).route(
        "decide",
        lambda ctx: "yes" if ctx.results["approval"]["approved"] else "no",
        {"yes": lambda ctx: "shipped", "no": lambda ctx: "refunded"},
    )
    timed_out = engine.start("timeout-default").run_id
    approved = engine.start("timeout-default").run_id
    drain(engine)
    engine.send(approved, "approve", {"approved": True})
    drain(engine, now=datetime.now(UTC) + timedelta(hours=2))

    run = get_run(engine, timed_out)
    assert run.status == "completed"
    assert run.result == {"approval": {"approved": False}, "decide": "refunded"}
    gate = next(row for row in get_journal(engine, timed_out) if row.step_id == "approval")
    assert (gate.status, gate.result) == ("completed", {"approved": False})
    assert get_run(engine, approved).result == {"approval": {"approved": True}, "decide": "shipped"}
    assert pending_jobs(engine) == 0


def test_a_default_of_none_is_a_default(engine: Durable) -> None:
    durable("timeout-none").wait_for_signal("gate", "go", timeout=60, default=None).step(
        "after", lambda ctx: ctx.results["gate"] is None
    )
    run_id = engine.start("timeout-none").run_id
    drain(engine, now=far_future())
    assert get_run(engine, run_id).result == {"gate": None, "after": True}


def test_a_timeout_without_a_default_still_fails_the_step(engine: Durable) -> None:
    durable("timeout-fails").wait_for_signal("gate", "go", timeout=60).step("after", lambda c: 1)
    run_id = engine.start("timeout-fails").run_id
    drain(engine, now=far_future())
    run = get_run(engine, run_id)
    assert run.status == "failed"
    assert run.error is not None
    assert "timed out" in run.error


def test_a_default_must_be_json_when_the_workflow_is_defined() -> None:
    with pytest.raises(DefinitionError, match="default"):
        durable("bad-default").wait_for_signal("gate", "go", timeout=60, default=object())
    with pytest.raises(DefinitionError, match="give a timeout too"):
        durable("no-timeout").wait_for_signal("gate", "go", default={"a": 1})


# ── durations decided per run ───────────────────────────────────────────────────


def test_a_callable_sleep_is_decided_once_and_journaled(engine: Durable) -> None:
    calls: list[int] = []

    def how_long(ctx: DurableContext) -> timedelta:
        calls.append(ctx.attempt)
        return timedelta(minutes=ctx.input["minutes"] + len(calls))  # changes per call

    durable("sleep-per-run").sleep("nap", how_long).step("after", lambda ctx: "woke")
    run_id = engine.start("sleep-per-run", {"minutes": 10}).run_id
    before = engine.now
    drain(engine)
    nap = next(row for row in get_journal(engine, run_id) if row.step_id == "nap")
    wake_at = datetime.fromisoformat(nap.result["wake_at"])
    assert timedelta(minutes=11) <= wake_at - before < timedelta(minutes=12)
    run = get_run(engine, run_id)
    assert run.status == "running"

    # the next step's job is lost and recovered, then it crashes before its commit:
    # the wake time stays what the one call decided
    with engine.sa_engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM durable_jobs"))
    assert engine.recover() == 1
    assert drain(engine, now=wake_at - timedelta(seconds=1)) == 0  # recovered: due at wake_at
    engine.shell.crash_before_commit = _crash
    try:
        assert drain(engine, now=wake_at + timedelta(seconds=1), max=1) == 1
    finally:
        engine.shell.crash_before_commit = None
    drain(engine, now=far_future())
    assert get_run(engine, run_id).status == "completed"
    nap = next(row for row in get_journal(engine, run_id) if row.step_id == "nap")
    assert nap.result == {"wake_at": wake_at.isoformat()}
    assert calls == [1]


def _crash() -> None:
    raise SimulatedCrash


async def _async_deadline(ctx: DurableContext) -> datetime:
    return datetime.fromisoformat(ctx.input["deadline"])


def test_a_callable_timeout_sets_the_deadline_once_and_recover_keeps_it(
    engine: Durable,
) -> None:
    deadline = datetime.now(UTC) + timedelta(hours=3)
    durable("timeout-per-run").wait_for_signal(
        "gate", "go", timeout=_async_deadline, default="late"
    )
    run_id = engine.start("timeout-per-run", {"deadline": deadline.isoformat()}).run_id
    drain(engine)
    run = get_run(engine, run_id)
    assert run.status == "suspended"
    assert run.wake_at == deadline

    with engine.sa_engine.begin() as conn:  # the timer is lost (say, dead-lettered)
        conn.execute(sa.text("DELETE FROM durable_jobs"))
    assert engine.recover() == 1
    drain(engine, now=deadline - timedelta(minutes=1))
    assert get_run(engine, run_id).status == "suspended"
    drain(engine, now=deadline + timedelta(minutes=1))
    assert get_run(engine, run_id).result == {"gate": "late"}


def test_a_callable_timeout_in_seconds_counts_from_when_the_step_is_reached(
    engine: Durable,
) -> None:
    durable("timeout-seconds").wait_for_signal("gate", "go", timeout=lambda ctx: 90.0)
    run_id = engine.start("timeout-seconds").run_id
    before = engine.now
    drain(engine)
    wake_at = get_run(engine, run_id).wake_at
    assert wake_at is not None
    assert timedelta(seconds=90) <= wake_at - before < timedelta(seconds=100)


def test_a_duration_callable_that_fails_or_answers_badly_fails_the_step(engine: Durable) -> None:
    def broken(ctx: DurableContext) -> timedelta:
        msg = "no config"
        raise RuntimeError(msg)

    durable("sleep-broken").sleep("nap", broken)
    durable("sleep-naive").sleep("nap", lambda ctx: datetime(2030, 1, 1))  # noqa: DTZ001
    durable("timeout-negative").wait_for_signal("gate", "go", timeout=lambda ctx: -5)
    durable("timeout-text").wait_for_signal("gate", "go", timeout=lambda ctx: "soon")
    ids = {
        name: engine.start(name).run_id
        for name in ("sleep-broken", "sleep-naive", "timeout-negative", "timeout-text")
    }
    drain(engine, now=far_future())
    errors = {name: get_run(engine, run_id) for name, run_id in ids.items()}
    assert {name: run.status for name, run in errors.items()} == dict.fromkeys(ids, "failed")
    assert "RuntimeError: no config" in str(errors["sleep-broken"].error)
    assert "naive datetime" in str(errors["sleep-naive"].error)
    assert "must be zero or more" in str(errors["timeout-negative"].error)
    assert "timedelta or a number of seconds" in str(errors["timeout-text"].error)
    attempts = [row.step_id for row in get_journal(engine, ids["sleep-broken"])]
    assert attempts == ["nap#attempt1", "nap#attempt2", "nap"]  # the default retries


def test_a_definition_with_callables_has_a_stable_fingerprint() -> None:
    one = (
        durable("fp-callables-1")
        .sleep("nap", lambda ctx: 1)
        .wait_for_signal("gate", "go", timeout=lambda ctx: 2, default=None)
    )
    two = (
        durable("fp-callables-2")
        .sleep("nap", lambda ctx: 3)
        .wait_for_signal("gate", "go", timeout=lambda ctx: 4, default=None)
    )
    assert one.fingerprint == two.fingerprint
    assert one.version == two.version


def test_a_delivered_signal_drops_its_timer(engine: Durable) -> None:
    durable("timeout-dropped").wait_for_signal("gate", "go", timeout=60, default=1)
    run_id = engine.start("timeout-dropped").run_id
    drain(engine)
    assert pending_jobs(engine) == 1  # the timer
    engine.send(run_id, "go", 2)
    drain(engine, now=far_future())
    assert get_run(engine, run_id).result == {"gate": 2}
    assert pending_jobs(engine) == 0


def test_sends_racing_a_real_worker_are_each_taken_once(engine: Durable) -> None:
    waits = 4
    flow = durable("race-worker").step("start", lambda ctx: "go")
    for i in range(waits):
        flow.wait_for_signal(f"w{i}", "tick")
    with engine.worker(concurrency=2, poll_interval=0.05):
        run_ids = [engine.start("race-worker").run_id for _ in range(6)]

        def sender(run_id: int) -> None:
            for i in range(waits):
                engine.send(run_id, "tick", i)

        threads = [threading.Thread(target=sender, args=(run_id,)) for run_id in run_ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        finals = [engine.wait(run_id, timeout=60) for run_id in run_ids]
    for final in finals:
        assert final.status == "completed"
        assert final.result == {"start": "go", **{f"w{i}": i for i in range(waits)}}
    assert count(engine, PendingSignal) == 0


def test_a_run_whose_steps_are_done_refuses_sends_while_its_hook_is_pending(
    engine: Durable,
) -> None:
    """Its steps are over, only on_finish is left: no wait will ever take a kept signal."""
    durable("hooked").step("a", lambda ctx: 1).on_finish(lambda ctx: None)
    run_id = engine.start("hooked").run_id
    engine.admin.advance(run_id, 0)  # step a, and the end of its steps
    assert get_run(engine, run_id).status == "running"  # the finish job is queued
    with pytest.raises(RunTerminalError, match="completed \\(its on_finish hook pending\\)"):
        engine.send(run_id, "late")
    assert engine.resume(run_id, "late").reason == "terminal"
    drain(engine)
    assert engine.status(run_id).status == "completed"
    assert count(engine, PendingSignal) == 0


def test_a_run_rolling_back_refuses_sends_and_resume_says_terminal(engine: Durable) -> None:
    durable("rolling").step("a", lambda ctx: 1, compensate=lambda ctx: None).wait_for_signal(
        "gate", "go"
    )
    run_id = engine.start("rolling").run_id
    drain(engine)
    engine.cancel(run_id, compensate=True)
    assert get_run(engine, run_id).status == "compensating"
    with pytest.raises(RunTerminalError, match="compensating"):
        engine.send(run_id, "go")
    refused = engine.resume(run_id, "go")
    assert (refused.accepted, refused.reason) == (False, "terminal")
    drain(engine)
    assert engine.status(run_id).status == "canceled"
    assert count(engine, PendingSignal) == 0
