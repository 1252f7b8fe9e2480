"""What engine.schedules() and `durable-sa schedules` tell an operator: errors, and why a
schedule does not fire."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from durable_sa import Durable, durable
from durable_sa.core.schedule_inputs import schedule_inputs
from durable_sa.testing import FakeClock

if TYPE_CHECKING:
    import sqlalchemy as sa

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def _engine(sa_engine: sa.Engine, clock: FakeClock) -> Durable:
    engine = Durable(sa_engine, clock=clock)
    engine.create_tables()
    durable("report").step("echo", lambda ctx: dict(ctx.input))
    return engine


def test_the_last_firings_error_is_kept_and_cleared(sa_engine: sa.Engine) -> None:
    clock = FakeClock(T0)
    engine = _engine(sa_engine, clock)
    failing = [True]

    def make(fire_time: datetime) -> dict[str, str]:
        if failing[0]:
            msg = "the report service is down"
            raise RuntimeError(msg)
        return {"at": fire_time.isoformat()}

    engine.schedule("hourly", "report", cron="0 * * * *", input=make)
    clock.advance(timedelta(hours=1, seconds=1))
    assert engine.fire_schedules() == []
    (info,) = engine.schedules()
    assert info.last_error == "RuntimeError: the report service is down"
    assert info.hint is None  # it is fired: it just failed

    failing[0] = False
    clock.advance(timedelta(hours=1))
    assert len(engine.fire_schedules()) == 1
    assert engine.schedules()[0].last_error is None


def test_a_callable_schedule_no_worker_can_fire_says_what_to_do(sa_engine: sa.Engine) -> None:
    clock = FakeClock(T0)
    engine = _engine(sa_engine, clock)
    engine.schedule("hourly", "report", cron="0 * * * *", input=lambda t: {"at": t.isoformat()})
    engine.schedule("stored", "report", cron="0 * * * *", input={"at": "stored"})
    schedule_inputs.unregister("hourly")  # as in every worker that did not call schedule()
    clock.advance(timedelta(hours=1, seconds=1))
    assert [t.schedule for t in engine.fire_schedules()] == ["stored"]
    hourly, stored = engine.schedules()
    assert hourly.hint is None  # one second late: a worker may just be busy
    assert stored.hint is None

    clock.advance(timedelta(seconds=30))
    assert engine.fire_schedules() == []
    hourly, stored = engine.schedules()
    assert hourly.hint is not None
    assert hourly.hint.startswith("not fired since 2030-01-01T01:00:00+00:00")
    assert "engine.schedule('hourly', ...)" in hourly.hint
    assert stored.hint is None  # fired at 01:00, next at 02:00


def test_what_schedule_and_resume_return_carries_the_hint_schedules_shows(
    sa_engine: sa.Engine,
) -> None:
    clock = FakeClock(T0)
    engine = _engine(sa_engine, clock)
    engine.schedule("stored", "report", cron="0 * * * *", input={"at": "stored"})
    clock.advance(timedelta(hours=1, seconds=31))  # no worker fires it
    (listed,) = engine.schedules()
    assert listed.hint is not None
    # the same cron keeps the overdue tick: the answer says so, as the listing does
    saved = engine.schedule("stored", "report", cron="0 * * * *", input={"at": "new"})
    assert saved.hint == listed.hint
    assert engine.resume_schedule("stored").hint == listed.hint  # it was not paused
    assert engine.pause_schedule("stored").hint is None  # a paused one needs nothing


def test_the_cli_shows_the_error_column_and_the_hint(
    sa_engine: sa.Engine, durable_each_database_url: str, cli: object
) -> None:
    # Created an hour ago by the clock the CLI reads (the real one): overdue by now.
    clock = FakeClock(datetime.now(UTC) - timedelta(hours=1))
    engine = _engine(sa_engine, clock)

    def broken(fire_time: datetime) -> dict[str, str]:
        msg = f"no data for {fire_time:%H:%M}"
        raise ValueError(msg)

    tick = engine.schedule("broken", "report", cron="* * * * *", input=broken).next_fire_at
    assert tick is not None
    clock.set(tick + timedelta(seconds=1))
    assert engine.fire_schedules() == []  # the tick is passed over, its error kept
    engine.schedule("orphan", "report", cron="* * * * *", input=lambda t: {})
    schedule_inputs.unregister("orphan")
    schedule_inputs.unregister("broken")

    code, out, err = cli("schedules", "--database-url", durable_each_database_url)  # type: ignore[operator]
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split()[-1] == "error"
    broken_row = next(line for line in lines if line.startswith("broken "))
    assert "ValueError: no data for" in broken_row
    assert any(
        line.startswith("orphan: not fired since ") and "engine.schedule('orphan', ...)" in line
        for line in lines
    )


def test_a_buffered_tick_starts_within_a_poll_of_the_active_runs_end(
    sa_engine: sa.Engine,
) -> None:
    """What docs/queues.md promises for ``buffer_one``: a worker's schedule thread starts
    the buffered tick at its next look after the run ends, long before the next tick."""
    clock = FakeClock(T0)
    engine = Durable(sa_engine, clock=clock)
    engine.create_tables()
    durable("gated").wait_for_signal("go", "go")
    engine.schedule("gate", "gated", cron="0 * * * *", overlap="buffer_one")
    clock.set(T0 + timedelta(hours=1, seconds=1))
    [first] = engine.fire_schedules()
    clock.set(T0 + timedelta(hours=2, seconds=1))
    assert engine.fire_schedules() == []  # the 02:00 tick waits for the first run
    assert engine.schedules()[0].buffered_at == T0 + timedelta(hours=2)

    with engine.worker(poll_interval=0.1, heartbeat=timedelta(seconds=0.2)):
        engine.send(first.run_id, "go", None)
        assert engine.wait(first.run_id, timeout=30).status == "completed"
        deadline = time.monotonic() + 10
        while engine.schedules()[0].buffered_at is not None and time.monotonic() < deadline:
            time.sleep(0.05)
    info = engine.schedules()[0]
    assert info.buffered_at is None
    assert info.last_fired_at == T0 + timedelta(hours=2)  # the buffered tick, not a later one
    assert info.last_run_id not in (None, first.run_id)
    assert engine.status(info.last_run_id).idempotency_key == (
        "schedule:gate:2030-01-01T02:00:00+00:00"
    )
