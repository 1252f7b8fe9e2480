"""Sequential chaining, crash/resume between steps, and stale or duplicate deliveries."""

from __future__ import annotations

import threading

from durable_sa import Durable, DurableContext, RunStatus, durable
from durable_sa.results import JobOutcome
from durable_sa.testing import clear_jobs, drain, pending_jobs
from tests.integration.helpers import get_journal, get_run


def test_steps_run_in_order_chaining_results(engine: Durable) -> None:
    calls: list[str] = []

    def one(ctx: DurableContext) -> int:
        calls.append("one")
        return 1

    def two(ctx: DurableContext) -> int:
        calls.append("two")
        return ctx.results["one"] + 1

    async def three(ctx: DurableContext) -> int:
        calls.append("three")
        return ctx.results["two"] + 1

    durable("seq").step("one", one).step("two", two).step("three", three)
    started = engine.start("seq", {"x": 10})
    assert started.status == "running"
    assert pending_jobs(engine) == 1

    assert drain(engine) == 3
    run = get_run(engine, started.run_id)
    assert run.status == "completed"
    assert run.status is RunStatus.COMPLETED
    assert calls == ["one", "two", "three"]
    assert run.result == {"one": 1, "two": 2, "three": 3}
    assert run.input == {"x": 10}
    assert pending_jobs(engine) == 0


def test_context_carries_run_position(engine: Durable) -> None:
    seen: list[tuple[int, str, int, dict[str, object]]] = []

    def record(ctx: DurableContext) -> str:
        seen.append((ctx.run_id, ctx.step_name, ctx.attempt, dict(ctx.input)))
        return ctx.step_name

    durable("ctx").step("a", record).step("b", record)
    run_id = engine.start("ctx", {"k": "v"}).run_id
    drain(engine)
    assert seen == [(run_id, "a", 1, {"k": "v"}), (run_id, "b", 1, {"k": "v"})]


def test_crash_after_three_of_six_steps_resumes_without_rerunning(engine: Durable) -> None:
    calls: dict[str, int] = {}
    wf = durable("crash")
    for i in range(6):
        name = f"s{i}"

        def handler(ctx: DurableContext, name: str = name, i: int = i) -> int:
            calls[name] = calls.get(name, 0) + 1
            return i

        wf.step(name, handler)

    run_id = engine.start("crash").run_id
    assert drain(engine, max=3) == 3
    run = get_run(engine, run_id)
    assert run.status == "running"
    assert run.current_step == 3
    assert len(get_journal(engine, run_id)) == 3

    drain(engine)
    assert get_run(engine, run_id).status == "completed"
    assert calls == {f"s{i}": 1 for i in range(6)}


def test_stale_redelivered_advance_is_a_no_op(engine: Durable) -> None:
    calls = {"a": 0}

    def a(ctx: DurableContext) -> int:
        calls["a"] += 1
        return 1

    durable("idem-seq").step("a", a).step("b", lambda ctx: 2)
    run_id = engine.start("idem-seq").run_id
    clear_jobs(engine)

    assert engine.admin.advance(run_id, 0, 1) == JobOutcome.APPLIED
    assert engine.admin.advance(run_id, 0, 1) == JobOutcome.STALE
    assert calls["a"] == 1
    assert [row.step_id for row in get_journal(engine, run_id)] == ["a"]
    assert get_run(engine, run_id).current_step == 1
    assert pending_jobs(engine) == 1


def test_concurrent_duplicate_advances_journal_once(engine: Durable) -> None:
    gate = threading.Barrier(2)
    calls: list[int] = []

    def a(ctx: DurableContext) -> int:
        calls.append(1)
        gate.wait(timeout=10)  # both deliveries are inside phase A together
        return 1

    durable("idem-conc").step("a", a).step("b", lambda ctx: 2)
    run_id = engine.start("idem-conc").run_id
    clear_jobs(engine)

    errors: list[BaseException] = []
    outcomes: list[JobOutcome] = []

    def deliver() -> None:
        try:
            outcomes.append(engine.admin.advance(run_id, 0, 1))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sorted(outcomes) == sorted([JobOutcome.APPLIED, JobOutcome.STALE])
    assert len(calls) == 2  # at-least-once: both ran the handler...
    assert [row.step_id for row in get_journal(engine, run_id)] == ["a"]  # ...once journaled
    assert get_run(engine, run_id).current_step == 1
    assert pending_jobs(engine) == 1  # exactly one continuation


def test_empty_workflow_completes(engine: Durable) -> None:
    durable("empty")
    run_id = engine.start("empty").run_id
    assert drain(engine) == 1
    run = get_run(engine, run_id)
    assert run.status == "completed"
    assert run.result == {}


def test_handler_reads_results_but_cannot_change_them(engine: Durable) -> None:
    def meddle(ctx: DurableContext) -> str:
        ctx.results["a"] = "tampered"
        return "ok"

    durable("ro").step("a", lambda ctx: "orig").step("b", meddle).step(
        "c", lambda ctx: ctx.results["a"]
    )
    run_id = engine.start("ro").run_id
    drain(engine)
    assert get_run(engine, run_id).result == {"a": "orig", "b": "ok", "c": "orig"}
