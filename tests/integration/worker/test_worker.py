"""The worker in-process: it runs jobs, sleeps until due, stops gracefully, keeps leases."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from durable_sa import (
    DeadLetter,
    Durable,
    DurableContext,
    Job,
    JournalEntry,
    RunNotFoundError,
    WaitTimeoutError,
    durable,
    registry,
)
from durable_sa.testing import pending_jobs
from tests.integration.helpers import count, get_run

FAST = {"heartbeat": timedelta(seconds=0.2), "lease": timedelta(seconds=1)}


def test_worker_runs_workflows_to_the_end(engine: Durable) -> None:
    durable("w-basic").step("a", lambda ctx: 1).parallel(
        "p", [("x", lambda ctx: 2), ("y", lambda ctx: 3)]
    ).step("b", lambda ctx: ctx.results["x"] + ctx.results["y"])
    with engine.worker(concurrency=3, **FAST) as worker:
        run_ids = [engine.start("w-basic").run_id for _ in range(10)]
        finals = [engine.wait(run_id, timeout=30) for run_id in run_ids]
    assert [f.status for f in finals] == ["completed"] * 10
    assert all(f.results == {"a": 1, "x": 2, "y": 3, "b": 5} for f in finals)
    assert worker.stats.applied == 30
    assert worker.stats.errors == 0
    assert pending_jobs(engine) == 0


def test_wait_returns_at_once_for_a_finished_run_and_times_out_otherwise(
    engine: Durable,
) -> None:
    durable("w-gate").wait_for_signal("gate", "go")
    run_id = engine.start("w-gate").run_id
    with engine.worker(**FAST):
        started = time.monotonic()
        with pytest.raises(WaitTimeoutError) as caught:
            engine.wait(run_id, timeout=0.3)
        assert 0.25 < time.monotonic() - started < 5
        assert isinstance(caught.value, TimeoutError)
        engine.cancel(run_id)
        assert engine.wait(run_id, timeout=5).status == "canceled"
    with pytest.raises(RunNotFoundError):
        engine.wait(10_000_000, timeout=1)


def test_wait_async_lets_the_event_loop_run(engine: Durable) -> None:
    durable("w-async").sleep("nap", 0.3).step("done", lambda ctx: "ok")

    async def scenario() -> tuple[str, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        tick = asyncio.create_task(ticker())
        run_id = await asyncio.to_thread(lambda: engine.start("w-async").run_id)
        final = await engine.wait_async(run_id, timeout=20)
        tick.cancel()
        return str(final.status), ticks

    with engine.worker(**FAST):
        status, ticks = asyncio.run(scenario())
    assert status == "completed"
    assert ticks > 5


def test_delayed_jobs_run_when_due_without_busy_polling(engine: Durable) -> None:
    durable("w-sleep").sleep("nap", 1.0).step("after", lambda ctx: "awake")
    with engine.worker(poll_interval=30, **FAST):
        run_id = engine.start("w-sleep").run_id
        started = time.monotonic()
        final = engine.wait(run_id, timeout=20)
        elapsed = time.monotonic() - started
    assert final.status == "completed"
    assert 0.9 < elapsed < 5  # woken for the due time, not the 30 s poll


def test_new_work_wakes_an_idle_worker(engine: Durable) -> None:
    durable("w-wake").step("a", lambda ctx: 1)
    with engine.worker(poll_interval=30, **FAST):
        time.sleep(0.3)  # the worker is idle, waiting
        started = time.monotonic()
        run_id = engine.start("w-wake").run_id  # woken by the commit, not the 30 s poll
        engine.wait(run_id, timeout=20)
        assert time.monotonic() - started < 5


def test_stop_lets_a_running_step_finish_and_commit(engine: Durable) -> None:
    inside = threading.Event()

    def slow(ctx: DurableContext) -> str:
        inside.set()
        time.sleep(1.0)
        return "finished"

    durable("w-graceful").step("slow", slow).step("next", lambda ctx: 1)
    worker = engine.worker(grace_period=timedelta(seconds=10), **FAST).start()
    run_id = engine.start("w-graceful").run_id
    assert inside.wait(10)
    worker.stop()
    assert worker.join(timeout=15)
    run = get_run(engine, run_id)
    assert run.current_step == 1  # the slow step committed...
    assert run.status == "running"  # ...and the next one was not started
    with Session(engine.sa_engine) as session:
        steps = session.scalars(
            sa.select(JournalEntry.step_id).where(JournalEntry.run_id == run_id)
        ).all()
    assert steps == ["slow"]
    assert engine.admin.workers() == []


def test_leases_are_renewed_while_a_long_step_runs(engine: Durable) -> None:
    calls: list[int] = []

    def long(ctx: DurableContext) -> str:
        calls.append(1)
        time.sleep(2.5)  # far longer than the 1 s lease
        return "done"

    durable("w-lease").step("long", long)
    with engine.worker(concurrency=2, **FAST), engine.worker(concurrency=2, **FAST):
        run_id = engine.start("w-lease").run_id
        assert engine.wait(run_id, timeout=30).status == "completed"
    assert calls == [1]  # no other worker took the job over


def test_a_step_past_its_timeout_is_abandoned_and_retried(engine: Durable) -> None:
    calls: list[float] = []

    def hangs_once(ctx: DurableContext) -> str:
        calls.append(time.monotonic())
        if len(calls) == 1:
            time.sleep(4)
        return "done"

    durable("w-timeout").step("s", hangs_once)
    options = {**FAST, "job_timeout": timedelta(seconds=0.5)}
    with engine.worker(concurrency=2, **options) as worker:
        run_id = engine.start("w-timeout").run_id
        assert engine.wait(run_id, timeout=30).status == "completed"
    assert len(calls) == 2
    assert calls[1] - calls[0] < 3.5  # retried before the first attempt returned
    assert worker.stats.abandoned == 1


def test_workers_report_their_presence(engine: Durable) -> None:
    durable("w-presence").step("a", lambda ctx: 1)
    with engine.worker(concurrency=2, name="presence-test", **FAST):
        live = engine.admin.workers()
        assert [w.id for w in live] == ["presence-test"]
        assert live[0].concurrency == 2
        assert live[0].workflows["w-presence"] == registry.get("w-presence").version
    assert engine.admin.workers() == []


def test_a_worker_claims_only_versions_it_defines(engine: Durable) -> None:
    durable("w-version", version="1").step("a", lambda ctx: "v1")
    run_id = engine.start("w-version").run_id
    durable("w-version", version="2").step("a", lambda ctx: "v2")  # a deploy
    with engine.worker(**FAST):
        time.sleep(1.0)
        snapshot = engine.status(run_id)
        assert snapshot.status == "running"
        assert snapshot.current_step == 0  # new code did not run the old run's step
        assert snapshot.waiting_for_version == "1"
        assert count(engine, DeadLetter) == 0
        durable("w-version", version="1").step("a", lambda ctx: "v1")  # an old worker
        engine.admin.workers()  # (the worker reads the registry on every claim)
        final = engine.wait(run_id, timeout=20)
    assert final.results == {"a": "v1"}
    assert final.waiting_for_version is None


def test_dead_letters_can_be_listed_and_requeued(engine: Durable) -> None:
    wf = durable("w-dead").step("a", lambda ctx: 1)
    run_id = engine.start("w-dead").run_id
    with engine.sa_engine.begin() as conn:
        conn.execute(sa.update(Job.__table__).values(payload={"run_id": "oops"}))
    with engine.worker(**FAST):
        deadline = time.monotonic() + 10
        while not engine.admin.dead_letters() and time.monotonic() < deadline:
            time.sleep(0.05)
    letters = engine.admin.dead_letters()
    assert len(letters) == 1
    assert letters[0].run_id == run_id
    assert "malformed" in letters[0].error

    with engine.sa_engine.begin() as conn:  # an operator repairs the payload
        conn.execute(
            sa.update(DeadLetter.__table__).values(payload={"run_id": run_id, "step_index": 0})
        )
    job_id = engine.admin.requeue(letters[0].id)
    assert job_id > 0
    assert engine.admin.dead_letters() == []
    registry.register(wf)
    with engine.worker(**FAST):
        assert engine.wait(run_id, timeout=20).status == "completed"


def test_worker_survives_a_broken_database_connection(engine: Durable) -> None:
    durable("w-flaky-db").step("a", lambda ctx: 1).step("b", lambda ctx: 2)
    with engine.worker(**FAST) as worker:
        engine.sa_engine.dispose()  # every pooled connection is dropped under the worker
        run_id = engine.start("w-flaky-db").run_id
        assert engine.wait(run_id, timeout=20).status == "completed"
    assert worker.stats.dead_lettered == 0


def test_an_abandoned_job_does_not_cost_the_worker_a_slot(engine: Durable) -> None:
    release = threading.Event()
    calls: list[int] = []

    def stuck_once(ctx: DurableContext) -> str:
        calls.append(1)
        if len(calls) == 1:
            release.wait(20)  # hangs far past the job timeout
        return "done"

    durable("w-stuck").step("s", stuck_once)
    durable("w-other").step("a", lambda ctx: 1)
    options = {**FAST, "job_timeout": timedelta(seconds=0.5)}
    with engine.worker(concurrency=1, **options) as worker:
        stuck = engine.start("w-stuck").run_id
        assert engine.wait(stuck, timeout=20).status == "completed"  # retried elsewhere
        others = [engine.start("w-other").run_id for _ in range(3)]
        for run_id in others:  # a concurrency-1 worker still has a free slot
            assert engine.wait(run_id, timeout=20).status == "completed"
        release.set()
    assert worker.stats.abandoned == 1
