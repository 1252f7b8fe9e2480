"""Grants kept in hand (:mod:`durable_sa.core.grant_batches`): the limit stays exact.

The property: workers that ask in batches, keep what they did not use and let later
steps begin on it before the horizon, never let more than ``limit`` steps *begin* in any
window of length ``per``. It is checked on a model of the database (the rule of
:mod:`durable_sa.core.rates` over grants recorded ahead by the horizon) with several
workers, random asks, database clocks read after the worker's, and steps that begin on
kept grants at random times before their horizon.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from durable_sa.core.grant_batches import (
    MAX_BATCH,
    MAX_HORIZON,
    Batch,
    Granted,
    LimitRoom,
    demand_key,
    emptied,
    granted,
    horizon,
    leftover,
    refused,
    use,
)
from durable_sa.core.rates import RateLimit, decide_grant

T0 = datetime(2026, 1, 1, tzinfo=UTC)
KEY = demand_key({"api": 1})


def room(limit: int, in_window: int, at: datetime, per: timedelta, count: int = 2) -> LimitRoom:
    """What the database answers: a batch (``count`` > 1) is recorded ahead."""
    return LimitRoom("api", limit, per, in_window, at + horizon(per) if count > 1 else at)


def test_the_horizon_is_a_tenth_of_the_window_at_most_100_ms() -> None:
    assert horizon(timedelta(milliseconds=500)) == timedelta(milliseconds=50)
    assert horizon(timedelta(seconds=1)) == MAX_HORIZON == timedelta(milliseconds=100)
    assert horizon(timedelta(hours=1)) == MAX_HORIZON
    assert horizon(timedelta(milliseconds=1)) == timedelta(microseconds=100)


def test_a_batch_used_up_in_time_doubles_the_next_ask_within_its_room() -> None:
    per = timedelta(seconds=1)
    batch = granted(Batch(), Granted(1, (room(100, 0, T0, per, 1),)), KEY, asked_at=0.0)
    assert (batch.left, batch.next_ask) == (0, 2)  # the one grant was used at once
    batch = granted(batch, Granted(2, (room(100, 1, T0, per),)), KEY, asked_at=0.0)
    assert batch.left == 1
    after = use(batch, 0.001)
    assert after is not None
    assert (after.left, after.next_ask) == (0, 4)
    # little room left: the next ask is at most half of it
    small = granted(Batch(next_ask=8), Granted(8, (room(20, 6, T0, per),)), KEY, asked_at=0.0)
    drained = small
    for _ in range(7):
        drained = use(drained, 0.0) or drained
    assert drained.left == 0
    assert drained.next_ask == (20 - 6 - 8) // 2


def test_kept_grants_expire_at_the_horizon_and_are_given_back() -> None:
    per = timedelta(seconds=1)
    batch = granted(Batch(next_ask=4), Granted(4, (room(100, 0, T0, per),)), KEY, asked_at=0.0)
    assert batch.left == 3
    late = horizon(per).total_seconds()
    assert use(batch, late) is None
    assert leftover(batch, late) == 3
    assert leftover(batch, late - 1e-6) == 0
    after = emptied(batch)
    assert (after.left, after.next_ask) == (0, 1)  # only one of four was used


def test_a_refusal_asks_for_one_next() -> None:
    assert refused(Batch(left=0, next_ask=16, room=50)).next_ask == 1


def test_the_batch_never_grows_past_its_cap() -> None:
    per = timedelta(hours=1)
    batch = Batch(next_ask=MAX_BATCH)
    batch = granted(batch, Granted(MAX_BATCH, (room(10**6, 0, T0, per),)), KEY, asked_at=0.0)
    while batch.left:
        batch = use(batch, 0.0) or batch
    assert batch.next_ask == MAX_BATCH


@attrs.define
class Model:
    """The grants table and the grant rule, as the database applies them."""

    limit: RateLimit
    records: list[datetime] = attrs.field(factory=list)

    def ask(self, count: int, at: datetime) -> Granted | None:
        in_window = [r for r in self.records if r > at - self.limit.per]
        wait = decide_grant(
            "api",
            self.limit,
            wanted=count,
            in_window=len(in_window),
            oldest=sorted(in_window),
            now=at,
            unset_recheck=timedelta(seconds=5),
        )
        if wait is not None:
            return None
        the_room = room(self.limit.limit, len(in_window), at, self.limit.per, count)
        self.records.extend([the_room.recorded_at] * count)
        return Granted(count, (the_room,))

    def give_back(self, batch: Batch) -> None:
        for _ in range(batch.left):
            self.records.remove(batch.limits[0].recorded_at)


def seconds(at: datetime) -> float:
    """The reserve's clock: seconds, running with the one grants are dated by."""
    return (at - T0).total_seconds()


def most_in_a_window(times: list[datetime], per: timedelta) -> int:
    ordered = sorted(times)
    return max(
        (sum(1 for t in ordered[i:] if t < start + per) for i, start in enumerate(ordered)),
        default=0,
    )


step = st.tuples(
    st.integers(0, 2),  # which worker
    st.integers(0, 12),  # quarters of the horizon since the last step
    st.integers(0, 2),  # the database's clock is read this many quarters after the worker's
)


@settings(max_examples=300, deadline=None)
@given(
    limit=st.integers(1, 12),
    per_ms=st.sampled_from([1, 20, 100, 1000, 5000]),
    steps=st.lists(step, min_size=1, max_size=150),
)
def test_no_window_ever_holds_more_than_the_limit_of_begins(
    limit: int, per_ms: int, steps: list[tuple[int, int, int]]
) -> None:
    per = timedelta(milliseconds=per_ms)
    model = Model(RateLimit("api", limit, per))
    batches = [Batch() for _ in range(3)]
    begins: list[datetime] = []
    now = T0
    quarter = horizon(per) / 4
    for worker, gap, lag in steps:
        now += quarter * gap
        batch = batches[worker]
        kept = use(batch, seconds(now))
        if kept is not None:  # a step begins on a grant in hand
            batches[worker] = kept
            begins.append(now)
            continue
        if leftover(batch, seconds(now)):
            model.give_back(batch)
            batch = emptied(batch)
        at = now + quarter * lag
        answer = model.ask(batch.next_ask, at)
        if answer is None and batch.next_ask > 1:
            answer = model.ask(1, at)
        if answer is None:
            batches[worker] = refused(batch)
            continue
        batches[worker] = granted(batch, answer, KEY, asked_at=seconds(now))
        begins.append(at)  # the asking step begins once the answer is back
    assert most_in_a_window(begins, per) <= limit
    in_hand = sum(batch.left for batch in batches)
    assert len(model.records) == len(begins) + in_hand
