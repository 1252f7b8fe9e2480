"""An injected clock drives every timer: sleeps, retry backoff and signal timeouts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from durable_sa import Durable, DurableContext, durable
from durable_sa.testing import drain, pending_jobs
from tests.integration.helpers import get_run

if TYPE_CHECKING:
    import sqlalchemy as sa


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def timed(sa_engine: sa.Engine, clock: FakeClock) -> Durable:
    engine = Durable(sa_engine, clock=clock)
    engine.create_tables()
    return engine


def test_sleep_wakes_when_the_clock_moves(timed: Durable, clock: FakeClock) -> None:
    durable("nap").sleep("nap", timedelta(minutes=10)).step("after", lambda ctx: "up")
    run_id = timed.start("nap").run_id
    drain(timed)
    run = get_run(timed, run_id)
    assert run.wake_at == clock.now + timedelta(minutes=10)
    clock.advance(minutes=9)
    assert drain(timed) == 0
    clock.advance(minutes=1)
    assert drain(timed) == 1
    assert get_run(timed, run_id).status == "completed"


def test_retry_backoff_follows_the_clock(timed: Durable, clock: FakeClock) -> None:
    attempts: list[datetime] = []

    def flaky(ctx: DurableContext) -> str:
        attempts.append(clock.now)
        if ctx.attempt < 3:
            raise RuntimeError("again")  # noqa: EM101
        return "done"

    durable("backoff").step("s", flaky, retry_backoff="linear")
    run_id = timed.start("backoff").run_id
    drain(timed)
    clock.advance(seconds=4.9)
    assert drain(timed) == 0
    clock.advance(seconds=0.1)  # linear: 5 s after attempt 1
    assert drain(timed) == 1
    clock.advance(seconds=10)  # 10 s after attempt 2
    drain(timed)
    assert get_run(timed, run_id).status == "completed"
    assert [a - attempts[0] for a in attempts] == [
        timedelta(0),
        timedelta(seconds=5),
        timedelta(seconds=15),
    ]


def test_exponential_backoff_is_two_to_the_attempt_plus_jitter(
    timed: Durable, clock: FakeClock
) -> None:
    def fail(ctx: DurableContext) -> None:
        raise RuntimeError("x")  # noqa: EM101

    durable("expo").step("s", fail, max_retries=2)
    run_id = timed.start("expo").run_id
    drain(timed)
    clock.advance(seconds=1.99)
    assert drain(timed) == 0  # 2**1 s plus jitter in [0, 1)
    clock.advance(seconds=1.01)
    assert drain(timed) == 1
    assert get_run(timed, run_id).status == "failed"


def test_signal_timeout_follows_the_clock(timed: Durable, clock: FakeClock) -> None:
    durable("deadline").wait_for_signal("gate", "go", timeout=timedelta(hours=1))
    run_id = timed.start("deadline").run_id
    drain(timed)
    assert pending_jobs(timed) == 1
    clock.advance(minutes=59)
    assert drain(timed) == 0
    clock.advance(minutes=1)
    assert drain(timed) == 1
    assert get_run(timed, run_id).status == "failed"


def test_drain_refuses_a_naive_now(engine: Durable) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        drain(engine, now=datetime(2030, 1, 1))  # noqa: DTZ001 - the point of the test


def test_timestamps_are_aware_utc(timed: Durable, clock: FakeClock) -> None:
    durable("stamps").step("a", lambda ctx: 1)
    run_id = timed.start("stamps").run_id
    drain(timed)
    run = get_run(timed, run_id)
    assert run.created_at == clock.now
    assert run.updated_at == clock.now
    assert run.created_at.utcoffset() == timedelta(0)
