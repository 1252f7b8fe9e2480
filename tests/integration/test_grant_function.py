"""PostgreSQL's grant function: one round trip, the same answer as the pure decision.

The function (:mod:`durable_sa.store.grant_function`) records grants only when every
limit has room; the caller decides how long a refused step waits. These tests check
the two agree over a grid of counts, that many threads granting at once through
workers' held connections never exceed a limit, and that the function follows the
tables into another schema (``schema_translate_map``) and is made again by
``create_tables()`` if it was dropped.
"""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from durable_sa import Durable, Job, durable
from durable_sa.core.rates import RateLimit, Wait, decide_grant, must_leave
from durable_sa.engine.controls import UNSET_RECHECK, GrantReserve
from durable_sa.store.controls import grant_pg
from durable_sa.store.grant_function import drop_function_ddl
from durable_sa.store.models import rate_grants_table
from durable_sa.testing import drain

if TYPE_CHECKING:
    from collections.abc import Iterator

HOUR = timedelta(hours=1)


@pytest.fixture
def pg(pg_engine: sa.Engine) -> Durable:
    engine = Durable(pg_engine)
    engine.create_tables()
    return engine


def grants_of(engine: Durable, name: str) -> int:
    with engine.sa_engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(rate_grants_table)
                .where(rate_grants_table.c.name == name)
            ).scalar_one()
        )


@pytest.mark.parametrize("limit", [1, 3])
@pytest.mark.parametrize("before", [0, 1, 2, 3])
@pytest.mark.parametrize("wanted", [1, 2, 4])
def test_the_function_grants_exactly_when_the_decision_does(
    pg: Durable, limit: int, before: int, wanted: int
) -> None:
    pg.set_rate_limit("api", limit=limit, per=HOUR)
    if before:
        with pg.sa_engine.begin() as conn:
            conn.execute(
                rate_grants_table.insert(),
                [{"name": "api", "granted_at": pg.now - timedelta(minutes=1)}] * before,
            )
    held = pg.sa_engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        wait = grant_pg(held, {"api": wanted}, unset_recheck=UNSET_RECHECK)
    finally:
        held.close()
    rule = RateLimit("api", limit, HOUR)
    fits = must_leave(rule, wanted=wanted, in_window=before) == 0
    assert (not isinstance(wait, Wait)) is fits
    assert grants_of(pg, "api") == before + (wanted if fits else 0)
    expected = decide_grant(
        "api",
        rule,
        wanted=wanted,
        in_window=before,
        oldest=[pg.now - timedelta(minutes=1)] * before,
        now=pg.now,
        unset_recheck=UNSET_RECHECK,
    )
    assert (expected is None) is fits
    if isinstance(wait, Wait) and expected is not None:
        assert wait.misconfigured == expected.misconfigured
        assert wait.reason == expected.reason


def test_all_or_none_across_limits_and_an_unset_limit_records_nothing(pg: Durable) -> None:
    pg.set_rate_limit("a", limit=5, per=HOUR)
    pg.set_rate_limit("b", limit=1, per=HOUR)
    held = pg.sa_engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        first = grant_pg(held, {"a": 1, "b": 1}, unset_recheck=UNSET_RECHECK)
        assert not isinstance(first, Wait)
        assert [room.name for room in first] == ["a", "b"]
        refused = grant_pg(held, {"a": 1, "b": 1}, unset_recheck=UNSET_RECHECK)
        assert isinstance(refused, Wait)
        assert "'b'" in refused.reason
        unset = grant_pg(held, {"a": 1, "nobody-set-me": 1}, unset_recheck=UNSET_RECHECK)
        assert isinstance(unset, Wait)
        assert unset.misconfigured
    finally:
        held.close()
    assert (grants_of(pg, "a"), grants_of(pg, "b")) == (1, 1)


