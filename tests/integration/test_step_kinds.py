"""Parallel, route and loop steps, and engine-level retries."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from durable_sa import Durable, DurableContext, ParallelEntry, durable
from durable_sa.testing import drain
from tests.integration.helpers import far_future, get_journal, get_run, step_ids


def test_parallel_stores_each_result_under_its_entry_name(engine: Durable) -> None:
    durable("par").parallel(
        "p",
        [
            ParallelEntry("x", lambda ctx: "X"),
            ("y", lambda ctx: "Y"),
            ("z", lambda ctx: "Z"),
        ],
    ).step("after", lambda ctx: [ctx.results["x"], ctx.results["y"], ctx.results["z"]])
    run_id = engine.start("par").run_id
    drain(engine)
    run = get_run(engine, run_id)
    assert run.status == "completed"
    assert run.result == {"x": "X", "y": "Y", "z": "Z", "after": ["X", "Y", "Z"]}
    assert step_ids(engine, run_id) == ["after", "p", "p#x", "p#y", "p#z"]
    parallel_row = next(row for row in get_journal(engine, run_id) if row.step_id == "p")
    assert parallel_row.result == {"x": "X", "y": "Y", "z": "Z"}


def test_failed_entry_retries_only_unjournaled_entries(engine: Durable) -> None:
    calls = {"x": 0, "y": 0}

    def x(ctx: DurableContext) -> str:
        calls["x"] += 1
        return "X"

    def y(ctx: DurableContext) -> str:
        calls["y"] += 1
        if calls["y"] == 1:
            msg = "y failed once"
            raise RuntimeError(msg)
        return "Y"

    durable("par-crash").parallel("p", [("x", x), ("y", y)])
    run_id = engine.start("par-crash").run_id
    drain(engine, now=far_future())
    run = get_run(engine, run_id)
    assert run.status == "completed"
    assert calls == {"x": 1, "y": 2}
    assert run.result == {"x": "X", "y": "Y"}


def test_sync_parallel_entries_really_overlap(engine: Durable) -> None:
    barrier = threading.Barrier(3)

    def entry(ctx: DurableContext) -> str:
        barrier.wait(timeout=10)  # fails unless all three run at the same time
        return ctx.step_name

    durable("par-sync").parallel("p", [("a", entry), ("b", entry), ("c", entry)])
    run_id = engine.start("par-sync").run_id
    drain(engine)
    assert get_run(engine, run_id).status == "completed"


def test_async_parallel_entries_really_overlap(engine: Durable) -> None:
    async def entry(ctx: DurableContext) -> float:
        await asyncio.sleep(0.3)
        return 1.0

    durable("par-async").parallel("p", [(f"e{i}", entry) for i in range(8)])
    run_id = engine.start("par-async").run_id
    started = time.perf_counter()
    drain(engine)
    elapsed = time.perf_counter() - started
    assert get_run(engine, run_id).status == "completed"
    assert elapsed < 8 * 0.3  # far less than running them one after another


def test_route_dispatches_to_the_resolved_branch(engine: Durable) -> None:
    durable("rt").route(
        "r",
        lambda ctx: ctx.input["go"],
        {"left": lambda ctx: "went-left", "right": lambda ctx: "went-right"},
    )
    run_id = engine.start("rt", {"go": "right"}).run_id
    drain(engine)
    assert get_run(engine, run_id).result == {"r": "went-right"}
    assert step_ids(engine, run_id) == ["r", "r#route"]


def test_route_without_a_matching_branch_adds_no_result(engine: Durable) -> None:
    durable("rt-miss").route("r", lambda ctx: "nowhere", {"left": lambda ctx: 1}).step(
        "after", lambda ctx: sorted(ctx.results)
    )
    run_id = engine.start("rt-miss").run_id
    drain(engine)
    run = get_run(engine, run_id)
    assert run.status == "completed"
    assert run.result == {"after": []}


def test_route_retry_keeps_the_journaled_decision(engine: Durable) -> None:
    decisions: list[str] = []
    branch_calls = {"n": 0}

    def resolver(ctx: DurableContext) -> str:
        key = "a" if not decisions else "b"
        decisions.append(key)
        return key

    def branch_a(ctx: DurableContext) -> str:
        branch_calls["n"] += 1
        if branch_calls["n"] == 1:
            msg = "branch a flaked"
            raise RuntimeError(msg)
        return "A"

    durable("rt-retry").route("r", resolver, {"a": branch_a, "b": lambda ctx: "B"})
    run_id = engine.start("rt-retry").run_id
    drain(engine, now=far_future())
    assert decisions == ["a"]
    assert get_run(engine, run_id).result == {"r": "A"}


def test_loop_iterates_until_the_condition_holds(engine: Durable) -> None:
    durable("lp").loop(
        "count",
        lambda value, ctx: value + 1,
        max_iterations=20,
        map_input=lambda ctx: 0,
        until=lambda result, done: result >= 5,
        feedback=lambda result: result,
    )
    run_id = engine.start("lp").run_id
    drain(engine)
    run = get_run(engine, run_id)
    assert run.status == "completed"
    assert run.result == {"count": 5}
    iterations = [r for r in step_ids(engine, run_id) if r.startswith("count#iter")]
    assert sorted(iterations) == sorted(f"count#iter{i}" for i in range(5))


def test_loop_stops_at_max_iterations_and_gets_iteration_count(engine: Durable) -> None:
    seen: list[int] = []

    def until(result: object, done: int) -> bool:
        seen.append(done)
        return False

    durable("lp-max").loop("l", lambda value, ctx: "x", max_iterations=3, until=until)
    run_id = engine.start("lp-max").run_id
    drain(engine)
    assert seen == [1, 2, 3]
    assert get_run(engine, run_id).result == {"l": "x"}


def test_loop_retry_resumes_from_the_failed_iteration(engine: Durable) -> None:
    calls: list[int] = []

    def body(value: int, ctx: DurableContext) -> int:
        calls.append(value)
        if value == 2 and ctx.attempt == 1:
            msg = "iteration 2 failed"
            raise RuntimeError(msg)
        return value + 1

    durable("lp-retry").loop(
        "l",
        body,
        max_iterations=4,
        map_input=lambda ctx: 0,
        feedback=lambda result: result,
        max_retries=2,
    )
    run_id = engine.start("lp-retry").run_id
    drain(engine, now=far_future())
    assert get_run(engine, run_id).result == {"l": 4}
    assert calls == [0, 1, 2, 2, 3]  # iterations 0 and 1 were journaled, not re-run


def test_flaky_step_is_retried_then_succeeds(engine: Durable) -> None:
    attempts: list[int] = []

    def flaky(ctx: DurableContext) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            msg = "boom"
            raise RuntimeError(msg)
        return "ok"

    durable("retry").step("flaky", flaky, max_retries=3, retry_backoff="linear")
    run_id = engine.start("retry").run_id
    drain(engine)  # the first retry is 5 s away: a plain drain stops there
    run = get_run(engine, run_id)
    assert run.status == "running"
    assert run.attempt == 2
    assert run.error is not None
    assert "boom" in run.error
    drain(engine, now=far_future())
    run = get_run(engine, run_id)
    assert run.status == "completed"
    assert attempts == [1, 2, 3]
    assert run.result == {"flaky": "ok"}
    assert run.error is None


def test_retries_exhausted_fails_the_run(engine: Durable) -> None:
    attempts: list[int] = []

    def always(ctx: DurableContext) -> None:
        attempts.append(ctx.attempt)
        msg = f"fail {ctx.attempt}"
        raise ValueError(msg)

    durable("retry-out").step("s", always, max_retries=2)
    run_id = engine.start("retry-out").run_id
    drain(engine, now=far_future())
    run = get_run(engine, run_id)
    assert run.status == "failed"
    assert attempts == [1, 2]
    assert run.error == "ValueError: fail 2"
    first, row = get_journal(engine, run_id)  # every failed attempt has its row
    assert (first.step_id, first.status, first.attempt) == ("s#attempt1", "failed", 1)
    assert (first.error, first.error_type) == ("ValueError: fail 1", "ValueError")
    assert (row.step_id, row.status, row.attempt) == ("s", "failed", 2)
    assert (row.error, row.error_type) == ("ValueError: fail 2", "ValueError")
    assert row.traceback is not None
    assert "raise ValueError(msg)" in row.traceback  # the handler's own line
    assert row.traceback.rstrip().endswith("ValueError: fail 2")


@pytest.mark.parametrize("max_retries", [1, 4])
def test_max_retries_counts_total_attempts(engine: Durable, max_retries: int) -> None:
    attempts: list[int] = []

    def always(ctx: DurableContext) -> None:
        attempts.append(ctx.attempt)
        raise RuntimeError

    durable("retry-count").step("s", always, max_retries=max_retries)
    engine.start("retry-count")
    drain(engine, now=far_future())
    assert attempts == list(range(1, max_retries + 1))


def test_every_failed_attempt_is_a_warning_with_its_traceback(
    engine: Durable, caplog: pytest.LogCaptureFixture
) -> None:
    def flaky(ctx: DurableContext) -> None:
        msg = f"gateway timeout {ctx.attempt}"
        raise ConnectionError(msg)

    durable("logged-failures").step("call", flaky, max_retries=2)
    run_id = engine.start("logged-failures").run_id
    with caplog.at_level(logging.WARNING, logger="durable_sa"):
        drain(engine, now=far_future())
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.run_id == run_id]
    assert [r.attempt for r in warnings] == [1, 2]
    first, last = (r.getMessage() for r in warnings)
    assert "attempt 1 of 2 failed" in first
    assert "will retry: ConnectionError: gateway timeout 1" in first
    assert "rolling back: ConnectionError: gateway timeout 2" in last
    assert "Traceback (most recent call last)" in last
    assert "raise ConnectionError(msg)" in last
    assert [r.error_type for r in warnings] == ["ConnectionError", "ConnectionError"]
