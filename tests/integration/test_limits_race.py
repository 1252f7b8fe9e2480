"""Exact counting under load on PostgreSQL: many starters, many worker threads, READ COMMITTED.

Each run records when its first step began and when its last step ran, in an
application table; those intervals lie inside the run's active time, so if more than
``max_active`` runs were ever active at once with their steps running, the recorded
intervals would overlap more than that.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from durable_sa import Durable, DurableContext, RunStatus, durable
from durable_sa.models import Slots, WorkflowRun

LIMIT = 3
PER_KEY = 1
STARTERS = 6
RUNS_EACH = 8

app = sa.MetaData()
intervals = sa.Table(
    "app_intervals",
    app,
    sa.Column("run_id", sa.BigInteger, primary_key=True),
    sa.Column("key", sa.String(16)),
    sa.Column("began", sa.Float),
    sa.Column("ended", sa.Float),
)


@pytest.fixture
def pg(pg_engine: sa.Engine) -> Durable:
    engine = Durable(pg_engine)
    engine.create_tables()
    app.create_all(pg_engine)
    return engine


def overlap(rows: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant."""
    events = sorted([(b, 1) for b, _ in rows] + [(e, -1) for _, e in rows])
    most = now = 0
    for _, delta in events:
        now += delta
        most = max(most, now)
    return most


def test_never_more_than_the_limit_active_under_racing_starts_and_workers(pg: Durable) -> None:
    def begin(ctx: DurableContext) -> None:
        with pg.sa_engine.begin() as conn:
            conn.execute(
                intervals.insert().values(
                    run_id=ctx.run_id, key=ctx.input["key"], began=time.monotonic()
                )
            )
        time.sleep(0.02)

    def end(ctx: DurableContext) -> None:
        time.sleep(0.02)
        with pg.sa_engine.begin() as conn:
            conn.execute(
                intervals.update()
                .where(intervals.c.run_id == ctx.run_id)
                .values(ended=time.monotonic())
            )

    durable("raced", max_active=LIMIT, max_active_per_key=PER_KEY).step("begin", begin).step(
        "end", end
    )
    ids: list[int] = []
    lock = threading.Lock()

    def starter(n: int) -> None:
        for i in range(RUNS_EACH):
            started = pg.start(
                "raced",
                {"key": f"k{(n + i) % 4}"},
                concurrency_key=f"k{(n + i) % 4}",
                priority=i % 3,
            )
            with lock:
                ids.append(started.run_id)

    fast = {
        "heartbeat": timedelta(seconds=0.2),
        "lease": timedelta(seconds=5),
        "poll_interval": 0.02,
    }
    with pg.worker(concurrency=4, **fast), pg.worker(concurrency=4, **fast):
        threads = [threading.Thread(target=starter, args=(n,)) for n in range(STARTERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        deadline = time.monotonic() + 90
        with Session(pg.sa_engine) as session:
            while time.monotonic() < deadline:
                done = session.scalar(
                    sa.select(sa.func.count())
                    .select_from(WorkflowRun)
                    .where(WorkflowRun.status == RunStatus.COMPLETED)
                )
                session.rollback()
                if done == STARTERS * RUNS_EACH:
                    break
                time.sleep(0.1)
    assert len(ids) == STARTERS * RUNS_EACH
    with Session(pg.sa_engine) as session:
        statuses = session.scalars(sa.select(WorkflowRun.status)).all()
        assert set(statuses) == {RunStatus.COMPLETED}
        rows = session.execute(
            sa.select(intervals.c.key, intervals.c.began, intervals.c.ended)
        ).all()
        assert {slot.active for slot in session.scalars(sa.select(Slots))} == {0}
    assert len(rows) == STARTERS * RUNS_EACH
    assert overlap([(r.began, r.ended) for r in rows]) <= LIMIT
    for key in {r.key for r in rows}:
        assert overlap([(r.began, r.ended) for r in rows if r.key == key]) <= PER_KEY
    assert overlap([(r.began, r.ended) for r in rows]) == LIMIT  # the limit was reached


def test_racing_debounced_starts_of_a_key_make_one_run(pg: Durable) -> None:
    durable("debounced-race").step("a", lambda ctx: ctx.input["n"])
    ids: list[tuple[int, bool]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def starter(n: int) -> None:
        barrier.wait()
        for i in range(5):
            started = pg.start(
                "debounced-race", {"n": n * 10 + i}, debounce_key="k", debounce=timedelta(hours=1)
            )
            with lock:
                ids.append((started.run_id, started.created))

    threads = [threading.Thread(target=starter, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 40
    assert len({run_id for run_id, _ in ids}) == 1
    assert sum(created for _, created in ids) == 1
    with Session(pg.sa_engine) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(WorkflowRun)) == 1
