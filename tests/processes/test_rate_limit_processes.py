"""A shared rate limit across real worker processes: never exceeded in any window.

PostgreSQL with three worker processes (one killed and restarted midway), SQLite with
one. Two records are checked:

- the grants themselves (``durable_rate_grants``, by the database's clock), collected by
  polling while the workers run: a grant is deleted only once it is older than the
  window, so polling every 100 ms sees every one. No window of length ``per`` may hold
  more than ``limit`` of them: this is the exact contract;
- the starts the step handlers record in the application's table, by the same clock.
  A handler begins a few milliseconds after its grant, and that delay varies, so their
  windows are checked a little shorter than ``per`` (``SLACK``).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from durable_sa import Durable
from durable_sa.store.models import rate_grants_table
from durable_sa.testing.processes import WorkerProcess
from durable_sa.testing.workload import wait_until_all_terminal
from tests.support import rate_app

if TYPE_CHECKING:
    from collections.abc import Iterable

pytestmark = pytest.mark.reliability

LIMIT = 3
PER = timedelta(seconds=1)
SLACK = timedelta(milliseconds=150)
RUNS = 30
FAST = ("--concurrency", "2", "--lease", "3", "--heartbeat", "0.5", "--poll-interval", "0.2")
APP = "tests.support.rate_app:app"


def most_in_a_window(times: Iterable[datetime], per: timedelta) -> int:
    """The most of ``times`` inside any half-open window ``[t, t + per)``."""
    ordered = sorted(times)
    most = 0
    first = 0
    for last, moment in enumerate(ordered):
        while moment - ordered[first] >= per:
            first += 1
        most = max(most, last - first + 1)
    return most


def run_workers(url: str, workers: int, *, kill_one: bool) -> tuple[list[datetime], list[datetime]]:
    sa_engine = sa.create_engine(url)
    rate_app.define(sa_engine)
    engine = Durable(sa_engine)
    engine.create_tables()
    rate_app.metadata.create_all(sa_engine)
    engine.set_rate_limit(rate_app.LIMIT_NAME, limit=LIMIT, per=PER)
    run_ids = [engine.start("rated").run_id for _ in range(RUNS)]
    grants: dict[int, datetime] = {}

    def collect() -> None:
        with sa_engine.connect() as conn:
            for row in conn.execute(
                sa.select(rate_grants_table.c.id, rate_grants_table.c.granted_at)
            ):
                grants[row.id] = row.granted_at

    procs = [WorkerProcess(url, *FAST, command=("worker", APP)).start() for _ in range(workers)]
    try:
        deadline = time.monotonic() + 120
        killed = False
        while time.monotonic() < deadline:
            collect()
            done = wait_until_all_terminal(sa_engine, run_ids, timeout=0)
            if done == 0:
                break
            if kill_one and not killed and len(grants) >= RUNS // 3:
                procs[0].kill()
                procs[0].close()
                procs[0] = WorkerProcess(url, *FAST, command=("worker", APP)).start()
                killed = True
            time.sleep(0.1)
        collect()
        left = wait_until_all_terminal(sa_engine, run_ids, timeout=0)
        outputs = "\n".join(proc.output()[-2000:] for proc in procs)
        assert left == 0, outputs
        for proc in procs:
            proc.terminate()
    finally:
        for proc in procs:
            proc.close()
    with sa_engine.connect() as conn:
        started = list(conn.execute(sa.select(rate_app.starts.c.started_at)).scalars())
    sa_engine.dispose()
    return list(grants.values()), started


def check(grants: list[datetime], started: list[datetime]) -> None:
    assert len(grants) >= RUNS  # a step killed in flight takes a grant again
    assert len(started) >= RUNS
    print(  # noqa: T201 - the figures are the report
        f"\nrate limit {LIMIT}/{PER}: {len(grants)} grants, most in a window "
        f"{most_in_a_window(grants, PER)}; {len(started)} starts, most in a window "
        f"{most_in_a_window(started, PER)} (exact) / "
        f"{most_in_a_window(started, PER - SLACK)} (window less {SLACK})"
    )
    assert most_in_a_window(grants, PER) <= LIMIT
    assert most_in_a_window(started, PER - SLACK) <= LIMIT
    # The limit is used, not merely respected: the work spreads over about RUNS/LIMIT windows.
    span = max(grants) - min(grants)
    assert span >= PER * (RUNS // LIMIT - 1)
    assert span <= PER * (RUNS // LIMIT + 15)


def test_three_postgresql_workers_never_exceed_the_shared_limit(durable_postgres_url: str) -> None:
    check(*run_workers(durable_postgres_url, 3, kill_one=True))


def test_one_sqlite_worker_never_exceeds_the_limit(durable_sqlite_url: str) -> None:
    check(*run_workers(durable_sqlite_url, 1, kill_one=False))
