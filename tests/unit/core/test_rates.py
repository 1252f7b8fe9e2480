"""The pure rate-limit decision: exact windows, honest waits, what a step asks for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from durable_sa.core.definition import durable
from durable_sa.core.rates import (
    RateLimit,
    decide_grant,
    must_leave,
    rate_demand,
    window_start,
)
from durable_sa.core.steps import ParallelEntry

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RECHECK = timedelta(seconds=5)


def grant(
    limit: RateLimit, granted: list[datetime], now: datetime, wanted: int = 1
) -> timedelta | None:
    """Ask as the shell does; record the grants; the wait (``None``: granted)."""
    in_window = sorted(t for t in granted if t > window_start(limit, now))
    over = must_leave(limit, wanted=wanted, in_window=len(in_window))
    wait = decide_grant(
        limit.name,
        limit,
        wanted=wanted,
        in_window=len(in_window),
        oldest=in_window[:over],
        now=now,
        unset_recheck=RECHECK,
    )
    if wait is None:
        granted.extend([now] * wanted)
        return None
    return wait.delay


def most_in_a_window(times: list[datetime], per: timedelta) -> int:
    ordered = sorted(times)
    most, first = 0, 0
    for last, moment in enumerate(ordered):
        while moment - ordered[first] >= per:
            first += 1
        most = max(most, last - first + 1)
    return most


@settings(max_examples=300, deadline=None)
@given(
    limit=st.integers(1, 6),
    per_ms=st.integers(1, 5000),
    asks=st.lists(st.tuples(st.integers(0, 3000), st.integers(1, 3)), max_size=60),
)
def test_no_window_ever_holds_more_than_the_limit(
    limit: int, per_ms: int, asks: list[tuple[int, int]]
) -> None:
    rate = RateLimit("api", limit, timedelta(milliseconds=per_ms))
    granted: list[datetime] = []
    now = T0
    for gap_ms, wanted in asks:
        now += timedelta(milliseconds=gap_ms)
        grant(rate, granted, now, wanted)
    assert most_in_a_window(granted, rate.per) <= limit


@settings(max_examples=300, deadline=None)
@given(
    limit=st.integers(1, 6),
    per_ms=st.integers(1, 5000),
    gaps=st.lists(st.integers(0, 3000), max_size=40),
)
def test_a_refused_step_waits_exactly_until_it_may_begin(
    limit: int, per_ms: int, gaps: list[int]
) -> None:
    rate = RateLimit("api", limit, timedelta(milliseconds=per_ms))
    granted: list[datetime] = []
    now = T0
    for gap in gaps:
        now += timedelta(milliseconds=gap)
        delay = grant(rate, granted, now)
        if delay is None:
            continue
        assert delay > timedelta(0)
        before = list(granted)
        # A moment earlier it would still be refused; at the delay it is granted.
        assert grant(rate, before, now + delay - timedelta(microseconds=1)) is not None
        assert grant(rate, granted, now + delay) is None
        now += delay


def test_a_limit_not_set_or_too_small_is_a_mistake_with_a_fix() -> None:
    unset = decide_grant(
        "api", None, wanted=1, in_window=0, oldest=[], now=T0, unset_recheck=RECHECK
    )
    assert unset is not None
    assert unset.misconfigured
    assert unset.delay == RECHECK
    assert "engine.set_rate_limit('api'" in unset.reason
    small = decide_grant(
        "api",
        RateLimit("api", 1, timedelta(seconds=1)),
        wanted=2,
        in_window=0,
        oldest=[],
        now=T0,
        unset_recheck=RECHECK,
    )
    assert small is not None
    assert small.misconfigured
    assert "raise the limit" in small.reason
    reached = decide_grant(
        "api",
        RateLimit("api", 1, timedelta(seconds=1)),
        wanted=1,
        in_window=1,
        oldest=[T0],
        now=T0 + timedelta(milliseconds=400),
        unset_recheck=RECHECK,
    )
    assert reached is not None
    assert not reached.misconfigured
    assert reached.delay == timedelta(milliseconds=600)


def test_what_each_step_asks_for() -> None:
    wf = (
        durable("demand")
        .step("plain", lambda ctx: 1)
        .step("limited", lambda ctx: 1, rate_limit="api")
        .parallel(
            "fan",
            [
                ("a", lambda ctx: 1),
                ("b", lambda ctx: 1),
                ParallelEntry("c", lambda ctx: 1, rate_limit="other"),
            ],
            rate_limit="api",
        )
        .parallel(
            "free", [("x", lambda ctx: 1), ParallelEntry("y", lambda ctx: 1, rate_limit="api")]
        )
        .sleep("nap", timedelta(seconds=1))
    )
    plain, limited, fan, free, nap = wf.steps
    assert rate_demand(plain) == {}
    assert rate_demand(limited) == {"api": 1}
    assert rate_demand(fan) == {"api": 2, "other": 1}
    assert rate_demand(fan, frozenset({"a", "c"})) == {"api": 1}
    assert rate_demand(free) == {"api": 1}
    assert rate_demand(nap) == {}


def test_rate_limit_is_not_part_of_the_fingerprint() -> None:
    one = durable("fp-a").step("s", lambda ctx: 1)
    two = durable("fp-b").step("s", lambda ctx: 1, rate_limit="api")
    assert one.fingerprint == two.fingerprint
