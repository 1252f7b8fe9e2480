"""The worker's pipeline: same rows as ``drain``, fewer round trips.

The pipeline decides on the snapshot it claimed and applies the decision with a
compare-and-set on the run's revision; these tests pin down what that must never change:
the rows it writes, the fallback when a run moved under a running step, continuing a run
in place, grouping commits of different runs, and steps that are not due yet.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from durable_sa import Durable, DurableContext, Job, JournalEntry, WorkflowRun, durable
from durable_sa.testing import drain
from durable_sa.worker import committer
from tests.integration.helpers import count

if TYPE_CHECKING:
    import pytest

    from durable_sa.worker import Worker

FAST = {"heartbeat": timedelta(seconds=0.2), "lease": timedelta(seconds=2)}


def _pipeline_of(worker: Worker) -> Any:
    lane = worker._pipeline  # these tests are about the pipeline itself
    assert lane is not None, "the pipeline should serve the jobs table"
    return lane


def _rows(engine: Durable, run_id: int) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    with engine.sa_engine.connect() as conn:
        run = conn.execute(sa.select(WorkflowRun).where(WorkflowRun.id == run_id)).mappings().one()
        journal = conn.execute(
            sa.select(
                JournalEntry.step_id, JournalEntry.status, JournalEntry.result, JournalEntry.attempt
            )
            .where(JournalEntry.run_id == run_id)
            .order_by(JournalEntry.step_id)
        ).all()
    keep = ("status", "current_step", "total_steps", "attempt", "state", "result", "error")
    return {k: run[k] for k in keep}, [tuple(row) for row in journal]


def test_the_pipeline_writes_what_drain_writes(engine: Durable) -> None:
    durable("fl-same").step("a", lambda ctx: {"n": 1}).step("b", lambda ctx: [1, "x", None]).step(
        "c", lambda ctx: None
    )
    by_drain = engine.start("fl-same", {"k": 1}).run_id
    drain(engine)
    with engine.worker(concurrency=1, **FAST) as worker:
        by_pipeline = engine.start("fl-same", {"k": 1}).run_id
        assert engine.wait(by_pipeline, timeout=30).status == "completed"
    assert _pipeline_of(worker).stats.writes == 3
    assert _rows(engine, by_pipeline) == _rows(engine, by_drain)
    assert count(engine, Job) == 0


def test_a_run_is_claimed_once_and_continued_in_place(engine: Durable) -> None:
    durable("fl-place").step("a", lambda ctx: 1).step("b", lambda ctx: 2).step("c", lambda ctx: 3)
    with engine.worker(concurrency=1, **FAST) as worker:
        run_id = engine.start("fl-place").run_id
        final = engine.wait(run_id, timeout=30)
    assert final.status == "completed"
    assert final.results == {"a": 1, "b": 2, "c": 3}
    assert worker.stats.claimed == 1
    assert worker.stats.applied == 3


def test_a_run_that_moved_under_a_running_step_is_left_as_it_is(engine: Durable) -> None:
    """The step's write misses the revision; the locked general path sees a stale job."""
    started = threading.Event()
    release = threading.Event()

    def slow(ctx: DurableContext) -> int:
        started.set()
        release.wait(10)
        return 1

    durable("fl-moved").step("slow", slow).step("after", lambda ctx: 2)
    with engine.worker(concurrency=1, **FAST) as worker:
        run_id = engine.start("fl-moved").run_id
        assert started.wait(10)
        assert engine.cancel(run_id).canceled
        release.set()
        final = engine.wait(run_id, timeout=30)
    assert final.status == "canceled"
    assert worker.stats.stale == 1
    assert worker.stats.applied == 0
    _, journal = _rows(engine, run_id)
    assert journal == []  # the late step result was not journaled
    assert count(engine, Job) == 0


