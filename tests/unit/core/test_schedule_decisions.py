"""The pure parts of schedules: cron ticks across DST in several zones, overlap, catch-up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from durable_sa.core.schedules import (
    LATE_GRACE,
    Cron,
    Overlap,
    ScheduleState,
    checked_overlap,
    checked_window,
    decide_fire,
    fire_key,
    read_fire_key,
)
from durable_sa.errors import InvalidArgumentError

ZONES = ["Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]
EXPRESSIONS = ["*/15 * * * *", "30 2 * * *", "0 * * * *", "0 1-3 * * *", "45 1 * * 0", "0 0 1 * *"]

anywhere = st.datetimes(  # hypothesis takes naive bounds
    min_value=datetime(2029, 1, 1),  # noqa: DTZ001
    max_value=datetime(2032, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)


def transitions(name: str, year: int) -> list[datetime]:
    """The UTC hours in ``year`` after which zone ``name`` changes its offset."""
    zone = ZoneInfo(name)
    found = []
    hour = datetime(year, 1, 1, tzinfo=UTC)
    while hour.year == year:
        later = hour + timedelta(hours=1)
        if hour.astimezone(zone).utcoffset() != later.astimezone(zone).utcoffset():
            found.append(hour)
        hour = later
    return found


CHANGES = {name: transitions(name, 2030) + transitions(name, 2031) for name in ZONES}


def near_a_change(name: str) -> st.SearchStrategy[datetime]:
    """Instants up to two days before one of zone ``name``'s offset changes."""
    if not CHANGES[name]:  # Asia/Kolkata, UTC: no daylight saving
        return anywhere
    return st.builds(
        lambda moment, minutes: moment - timedelta(minutes=minutes),
        st.sampled_from(CHANGES[name]),
        st.integers(min_value=0, max_value=2 * 24 * 60),
    )


zoned_instants = st.sampled_from(ZONES).flatmap(
    lambda name: st.tuples(st.just(name), st.one_of(near_a_change(name), anywhere))
)
"""A zone, and an instant a little before one of its daylight-saving changes, or anywhere."""


# ── parsing ──────────────────────────────────────────────────────────────────


def test_five_and_six_fields_with_seconds_first() -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    assert Cron.parse("*/20 * * * * *").ticks(start, start + timedelta(minutes=1), 5) == [
        start + timedelta(seconds=20),
        start + timedelta(seconds=40),
        start + timedelta(minutes=1),
    ]
    assert Cron.parse("0 */6 * * *").next_after(start) == start + timedelta(hours=6)


@pytest.mark.parametrize("expression", ["* * * *", "* * * * * * *", "61 * * * *", "x", ""])
def test_bad_expressions_are_refused_with_what_to_write(expression: str) -> None:
    with pytest.raises(InvalidArgumentError, match="cron"):
        Cron.parse(expression)


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="IANA"):
        Cron.parse("* * * * *", "Mars/Olympus")


def test_overlap_and_window_are_checked() -> None:
    assert checked_overlap("buffer_one") is Overlap.BUFFER_ONE
    with pytest.raises(InvalidArgumentError, match="skip"):
        checked_overlap("queue")
    assert checked_window(None) is None
    with pytest.raises(InvalidArgumentError, match="catchup_window"):
        checked_window(timedelta(seconds=-1))
    with pytest.raises(InvalidArgumentError, match="catchup_window"):
        checked_window(60)


def test_fire_key_is_the_utc_iso_time() -> None:
    tick = datetime(2030, 3, 31, 3, 0, tzinfo=ZoneInfo("Europe/Paris"))
    assert fire_key("nightly", tick) == "schedule:nightly:2030-03-31T01:00:00+00:00"


@given(
    name=st.text(min_size=1),
    tick=st.datetimes(timezones=st.just(UTC))
    | st.just(datetime(2030, 3, 31, 3, 0, tzinfo=ZoneInfo("Europe/Paris"))),
)
def test_a_fire_key_reads_back_as_its_schedule_and_tick(name: str, tick: datetime) -> None:
    assert read_fire_key(fire_key(name, tick)) == (name, tick)


@pytest.mark.parametrize(
    "key",
    [
        None,
        "",
        "order-7",
        "schedule:nightly",
        "schedule::2030-03-31T01:00:00+00:00",
        "schedule:nightly:2030-03-31T01:00:00",  # no offset: not one fire_key makes
        "schedule:nightly:2030-13-31T01:00:00+00:00",  # no 13th month
        "nightly:2030-03-31T01:00:00+00:00",
        "schedule:nightly:2030-03-31T01:00:00+00:00\n",
    ],
)
def test_other_keys_are_not_fire_keys(key: str | None) -> None:
    assert read_fire_key(key) is None


# ── daylight saving ──────────────────────────────────────────────────────────


def test_a_skipped_local_time_fires_once_when_the_clocks_jump() -> None:
    cron = Cron.parse("30 2 * * *", "Europe/Paris")  # 02:30 does not exist on 2030-03-31
    tick = cron.next_after(datetime(2030, 3, 30, 12, tzinfo=UTC))
    assert tick == datetime(2030, 3, 31, 1, 0, tzinfo=UTC)  # 03:00 CEST, the jump
    assert cron.next_after(tick) == datetime(2030, 4, 1, 0, 30, tzinfo=UTC)


