"""A worker's grants in hand (GrantReserve), on both databases.

The reserve asks for grants in batches once a batch has been used up in time, lets the
next steps begin on the grants it kept, gives back those its horizon overtook and, on
close, every one it did not use: the grants table ends up holding exactly the steps
that began.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durable_sa import Durable, durable
from durable_sa.core.grant_batches import Demand, Granted, horizon
from durable_sa.engine.controls import GrantReserve
from durable_sa.store.models import rate_grants_table
from durable_sa.testing import FakeClock, drain

if TYPE_CHECKING:
    from durable_sa.core.rates import Wait

HOUR = timedelta(hours=1)


def aware(at: object) -> datetime:
    assert isinstance(at, datetime)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def recorded(engine: Durable, name: str) -> list[sa.Row[tuple[int, object]]]:
    with engine.sa_engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(rate_grants_table.c.id, rate_grants_table.c.granted_at)
                .where(rate_grants_table.c.name == name)
                .order_by(rate_grants_table.c.id)
            )
        )


def test_batches_grow_and_unused_grants_are_given_back_on_close(sa_engine: sa.Engine) -> None:
    engine = Durable(sa_engine)
    engine.create_tables()
    engine.set_rate_limit("api", limit=100, per=HOUR)
    reserve = GrantReserve(engine.shell)
    try:
        assert reserve.take({"api": 1}) is None  # asks for one
        assert len(recorded(engine, "api")) == 1
        assert reserve.take({"api": 1}) is None  # used up in time: asks for two, keeps one
        assert len(recorded(engine, "api")) == 3
        assert reserve.take({"api": 1}) is None  # begins on the kept one: no ask
        assert len(recorded(engine, "api")) == 3
        assert reserve.take({"api": 1}) is None  # asks for four, keeps three
        assert len(recorded(engine, "api")) == 7
    finally:
        reserve.close()
    assert len(recorded(engine, "api")) == 4  # the three unused were given back


def test_a_batch_is_recorded_ahead_by_the_horizon_a_single_grant_is_not(
    sa_engine: sa.Engine,
) -> None:
    engine = Durable(sa_engine)
    engine.create_tables()
    engine.set_rate_limit("api", limit=100, per=HOUR)
    reserve = GrantReserve(engine.shell)
    try:
        before = engine.now
        assert reserve.take({"api": 1}) is None  # alone: recorded at its time
        between = engine.now
        assert reserve.take({"api": 1}) is None  # a batch of two: recorded ahead
        after = engine.now
        single, *batch = (aware(at) for _, at in recorded(engine, "api"))
    finally:
        reserve.close()
    slack = timedelta(milliseconds=5)  # the database's clock against the engine's
    assert before - slack <= single <= between + slack
    assert len(batch) == 2
    assert batch[0] == batch[1]
    assert between + horizon(HOUR) - slack <= batch[0] <= after + horizon(HOUR) + slack


def test_kept_grants_overtaken_by_the_horizon_are_given_back(sa_engine: sa.Engine) -> None:
    engine = Durable(sa_engine)
    engine.create_tables()
    per = timedelta(milliseconds=100)  # a horizon of 10 ms
    engine.set_rate_limit("api", limit=100, per=per)
    reserve = GrantReserve(engine.shell)
    try:
        assert reserve.take({"api": 1}) is None
        assert reserve.take({"api": 1}) is None  # two asked, one kept
        assert len(recorded(engine, "api")) == 3
        time.sleep(horizon(per).total_seconds() * 3)
        assert reserve.take({"api": 1}) is None  # the kept one is given back, one asked
        assert len(recorded(engine, "api")) == 3
    finally:
        reserve.close()
    assert len(recorded(engine, "api")) == 3  # nothing was left in hand


def test_a_batch_that_does_not_fit_falls_back_to_one_grant(sa_engine: sa.Engine) -> None:
    engine = Durable(sa_engine)
    engine.create_tables()
    engine.set_rate_limit("api", limit=6, per=HOUR)
    reserve = GrantReserve(engine.shell)
    begun = 0
    try:
        for _ in range(10):
            begun += reserve.take({"api": 1}) is None
    finally:
        reserve.close()
    assert begun == 6  # one reserve alone uses the whole limit, batches or not
    assert len(recorded(engine, "api")) == 6


def test_a_worker_leaves_exactly_the_grants_of_the_steps_that_ran(sa_engine: sa.Engine) -> None:
    engine = Durable(sa_engine)
    engine.create_tables()
    engine.set_rate_limit("reserve-api", limit=1000, per=HOUR)
    ran: list[int] = []
    durable("reserved").step(
        "call", lambda ctx: ran.append(ctx.input["n"]), rate_limit="reserve-api"
    )
    runs = [engine.start("reserved", {"n": n}).run_id for n in range(40)]
    with engine.worker(concurrency=2, poll_interval=0.02):
        deadline = time.monotonic() + 30
        while len(ran) < len(runs) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert sorted(ran) == list(range(40))
    assert len(recorded(engine, "reserve-api")) == 40
    drain(engine)  # nothing left to run
    assert len(recorded(engine, "reserve-api")) == 40


class _AskFailsOnce(GrantReserve):
    """A reserve whose next ask fails after its sweep, as a dropped connection would."""

    fail = False

    def _ask(self, key: Demand, count: int) -> Granted | Wait:
        if self.fail:
            self.fail = False
            msg = "the database went away"
            raise OSError(msg)
        return super()._ask(key, count)


def test_a_failed_ask_never_gives_the_same_grants_back_twice(sa_engine: sa.Engine) -> None:
    engine = Durable(sa_engine)
    engine.create_tables()
    per = timedelta(milliseconds=100)  # a horizon of 10 ms
    engine.set_rate_limit("api", limit=100, per=per)
    reserve = _AskFailsOnce(engine.shell)
    begun = 0
    try:
        begun += reserve.take({"api": 1}) is None
        begun += reserve.take({"api": 1}) is None  # two asked, one kept
        time.sleep(horizon(per).total_seconds() * 3)
        reserve.fail = True
        with pytest.raises(OSError, match="went away"):
            reserve.take({"api": 1})  # the kept one is given back, then the ask fails
        assert len(recorded(engine, "api")) == begun
        begun += reserve.take({"api": 1}) is None  # nothing is given back again
    finally:
        reserve.close()  # gives back what it kept
    assert begun == 3
    assert len(recorded(engine, "api")) == begun


PER = timedelta(milliseconds=100)
"""A window whose horizon, 10 ms, a test can wait out."""


def _one_kept_past_its_horizon(sa_engine: sa.Engine, clock: FakeClock) -> GrantReserve:
    """A reserve holding one grant of ``api`` kept three horizons ago (real time)."""
    engine = Durable(sa_engine, clock=clock)
    engine.create_tables()
    engine.set_rate_limit("api", limit=100, per=PER)
    reserve = GrantReserve(engine.shell)
    assert reserve.take({"api": 1}) is None
    assert reserve.take({"api": 1}) is None  # two asked, one kept
    time.sleep(horizon(PER).total_seconds() * 3)
    return reserve


def test_on_postgresql_kept_grants_expire_whatever_the_engine_clock_says(
    pg_engine: sa.Engine,
) -> None:
    clock = FakeClock()  # frozen: only the database's clock dates grants
    reserve = _one_kept_past_its_horizon(pg_engine, clock)
    try:
        assert reserve.take({"api": 1}) is None  # given back and asked again
    finally:
        reserve.close()
    times = [at for _, at in recorded(Durable(pg_engine), "api")]
    assert len(times) == 3
    assert len(set(times)) == 3  # alone, the batch's one used, alone again


def test_on_sqlite_kept_grants_expire_on_the_engine_clock(sqlite_engine: sa.Engine) -> None:
    clock = FakeClock()  # SQLite's grants are dated by the engine's clock, which stood still
    reserve = _one_kept_past_its_horizon(sqlite_engine, clock)
    engine = Durable(sqlite_engine)
    try:
        assert reserve.take({"api": 1}) is None  # on the kept one
        assert len(recorded(engine, "api")) == 3
        assert reserve.take({"api": 1}) is None  # used up in time: asks for four
        assert len(recorded(engine, "api")) == 7
        clock.advance(horizon(PER))
        reserve.sweep()
        assert len(recorded(engine, "api")) == 4  # the three kept past the horizon
    finally:
        reserve.close()


def test_a_running_worker_gives_back_what_it_kept_within_moments(sa_engine: sa.Engine) -> None:
    engine = Durable(sa_engine)
    engine.create_tables()
    engine.set_rate_limit("sweep-api", limit=1000, per=HOUR)
    ran: list[int] = []
    durable("swept").step("call", lambda ctx: ran.append(ctx.input["n"]), rate_limit="sweep-api")
    for n in range(40):
        engine.start("swept", {"n": n})
    with engine.worker(concurrency=2, poll_interval=0.02):
        deadline = time.monotonic() + 30
        while len(ran) < 40 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(ran) == 40
        # the worker still runs: its sweep gives back the grants it kept, past their horizon
        deadline = time.monotonic() + 5
        while len(recorded(engine, "sweep-api")) != 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(recorded(engine, "sweep-api")) == 40


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    limit=st.integers(1, 12),
    per_ms=st.sampled_from([20, 100, 1000]),
    steps=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 12)), min_size=1, max_size=120),
)
def test_reserves_never_let_more_than_the_limit_begin_in_a_window(
    sqlite_engine: sa.Engine, limit: int, per_ms: int, steps: list[tuple[int, int]]
) -> None:
    """The real reserves on a real database, on a clock that jumps by quarters of the horizon."""
    clock = FakeClock()
    engine = Durable(sqlite_engine, clock=clock)
    engine.create_tables()
    name = f"prop-{uuid.uuid4().hex[:8]}"
    per = timedelta(milliseconds=per_ms)
    engine.set_rate_limit(name, limit=limit, per=per)
    reserves = [GrantReserve(engine.shell) for _ in range(3)]
    begins: list[datetime] = []
    try:
        for worker, quarters in steps:
            clock.advance(horizon(per) / 4 * quarters)
            if reserves[worker].take({name: 1}) is None:
                begins.append(clock())
    finally:
        for reserve in reserves:
            reserve.close()
    ordered = sorted(begins)
    most = max(
        (sum(1 for t in ordered[i:] if t < s + per) for i, s in enumerate(ordered)), default=0
    )
    assert most <= limit
    # no unused grant is left behind (asks delete the grants that left the window, too)
    assert len(recorded(engine, name)) <= len(begins)