def test_a_transactional_step_whose_run_moved_keeps_none_of_its_writes(
    pg_engine: sa.Engine,
) -> None:
    """On PostgreSQL the handler runs without locking its run and the committer writes
    its checkpoint: the compare-and-set misses, the transaction rolls back with the
    handler's row, and the step's locked retry (on a slot) finds the run canceled."""
    engine = Durable(pg_engine)
    engine.create_tables()
    marks = sa.Table("fl_marks", sa.MetaData(), sa.Column("run_id", sa.BigInteger))
    marks.create(pg_engine)
    started = threading.Event()
    release = threading.Event()
    calls: list[int] = []

    def mark(ctx: DurableContext) -> int:
        calls.append(ctx.run_id)
        ctx.session.execute(marks.insert().values(run_id=ctx.run_id))
        started.set()
        release.wait(10)
        return 1

    durable("fl-tx-moved").step("mark", mark, transactional=True).step("after", lambda ctx: 2)
    with engine.worker(concurrency=1, **FAST) as worker:
        run_id = engine.start("fl-tx-moved").run_id
        assert started.wait(10)
        assert engine.cancel(run_id).canceled  # the run row is not locked by the step
        release.set()
        final = engine.wait(run_id, timeout=30)
    assert final.status == "canceled"
    assert calls == [run_id]  # the locked retry saw the cancel and did not run it again
    assert worker.stats.stale == 1
    with pg_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(marks)).scalar() == 0
    assert count(engine, Job) == 0


def test_steps_of_different_runs_share_commits_under_load(engine: Durable) -> None:
    durable("fl-group").step("a", lambda ctx: ctx.input["i"]).step(
        "b", lambda ctx: ctx.results["a"] * 2
    ).step("c", lambda ctx: ctx.results["b"] + 1)
    run_ids = [engine.start("fl-group", {"i": i}).run_id for i in range(60)]
    with engine.worker(concurrency=4, **FAST) as worker:
        finals = [engine.wait(run_id, timeout=60) for run_id in run_ids]
    assert [f.results["c"] for f in finals] == [i * 2 + 1 for i in range(60)]
    lane = _pipeline_of(worker)
    assert lane.stats.writes == 180
    assert lane.stats.commits < lane.stats.writes  # some commits carried several runs
    with engine.sa_engine.connect() as conn:
        per_run = conn.execute(
            sa.select(JournalEntry.run_id, sa.func.count()).group_by(JournalEntry.run_id)
        ).all()
    assert sorted(n for _, n in per_run) == [3] * 60


def test_a_step_due_later_is_queued_not_continued(engine: Durable) -> None:
    durable("fl-sleep").step("a", lambda ctx: 1).sleep("nap", timedelta(milliseconds=300)).step(
        "b", lambda ctx: 2
    )
    with engine.worker(concurrency=1, poll_interval=0.05, **FAST) as worker:
        run_id = engine.start("fl-sleep").run_id
        final = engine.wait(run_id, timeout=30)
    assert final.status == "completed"
    assert worker.stats.claimed == 2  # the step after the nap was claimed when due
    assert _pipeline_of(worker).stats.writes == 3


def test_a_failure_after_a_commit_strands_no_job(
    engine: Durable, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug while handing on the next step must not leave jobs held (and renewed) forever."""
    original = committer._following
    failures: list[int] = []

    def fails_once(plan: Any, result: Any) -> Any:
        if not failures:
            failures.append(1)
            msg = "planted"
            raise RuntimeError(msg)
        return original(plan, result)

    monkeypatch.setattr(committer, "_following", fails_once)
    durable("fl-bug").step("a", lambda ctx: 1).step("b", lambda ctx: 2)
    with engine.worker(concurrency=1, poll_interval=0.1, **FAST) as worker:
        run_id = engine.start("fl-bug").run_id
        final = engine.wait(run_id, timeout=30)
        assert _pipeline_of(worker).held_ids() == []
    assert final.status == "completed"
    assert final.results == {"a": 1, "b": 2}
    assert failures == [1]
    assert "committing 1 plans failed" in caplog.text


def test_a_hand_whose_runs_end_apart_is_still_claimed_in_batches(engine: Durable) -> None:
    # Runs of one step and of three end at different times, so places in the hand free
    # up one by one while the rest commit; claiming each as it frees would split the
    # hand into small cohorts, each claimed and committed apart, for good.
    durable("fl-short").step("a", lambda ctx: 1)
    durable("fl-long").step("a", lambda ctx: 1).step("b", lambda ctx: 2).step("c", lambda ctx: 3)
    runs = 160
    ids = [engine.start("fl-short" if i % 2 else "fl-long", {"i": i}).run_id for i in range(runs)]
    with engine.worker(concurrency=1, prefetch=16, **FAST) as worker:
        assert all(engine.wait(run_id, timeout=60).status == "completed" for run_id in ids)
    lane = _pipeline_of(worker)
    assert worker.stats.claimed == runs
    # At least half the hand per claim (the last ones, as the backlog ends, may be fewer).
    assert lane.stats.claims <= runs // 8 + 3, lane.stats.claims
