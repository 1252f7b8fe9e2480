"""A transactional step whose ``ctx.session`` loses its connection runs again, free.

The server dropping the step's connection is the database's failure, like a connection
lost at COMMIT: the step runs again without using one of its attempts (here it has only
one), the run never fails or compensates, and the handler's writes commit once.
PostgreSQL only: a SQLite file has no connection to lose.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from durable_sa import Durable, DurableContext, durable
from durable_sa.testing import drain
from tests.integration.helpers import far_future, get_journal

if TYPE_CHECKING:
    from collections.abc import Iterator

effects = sa.Table(
    "lost_conn_effects",
    sa.MetaData(),
    sa.Column("run_id", sa.Integer, primary_key=True),  # a second write would fail the step
)


@pytest.fixture
def pg(pg_engine: sa.Engine) -> Iterator[Durable]:
    engine = Durable(pg_engine)
    engine.create_tables()
    effects.create(pg_engine)
    yield engine
    effects.drop(pg_engine)


def _drops_its_connection(times: int, *, swallow: bool = False) -> list[int]:
    calls: list[int] = []

    def handler(ctx: DurableContext) -> str:
        calls.append(1)
        assert ctx.session is not None
        if len(calls) <= times:
            try:  # the server ends this very connection, as a failover or a restart would
                ctx.session.execute(sa.text("SELECT pg_terminate_backend(pg_backend_pid())"))
            except sa.exc.OperationalError:
                if not swallow:
                    raise
                msg = "order service could not write"  # an application wraps it
                raise RuntimeError(msg) from None
        ctx.session.execute(sa.insert(effects).values(run_id=ctx.run_id))
        return "written"

    def undo(ctx: DurableContext) -> None:
        msg = "the run must not roll back"
        raise AssertionError(msg)

    durable("lost-conn").step("before", lambda ctx: 1, compensate=undo).step(
        "write", handler, transactional=True, max_retries=1
    )
    return calls


def _check(engine: Durable, run_id: int, calls: list[int], expected_calls: int) -> None:
    snap = engine.status(run_id)
    assert snap.status == "completed", snap.error
    assert snap.results["write"] == "written"
    assert len(calls) == expected_calls
    rows = {r.step_id: r for r in get_journal(engine, run_id)}
    assert set(rows) == {"before", "write"}  # no failed attempt, no rollback
    assert rows["write"].attempt == 1
    with engine.sa_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(effects)).scalar_one() == 1


@pytest.mark.parametrize("swallow", [False, True], ids=["raised", "wrapped"])
def test_a_dropped_connection_reruns_the_step_at_once(pg: Durable, swallow: bool) -> None:
    calls = _drops_its_connection(1, swallow=swallow)
    run_id = pg.start("lost-conn").run_id
    drain(pg)
    _check(pg, run_id, calls, expected_calls=2)


def test_dropped_twice_the_job_is_given_back_and_runs_later(pg: Durable) -> None:
    calls = _drops_its_connection(2)
    run_id = pg.start("lost-conn").run_id
    drain(pg, now=far_future())
    _check(pg, run_id, calls, expected_calls=3)


def test_a_worker_carries_on_after_the_drop(pg: Durable) -> None:
    calls = _drops_its_connection(2)
    with pg.worker(heartbeat=timedelta(seconds=0.2), lease=timedelta(seconds=2)):
        run_id = pg.start("lost-conn").run_id
        assert pg.wait(run_id, timeout=30).status == "completed"
    _check(pg, run_id, calls, expected_calls=3)