def test_racing_reserves_never_let_more_than_the_limit_begin(pg: Durable) -> None:
    pg.set_rate_limit("race", limit=25, per=HOUR)
    granted: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def worker() -> None:
        grants = GrantReserve(pg.shell)
        try:
            barrier.wait(timeout=30)
            for _ in range(10):
                answer = grants.take({"race": 1})
                with lock:
                    granted.append(answer is None)
        finally:
            grants.close()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Batches kept by one thread are refused to the others meanwhile, so fewer than the
    # limit may begin; never more, and every grant left unused is given back on close.
    assert 0 < sum(granted) <= 25
    assert grants_of(pg, "race") == sum(granted)
    # and nothing was lost: what they did not use, a fresh reserve can
    fresh = GrantReserve(pg.shell)
    try:
        more = sum(fresh.take({"race": 1}) is None for _ in range(30))
    finally:
        fresh.close()
    assert sum(granted) + more == 25


@pytest.fixture
def tenant(durable_postgres_url: str) -> Iterator[sa.Engine]:
    schema = f"Tenant_{uuid.uuid4().hex[:8]}"  # mixed case: it must be quoted
    plain = sa.create_engine(durable_postgres_url)
    with plain.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    mapped = plain.execution_options(schema_translate_map={None: schema})
    try:
        yield mapped
    finally:
        plain.dispose()


def test_the_function_follows_the_tables_into_their_schema(tenant: sa.Engine) -> None:
    engine = Durable(tenant)
    engine.create_tables()
    engine.set_rate_limit("tenant-api", limit=1, per=HOUR)
    durable("tenant-limited").step("call", lambda ctx: ctx.input["n"], rate_limit="tenant-api")
    first = engine.start("tenant-limited", {"n": 1}).run_id
    second = engine.start("tenant-limited", {"n": 2}).run_id
    with engine.worker(concurrency=1, poll_interval=0.02):
        deadline = engine.now + timedelta(seconds=20)
        while engine.status(first).status != "completed" and engine.now < deadline:
            threading.Event().wait(0.05)
    assert engine.status(first).status == "completed"
    assert engine.status(second).status == "running"  # deferred: one per hour
    assert grants_of(engine, "tenant-api") == 1


def test_create_tables_makes_the_function_again(pg: Durable) -> None:
    with pg.sa_engine.begin() as conn:
        conn.exec_driver_sql(drop_function_ddl())
    pg.create_tables()
    pg.set_rate_limit("again", limit=1, per=HOUR)
    durable("again-limited").step("call", lambda ctx: ctx.input["n"], rate_limit="again")
    run_id = pg.start("again-limited", {"n": 1}).run_id
    drain(pg)
    assert pg.status(run_id).status == "completed"


def test_a_database_without_the_function_holds_the_step_and_says_how_to_fix_it(
    pg: Durable,
) -> None:
    with pg.sa_engine.begin() as conn:
        conn.exec_driver_sql(drop_function_ddl())
    pg.set_rate_limit("missing", limit=5, per=HOUR)
    durable("missing-fn").step("call", lambda ctx: ctx.input["n"], rate_limit="missing")
    run_id = pg.start("missing-fn", {"n": 1}).run_id
    assert drain(pg) == 1
    with Session(pg.sa_engine) as session:
        (job,) = session.scalars(sa.select(Job).where(Job.run_id == run_id)).all()
    assert "durable_sa_take_grants" in (job.last_error or "")
    assert "create_tables()" in (job.last_error or "")
    assert job.attempts == 0  # held back, no attempt used
    held = pg.sa_engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:  # a worker's held connection gets the same answer, and stays usable
        wait = grant_pg(held, {"missing": 1}, unset_recheck=UNSET_RECHECK)
        assert isinstance(wait, Wait)
        assert wait.misconfigured
        assert held.execute(sa.text("SELECT 1")).scalar_one() == 1
    finally:
        held.close()
    pg.create_tables()
    drain(pg, now=pg.now + UNSET_RECHECK + timedelta(seconds=1))
    assert pg.status(run_id).status == "completed"
