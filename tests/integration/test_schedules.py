"""Schedules on both databases: firing, keys, overlap, catch-up, pause, backfill, races."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from durable_sa import Durable, DurableContext, RunStatus, WorkflowRun, durable
from durable_sa.errors import (
    DefinitionError,
    InvalidArgumentError,
    ScheduleNotFoundError,
    WorkflowNotRegisteredError,
)
from durable_sa.testing import FakeClock, drain

if TYPE_CHECKING:
    from durable_sa.core.schedules import FiredTick

T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def eng(sa_engine: sa.Engine, clock: FakeClock) -> Durable:
    engine = Durable(sa_engine, clock=clock)
    engine.create_tables()
    durable("report").step("echo", lambda ctx: dict(ctx.input))
    durable("waits").wait_for_signal("go", "go")
    return engine


def runs(engine: Durable) -> list[WorkflowRun]:
    with sa.orm.Session(engine.sa_engine) as session:
        found = list(session.scalars(sa.select(WorkflowRun).order_by(WorkflowRun.id)))
        session.expunge_all()
        return found


def fire_at(engine: Durable, clock: FakeClock, moment: datetime) -> list[FiredTick]:
    clock.set(moment)
    return engine.fire_schedules()


def test_a_due_tick_starts_one_run_with_the_ticks_key(eng: Durable, clock: FakeClock) -> None:
    saved = eng.schedule("hourly", "report", cron="0 * * * *", input={"n": 1})
    assert saved.next_fire_at == T0 + timedelta(hours=1)
    assert eng.fire_schedules() == []  # not due yet
    fired = fire_at(eng, clock, T0 + timedelta(hours=1, seconds=2))
    assert [(f.fire_time, f.created) for f in fired] == [(T0 + timedelta(hours=1), True)]
    assert eng.fire_schedules() == []  # the same tick never fires twice
    [run] = runs(eng)
    assert run.idempotency_key == "schedule:hourly:2030-01-01T01:00:00+00:00"
    assert run.input == {"n": 1}
    drain(eng)
    assert eng.status(run.id).status is RunStatus.COMPLETED
    [info] = eng.schedules()
    assert (info.last_run_id, info.last_fired_at) == (run.id, T0 + timedelta(hours=1))
    assert info.next_fire_at == T0 + timedelta(hours=2)


def test_six_fields_and_a_time_zone(eng: Durable, clock: FakeClock) -> None:
    eng.schedule("paris", "report", cron="0 30 9 * * *", timezone="Europe/Paris")
    fired = fire_at(eng, clock, datetime(2030, 1, 1, 8, 30, tzinfo=UTC))  # 09:30 CET
    assert [f.fire_time for f in fired] == [datetime(2030, 1, 1, 8, 30, tzinfo=UTC)]


def test_an_input_callable_gets_the_fire_time(eng: Durable, clock: FakeClock) -> None:
    info = eng.schedule("made", "report", cron="*/5 * * * *", input=lambda t: {"at": t.isoformat()})
    assert info.input_callable
    assert info.input is None
    [fired] = fire_at(eng, clock, T0 + timedelta(minutes=5))
    [run] = runs(eng)
    assert run.input == {"at": "2030-01-01T00:05:00+00:00"}
    assert fired.run_id == run.id


def test_a_failing_input_callable_is_recorded_and_passed_over(
    eng: Durable, clock: FakeClock
) -> None:
    def broken(_t: datetime) -> dict[str, Any]:
        msg = "no data today"
        raise RuntimeError(msg)

    eng.schedule("broken", "report", cron="*/5 * * * *", input=broken)
    eng.schedule("fine", "report", cron="*/5 * * * *")
    fired = fire_at(eng, clock, T0 + timedelta(minutes=5))
    assert [f.schedule for f in fired] == ["fine"]  # one bad schedule stops no other
    info = {i.name: i for i in eng.schedules()}
    assert info["broken"].last_error == "RuntimeError: no data today"
    assert info["broken"].next_fire_at == T0 + timedelta(minutes=10)


def test_skip_starts_nothing_while_the_last_run_is_active(eng: Durable, clock: FakeClock) -> None:
    eng.schedule("s", "waits", cron="* * * * *")
    assert len(fire_at(eng, clock, T0 + timedelta(minutes=1))) == 1
    drain(eng)  # now waiting for its signal: active
    assert fire_at(eng, clock, T0 + timedelta(minutes=2)) == []
    [run] = runs(eng)
    eng.send(run.id, "go")
    drain(eng)
    assert len(fire_at(eng, clock, T0 + timedelta(minutes=3))) == 1


def test_allow_starts_every_tick(eng: Durable, clock: FakeClock) -> None:
    eng.schedule("a", "waits", cron="* * * * *", overlap="allow")
    for minute in (1, 2, 3):
        assert len(fire_at(eng, clock, T0 + timedelta(minutes=minute))) == 1
    assert len(runs(eng)) == 3


def test_buffer_one_starts_the_waiting_tick_when_the_run_ends(
    eng: Durable, clock: FakeClock
) -> None:
    eng.schedule("b", "waits", cron="* * * * *", overlap="buffer_one")
    [first] = fire_at(eng, clock, T0 + timedelta(minutes=1))
    assert fire_at(eng, clock, T0 + timedelta(minutes=2)) == []
    assert fire_at(eng, clock, T0 + timedelta(minutes=3)) == []  # one waits, not two
    assert eng.schedules()[0].buffered_at == T0 + timedelta(minutes=2)
    drain(eng)
    eng.send(first.run_id, "go")
    drain(eng)
    [buffered] = fire_at(eng, clock, T0 + timedelta(minutes=3, seconds=5))
    assert buffered.fire_time == T0 + timedelta(minutes=2)
    assert eng.schedules()[0].buffered_at is None


def test_cancel_previous_cancels_the_active_run(eng: Durable, clock: FakeClock) -> None:
    eng.schedule("c", "waits", cron="* * * * *", overlap="cancel_previous")
    [first] = fire_at(eng, clock, T0 + timedelta(minutes=1))
    drain(eng)
    [second] = fire_at(eng, clock, T0 + timedelta(minutes=2))
    assert eng.status(first.run_id).status is RunStatus.CANCELED
    assert eng.status(second.run_id).status is RunStatus.RUNNING


def test_after_downtime_only_ticks_in_the_catchup_window_start(
    eng: Durable, clock: FakeClock
) -> None:
    eng.schedule("none", "report", cron="* * * * *", overlap="allow")
    eng.schedule(
        "three", "report", cron="* * * * *", overlap="allow", catchup_window=timedelta(minutes=3)
    )
    fired = fire_at(eng, clock, T0 + timedelta(hours=2, seconds=30))
    by = {name: [f.fire_time for f in fired if f.schedule == name] for name in ("none", "three")}
    assert by["none"] == []  # no catch-up by default: the next tick only
    assert by["three"] == [T0 + timedelta(hours=2, minutes=m) for m in (-2, -1, 0)]
    info = {i.name: i for i in eng.schedules()}
    assert info["none"].next_fire_at == T0 + timedelta(hours=2, minutes=1)


def test_pause_and_resume(eng: Durable, clock: FakeClock) -> None:
    eng.schedule("p", "report", cron="* * * * *", catchup_window=timedelta(hours=1))
    assert eng.pause_schedule("p").paused
    assert fire_at(eng, clock, T0 + timedelta(minutes=5)) == []
    resumed = eng.resume_schedule("p")
    assert not resumed.paused
    assert resumed.next_fire_at == T0 + timedelta(minutes=6)  # no tick of the pause
    assert [f.fire_time for f in fire_at(eng, clock, T0 + timedelta(minutes=6))] == [
        T0 + timedelta(minutes=6)
    ]


def test_update_keeps_or_moves_the_next_tick(eng: Durable, clock: FakeClock) -> None:
    eng.schedule("u", "report", cron="0 * * * *", input={"v": 1})
    clock.advance(timedelta(minutes=10))
    same = eng.schedule("u", "report", cron="0 * * * *", input={"v": 2}, overlap="allow")
    assert (same.next_fire_at, same.input, same.overlap) == (
        T0 + timedelta(hours=1),
        {"v": 2},
        "allow",
    )
    moved = eng.schedule("u", "report", cron="*/15 * * * *")
    assert moved.next_fire_at == T0 + timedelta(minutes=15)
    assert len(eng.schedules()) == 1


def test_unschedule(eng: Durable, clock: FakeClock) -> None:
    eng.schedule("gone", "report", cron="* * * * *")
    eng.unschedule("gone")
    assert eng.schedules() == []
    assert fire_at(eng, clock, T0 + timedelta(minutes=1)) == []
    with pytest.raises(ScheduleNotFoundError, match=r"engine\.schedule"):
        eng.unschedule("gone")
    with pytest.raises(ScheduleNotFoundError):
        eng.pause_schedule("gone")


def test_backfill_starts_each_tick_once(eng: Durable, clock: FakeClock) -> None:
    eng.schedule("bf", "report", cron="0 * * * *", input={"k": 1})
    clock.set(T0 + timedelta(days=1))
    done = eng.backfill("bf", T0 - timedelta(hours=3), T0)
    assert [f.fire_time for f in done] == [T0 - timedelta(hours=h) for h in (3, 2, 1)]
    again = eng.backfill("bf", T0 - timedelta(hours=2), T0 + timedelta(hours=1))
    assert [f.created for f in again] == [False, False, True]
    assert len(runs(eng)) == 4
    with pytest.raises(InvalidArgumentError, match="aware"):
        eng.backfill("bf", datetime(2030, 1, 1), T0)  # noqa: DTZ001 - the point
    with pytest.raises(ScheduleNotFoundError):
        eng.backfill("nope", T0, T0)
    with pytest.raises(InvalidArgumentError, match="after now"):  # would take later ticks
        eng.backfill("bf", T0, eng.now + timedelta(hours=2))
    assert len(runs(eng)) == 4


def test_bad_schedules_are_refused(eng: Durable) -> None:
    with pytest.raises(InvalidArgumentError, match="cron"):
        eng.schedule("x", "report", cron="every minute")
    with pytest.raises(InvalidArgumentError, match="IANA"):
        eng.schedule("x", "report", cron="* * * * *", timezone="Paris")
    with pytest.raises(InvalidArgumentError, match="overlap"):
        eng.schedule("x", "report", cron="* * * * *", overlap="queue")
    with pytest.raises(InvalidArgumentError, match="never fires"):
        eng.schedule("x", "report", cron="0 0 30 2 *")  # 30 February
    assert eng.schedules() == []


def test_a_worker_fires_schedules_by_itself(sa_engine: sa.Engine) -> None:
    """Real time, a real worker: an every-second schedule starts and completes runs."""
    engine = Durable(sa_engine)
    engine.create_tables()
    done = threading.Event()

    def record(ctx: DurableContext) -> dict[str, Any]:
        done.set()
        return {}

    durable("tick").step("record", record)
    engine.schedule("every-second", "tick", cron="* * * * * *", overlap="allow")
    worker = engine.worker(poll_interval=0.2)
    worker.start()
    try:
        assert done.wait(10)
    finally:
        worker.stop()
    keys = [run.idempotency_key for run in runs(engine)]
    assert keys
    assert all(key and key.startswith("schedule:every-second:") for key in keys)
    assert len(keys) == len(set(keys))


def test_racing_firers_start_one_run_per_tick(eng: Durable, clock: FakeClock) -> None:
    """Eight threads fire the same due schedules at once: one run per tick.

    PostgreSQL: each skips the rows the others hold. SQLite: one writer at a time, and
    a firer that lost the race sees the schedules advanced when it retries.
    """
    for i in range(5):
        eng.schedule(
            f"race-{i}",
            "report",
            cron="* * * * *",
            overlap="allow",
            catchup_window=timedelta(minutes=10),
        )
    clock.set(T0 + timedelta(minutes=5, seconds=1))
    barrier = threading.Barrier(8)
    results: list[list[FiredTick]] = []
    lock = threading.Lock()

    def fire() -> None:
        barrier.wait()
        got = eng.fire_schedules()
        with lock:
            results.append(got)

    threads = [threading.Thread(target=fire) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    fired = [f for batch in results for f in batch]
    assert len(fired) == 5 * 5  # five ticks of five schedules, each fired once
    assert all(f.created for f in fired)
    keys = [run.idempotency_key for run in runs(eng)]
    assert len(keys) == len(set(keys)) == 25


def test_schedule_names_are_checked(eng: Durable) -> None:
    with pytest.raises(DefinitionError, match="non-empty"):
        eng.schedule("", "report", cron="* * * * *")
    with pytest.raises(DefinitionError, match="at most 200"):
        eng.schedule("n" * 201, "report", cron="* * * * *")
    with pytest.raises(WorkflowNotRegisteredError):
        eng.schedule("x", "no-such-workflow", cron="* * * * *")


@pytest.mark.parametrize("durable_each_database_url", ["postgresql"], indirect=True)
def test_racing_creations_make_one_schedule(eng: Durable) -> None:
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def create(i: int) -> None:
        barrier.wait()
        try:
            eng.schedule("same", "report", cron="* * * * *", input={"i": i})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    [info] = eng.schedules()
    assert info.name == "same"


def test_a_relay_backends_worker_fires_schedules(
    sa_engine: sa.Engine, durable_redis_url: str
) -> None:
    engine = Durable(sa_engine, backend=durable_redis_url)
    engine.create_tables()
    done = threading.Event()

    def record(ctx: DurableContext) -> dict[str, Any]:
        done.set()
        return {}

    durable("redis-tick").step("record", record)
    engine.schedule("redis-every-second", "redis-tick", cron="* * * * * *", overlap="allow")
    try:
        with engine.worker(poll_interval=0.2):
            assert done.wait(15)
        keys = [run.idempotency_key or "" for run in runs(engine)]
        assert keys
        assert all(key.startswith("schedule:redis-every-second:") for key in keys)
    finally:
        engine.backend.close()  # type: ignore[attr-defined]