def test_every_tick_of_a_skipped_hour_makes_one_fire() -> None:
    cron = Cron.parse("*/15 * * * *", "America/New_York")  # 02:00-02:59 skipped 2030-03-10
    start = datetime(2030, 3, 10, 6, 0, tzinfo=UTC)  # 01:00 EST
    ticks = cron.ticks(start, start + timedelta(hours=2), 20)
    local = [t.astimezone(ZoneInfo("America/New_York")).strftime("%H:%M") for t in ticks]
    assert local == ["01:15", "01:30", "01:45", "03:00", "03:15", "03:30", "03:45", "04:00"]


def test_a_repeated_hour_fires_once() -> None:
    cron = Cron.parse("30 1 * * *", "America/New_York")  # 01:30 happens twice on 2030-11-03
    first = cron.next_after(datetime(2030, 11, 3, 0, 0, tzinfo=UTC))
    assert first == datetime(2030, 11, 3, 5, 30, tzinfo=UTC)  # 01:30 EDT
    assert cron.next_after(first) == datetime(2030, 11, 4, 6, 30, tzinfo=UTC)  # next day EST


def test_lord_howe_moves_by_half_an_hour() -> None:
    cron = Cron.parse("*/10 * * * *", "Australia/Lord_Howe")  # 02:00 -> 02:30 on 2030-10-06
    zone = ZoneInfo("Australia/Lord_Howe")
    start = datetime(2030, 10, 6, 1, 40, tzinfo=zone)
    ticks = cron.ticks(start, start + timedelta(hours=2), 10)
    local = [t.astimezone(zone).strftime("%H:%M") for t in ticks]
    assert local[:5] == ["01:50", "02:30", "02:40", "02:50", "03:00"]


@settings(max_examples=150, deadline=None)
@given(zoned=zoned_instants, expression=st.sampled_from(EXPRESSIONS))
def test_ticks_increase_and_match_the_local_clock(
    zoned: tuple[str, datetime], expression: str
) -> None:
    """Strictly increasing, each wall time once, each a match or the end of a DST gap."""
    zone, after = zoned
    cron = Cron.parse(expression, zone)
    tz = ZoneInfo(zone)
    ticks = cron.ticks(after, after + timedelta(days=3), 400)
    assert ticks == sorted(set(ticks))
    assert all(t > after for t in ticks)
    wall = [t.astimezone(tz).replace(tzinfo=None) for t in ticks]
    # Each wall-clock minute fires at most once (a repeated hour does not fire twice).
    assert len(wall) == len(set(wall))
    # Every tick is the expression's match on the local clock, or the end of a DST gap.
    for tick, local in zip(ticks, wall, strict=True):
        if croniter.match(expression, local):
            continue
        before = (tick - timedelta(seconds=1)).astimezone(tz).utcoffset()
        assert before != tick.astimezone(tz).utcoffset(), f"{local} fired without matching"


@settings(max_examples=100, deadline=None)
@given(zoned=zoned_instants, expression=st.sampled_from(EXPRESSIONS))
def test_next_after_chains_like_ticks(zoned: tuple[str, datetime], expression: str) -> None:
    zone, after = zoned
    cron = Cron.parse(expression, zone)
    tick = cron.next_after(after)
    assert tick is not None
    assert tick > after
    # Nothing fires in between: asking from any instant before the tick gives the tick.
    middle = after + (tick - after) / 2
    assert cron.next_after(middle) == tick


@settings(max_examples=15, deadline=None)
@given(zoned=zoned_instants, expression=st.sampled_from(EXPRESSIONS))
def test_no_matching_wall_time_is_missed(zoned: tuple[str, datetime], expression: str) -> None:
    """Every minute whose local time matches (its first occurrence) is a tick."""
    zone, after = zoned
    cron = Cron.parse(expression, zone)
    tz = ZoneInfo(zone)
    start = after.replace(second=0, microsecond=0)
    ticks = set(cron.ticks(start, start + timedelta(days=1), 2000))
    for minute in range(1, 24 * 60 + 1):
        instant = start + timedelta(minutes=minute)
        local = instant.astimezone(tz)
        if local.fold == 0 and croniter.match(expression, local.replace(tzinfo=None)):
            assert instant in ticks, f"{local} matches but did not fire"


# ── overlap and catch-up ─────────────────────────────────────────────────────

EVERY_MINUTE = Cron.parse("* * * * *")
T0 = datetime(2030, 1, 1, tzinfo=UTC)


def state(**changes: object) -> ScheduleState:
    base: dict[str, object] = {
        "cron": EVERY_MINUTE,
        "overlap": Overlap.SKIP,
        "catchup_window": None,
        "next_fire_at": T0,
    }
    return ScheduleState(**(base | changes))  # type: ignore[arg-type]


