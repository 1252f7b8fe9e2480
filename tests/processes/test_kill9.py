"""kill -9 at random instants: nothing is lost, nothing is journaled twice."""

from __future__ import annotations

import random
import time

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from durable_sa import Durable, WorkflowRun
from durable_sa.testing.processes import WorkerProcess
from durable_sa.testing.workload import (
    EXPECTED,
    assert_runs_ended_as_expected,
    summary,
    wait_until_all_terminal,
)

pytestmark = pytest.mark.reliability

RUNS_PER_WORKFLOW = 70  # 210 runs of 5+ steps
WORKERS = 3
MIN_KILLS = 20
SEED = 20261125
WORKER_ARGS = ("--concurrency", "4", "--lease", "2", "--heartbeat", "0.5", "--poll-interval", "0.5")
STEP_SECONDS = 0.05  # long enough that kills land inside steps, and in Phase B


def open_runs(engine: Durable, run_ids: list[int]) -> int:
    with Session(engine.sa_engine) as session:
        return int(
            session.scalar(
                sa.select(sa.func.count())
                .select_from(WorkflowRun)
                .where(
                    WorkflowRun.id.in_(run_ids),
                    WorkflowRun.status.notin_(["completed", "failed", "canceled"]),
                )
            )
            or 0
        )


def test_random_kill9_loses_nothing(durable_workload_url: str, rel_engine: Durable) -> None:
    rng = random.Random(SEED)  # noqa: S311 - a reproducible schedule, not crypto
    run_ids = {
        name: [rel_engine.start(name, {"i": i}).run_id for i in range(RUNS_PER_WORKFLOW)]
        for name in EXPECTED
    }
    everything = [run_id for ids in run_ids.values() for run_id in ids]

    def spawn() -> WorkerProcess:
        return WorkerProcess(durable_workload_url, *WORKER_ARGS, step_seconds=STEP_SECONDS).start()

    workers = [spawn() for _ in range(WORKERS)]
    kills = 0
    started = time.monotonic()
    try:
        while kills < MIN_KILLS and time.monotonic() - started < 120:
            time.sleep(rng.uniform(0.2, 0.8))
            if not open_runs(rel_engine, everything):
                break  # the workload is done: later kills would prove nothing
            victim = rng.randrange(WORKERS)
            workers[victim].kill()
            kills += 1
            workers[victim] = spawn()
        left_open = wait_until_all_terminal(rel_engine.sa_engine, everything, timeout=240)
        codes = [worker.terminate() for worker in workers]
    finally:
        for worker in workers:
            worker.close()

    figures = summary(rel_engine.sa_engine)
    figures |= {"runs": len(everything), "kills": kills, "left_open": left_open}
    print(f"\nkill -9 reliability: {figures}")  # noqa: T201 - the figures are the report

    assert kills >= MIN_KILLS  # every kill landed while runs were still in flight
    assert left_open == 0
    assert codes == [0] * WORKERS
    assert_runs_ended_as_expected(rel_engine.sa_engine, run_ids)
    assert figures["duplicate_journal_rows"] == 0
    assert figures["jobs_left"] == 0
    assert figures["dead_letters"] == 0
    assert figures["non_terminal_runs"] == 0
    assert rel_engine.recover() == 0
    # At-least-once: a unit re-runs only when a kill (or the lease it left) interrupted
    # it; each kill can interrupt at most one step per slot, three units for a parallel.
    assert figures["duplicate_executions"] <= kills * 4 * 3
