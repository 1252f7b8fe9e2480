"""Limits across real worker processes on PostgreSQL, with workers killed mid-flight.

Three ``durable-sa worker`` processes run a workflow limited to 3 active runs and 1 per
key while the test starts runs; one worker is killed (SIGKILL) twice and started again.
The steps record their intervals by the database's clock: never more than the limits
overlap, every run completes, and no count or pending run is left behind.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from durable_sa import Durable, RunStatus
from durable_sa.models import Slots, WorkflowRun
from durable_sa.testing.processes import WorkerProcess
from tests.processes.limits_app import MAX_ACTIVE, PER_KEY, app_metadata, define, intervals

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parents[2]
FAST = ("--lease", "2", "--heartbeat", "0.5", "--poll-interval", "0.2")
RUNS = 30
KEYS = [f"k{i}" for i in range(5)]


def worker(url: str) -> WorkerProcess:
    return WorkerProcess(
        url,
        "--concurrency",
        "3",
        *FAST,
        command=("worker", "tests.processes.limits_app:app"),
        pythonpath=[ROOT],
    ).start()


def overlap(rows: list[tuple[float, float]]) -> int:
    events = sorted([(b, 1) for b, _ in rows] + [(e, -1) for _, e in rows])
    most = now = 0
    for _, delta in events:
        now += delta
        most = max(most, now)
    return most


def test_limits_hold_across_worker_processes_that_are_killed(
    durable_workload_url: str,
) -> None:
    sa_engine = sa.create_engine(durable_workload_url, pool_pre_ping=True)
    app_metadata.create_all(sa_engine)
    define(sa_engine)
    engine = Durable(sa_engine)
    rng = random.Random(16)  # noqa: S311 - which worker dies, not a secret
    workers = [worker(durable_workload_url) for _ in range(3)]
    try:
        for i in range(RUNS):
            engine.start("limited-proc", {"key": KEYS[i % 5]}, concurrency_key=KEYS[i % 5])
        for _ in range(2):  # kill a worker while the queue is full, then start it again
            time.sleep(1.5)
            victim = rng.randrange(len(workers))
            workers[victim].kill()
            workers[victim].close()
            workers[victim] = worker(durable_workload_url)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            with Session(sa_engine) as session:
                done = session.scalar(
                    sa.select(sa.func.count())
                    .select_from(WorkflowRun)
                    .where(WorkflowRun.status == RunStatus.COMPLETED)
                )
            if done == RUNS:
                break
            time.sleep(0.2)
        outputs = [w.output() for w in workers]
        for w in workers:
            w.terminate()
    finally:
        for w in workers:
            w.close()
    with Session(sa_engine) as session:
        statuses = session.scalars(sa.select(WorkflowRun.status)).all()
        rows = session.execute(sa.select(intervals)).all()
        counts = {
            (s.workflow_name, s.concurrency_key): s.active
            for s in session.scalars(sa.select(Slots))
        }
    sa_engine.dispose()
    assert set(statuses) == {RunStatus.COMPLETED}, outputs
    assert set(counts.values()) == {0}, counts  # nothing left counted: no place leaked
    assert len(rows) == RUNS
    spans = [(r.began.timestamp(), r.ended.timestamp()) for r in rows]
    assert overlap(spans) <= MAX_ACTIVE
    for key in KEYS:
        keyed = [(r.began.timestamp(), r.ended.timestamp()) for r in rows if r.key == key]
        assert overlap(keyed) <= PER_KEY