def test_an_on_time_tick_starts() -> None:
    plan = decide_fire(state(), T0 + timedelta(seconds=1))
    assert plan.starts == (T0,)
    assert plan.next_fire_at == T0 + timedelta(minutes=1)


def test_nothing_due_starts_nothing_and_keeps_the_next_tick() -> None:
    plan = decide_fire(state(), T0 - timedelta(seconds=1))
    assert plan.starts == ()
    assert plan.next_fire_at == T0


def test_after_downtime_no_missed_tick_starts_by_default() -> None:
    now = T0 + timedelta(hours=5, seconds=30)
    plan = decide_fire(state(), now)
    assert plan.starts == ()
    assert plan.missed
    assert plan.next_fire_at == T0 + timedelta(hours=5, minutes=1)


def test_a_tick_a_few_seconds_late_starts_even_with_a_zero_window() -> None:
    plan = decide_fire(state(catchup_window=timedelta(0)), T0 + timedelta(seconds=3))
    assert plan.starts == (T0,)


def test_a_catchup_window_starts_the_ticks_within_it() -> None:
    now = T0 + timedelta(hours=5, seconds=30)
    plan = decide_fire(state(overlap=Overlap.ALLOW, catchup_window=timedelta(minutes=3)), now)
    assert plan.starts == tuple(T0 + timedelta(hours=5, minutes=m) for m in (-2, -1, 0))
    assert plan.next_fire_at == T0 + timedelta(hours=5, minutes=1)


def test_skip_starts_nothing_while_the_last_run_is_active() -> None:
    plan = decide_fire(state(last_run_active=True), T0)
    assert plan.starts == ()
    assert plan.skipped == (T0,)
    assert plan.next_fire_at == T0 + timedelta(minutes=1)


def test_buffer_one_keeps_one_tick_and_starts_it_when_the_run_ends() -> None:
    busy = decide_fire(state(overlap=Overlap.BUFFER_ONE, last_run_active=True), T0)
    assert (busy.starts, busy.buffered_at) == ((), T0)
    later = decide_fire(
        state(
            overlap=Overlap.BUFFER_ONE,
            last_run_active=True,
            buffered_at=T0,
            next_fire_at=T0 + timedelta(minutes=1),
        ),
        T0 + timedelta(minutes=1),
    )
    assert later.buffered_at == T0  # still one: the second is dropped
    assert later.skipped == (T0 + timedelta(minutes=1),)
    ended = decide_fire(
        state(overlap=Overlap.BUFFER_ONE, buffered_at=T0, next_fire_at=T0 + timedelta(minutes=2)),
        T0 + timedelta(minutes=1, seconds=10),
    )
    assert ended.starts == (T0,)
    assert ended.buffered_at is None


def test_cancel_previous_cancels_the_active_run_and_starts_the_latest_tick() -> None:
    plan = decide_fire(
        state(
            overlap=Overlap.CANCEL_PREVIOUS,
            last_run_active=True,
            catchup_window=timedelta(minutes=5),
        ),
        T0 + timedelta(minutes=2),
    )
    assert plan.cancel_last
    assert plan.starts == (T0 + timedelta(minutes=2),)
    assert plan.skipped == (T0, T0 + timedelta(minutes=1))


@settings(max_examples=200, deadline=None)
@given(
    overlap=st.sampled_from(list(Overlap)),
    active=st.booleans(),
    buffered=st.booleans(),
    late=st.integers(min_value=0, max_value=600),
    window=st.one_of(st.none(), st.integers(min_value=0, max_value=400)),
)
def test_fire_decisions_keep_their_promises(
    overlap: Overlap, active: bool, buffered: bool, late: int, window: int | None
) -> None:
    s = state(
        overlap=overlap,
        last_run_active=active,
        buffered_at=T0 - timedelta(minutes=1) if buffered else None,
        catchup_window=None if window is None else timedelta(seconds=window),
    )
    now = T0 + timedelta(seconds=late)
    plan = decide_fire(s, now)
    limit = max(LATE_GRACE, timedelta(seconds=window or 0))
    fresh = [t for t in plan.starts if t != s.buffered_at]
    # Only ticks within the window start, never one in the future, each once, in order.
    assert all(now - limit <= t <= now for t in fresh)
    assert list(plan.starts) == sorted(set(plan.starts))
    # The next tick is after everything decided, and nothing due is left behind.
    assert plan.next_fire_at is not None
    assert plan.next_fire_at > now
    assert all(t < plan.next_fire_at for t in (*plan.starts, *plan.skipped))
    # Overlap: with an active run, skip and buffer_one start nothing new.
    if active and overlap in {Overlap.SKIP, Overlap.BUFFER_ONE}:
        assert fresh == []
    if not active and buffered:
        assert plan.starts[:1] == (s.buffered_at,)
    # At most one tick waits; a buffered tick is only ever kept by buffer_one.
    if plan.buffered_at is not None:
        assert overlap is Overlap.BUFFER_ONE or plan.buffered_at == s.buffered_at
    assert plan.cancel_last <= (active and overlap is Overlap.CANCEL_PREVIOUS)
    if overlap is not Overlap.ALLOW:
        assert len(fresh) <= 1
