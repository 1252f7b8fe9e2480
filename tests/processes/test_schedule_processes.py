"""A one-second schedule fired by real worker processes: exactly one run per tick.

Three workers on PostgreSQL (one killed with SIGKILL and restarted half-way), one on
SQLite. Every run's idempotency key names its tick; the ticks started must be every
second from the first to the last, none missing and none twice.
"""

from __future__ import annotations

import itertools
import time
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from durable_sa import Durable, WorkflowRun
from durable_sa.testing.processes import WorkerProcess
from durable_sa.testing.workload import define_workload, prepare_database

pytestmark = pytest.mark.reliability

FAST = ("--lease", "3", "--heartbeat", "0.5", "--poll-interval", "0.5")
PREFIX = "schedule:every-second:"


def fire_times(sa_engine: sa.Engine) -> list[datetime]:
    """The tick of every run the schedule started, in id order."""
    with Session(sa_engine) as session:
        keys = session.scalars(
            sa.select(WorkflowRun.idempotency_key)
            .where(WorkflowRun.idempotency_key.like(f"{PREFIX}%"))
            .order_by(WorkflowRun.id)
        ).all()
    return [datetime.fromisoformat(key.removeprefix(PREFIX)) for key in keys if key]


def assert_one_run_per_tick(ticks: list[datetime], at_least: int) -> None:
    assert len(ticks) == len(set(ticks)), "a tick started two runs"
    ordered = sorted(ticks)
    missing = [(a, b) for a, b in itertools.pairwise(ordered) if b - a != timedelta(seconds=1)]
    assert missing == [], f"ticks missing between {missing}"
    assert len(ordered) >= at_least, ordered


def run_schedule(url: str, workers: int, seconds: float, *, kill_one: bool) -> list[datetime]:
    sa_engine = sa.create_engine(url, pool_pre_ping=True)
    try:
        define_workload(sa_engine)
        engine = Durable(sa_engine)
        engine.schedule("every-second", "rel-seq", cron="* * * * * *", overlap="allow")
        procs = [WorkerProcess(url, *FAST).start() for _ in range(workers)]
        try:
            time.sleep(seconds / 2)
            if kill_one:
                procs[0].kill()
                procs[0].close()
                procs[0] = WorkerProcess(url, *FAST).start()
            time.sleep(seconds / 2)
            engine.pause_schedule("every-second")
            codes = [proc.terminate() for proc in procs]
            outputs = [proc.output() for proc in procs]
        finally:
            for proc in procs:
                proc.close()
        assert codes == [0] * workers, outputs
        return fire_times(sa_engine)
    finally:
        sa_engine.dispose()


def test_three_postgres_workers_start_each_tick_once(durable_workload_url: str) -> None:
    ticks = run_schedule(durable_workload_url, 3, 20, kill_one=True)
    print(f"\nschedule on PostgreSQL: {len(ticks)} ticks in 20 s, 3 workers")  # noqa: T201
    assert_one_run_per_tick(ticks, at_least=14)


def test_one_sqlite_worker_starts_each_tick_once(durable_sqlite_url: str) -> None:
    ticks = run_schedule(prepare_database(durable_sqlite_url), 1, 8, kill_one=False)
    assert_one_run_per_tick(ticks, at_least=4)
