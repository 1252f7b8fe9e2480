"""The SQL metrics on both databases: runs in every status, due jobs, a dead letter, workers."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import SQLAlchemyError

from durable_sa import Durable, RunStatus, durable
from durable_sa.errors import InvalidArgumentError
from durable_sa.metrics import DurableCollector, metrics_registry
from durable_sa.runtime import presence
from durable_sa.testing import FakeClock, drain
from tests.integration.metrics.scraping import named, scrape, value

if TYPE_CHECKING:
    import sqlalchemy as sa


def boom(ctx):
    msg = "card declined"
    raise RuntimeError(msg)


def _define() -> None:
    durable("m-order").step("a", lambda ctx: 1).step("b", lambda ctx: 2)
    durable("m-approve").wait_for_signal("approval", "approve").step("ship", lambda ctx: 3)
    durable("m-broken").step("boom", boom, max_retries=1)
    durable("m-capped", max_active=1).step("x", lambda ctx: 4)
    durable("m-held").step("y", lambda ctx: 5)


def _beat(engine: Durable, worker_id: str, *, expires_in: timedelta) -> None:
    now = engine.now
    with engine.shell.sessions.begin() as session:
        presence.beat(
            session,
            {
                "id": worker_id,
                "hostname": "host",
                "pid": 1,
                "concurrency": 4,
                "queues": None,
                "workflows": {},
                "in_flight": 1,
                "processed": 0,
                "started_at": now,
                "last_seen": now,
                "expires_at": now + expires_in,
            },
        )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def scene(sa_engine: sa.Engine, clock: FakeClock) -> Durable:
    """Runs in every status, due jobs on two queues, a held job, a dead letter, workers."""
    _define()
    engine = Durable(sa_engine, clock=clock)
    engine.create_tables()
    reports = Durable(sa_engine, clock=clock, queue="reports")
    for _ in range(2):
        engine.start("m-order", {})
    engine.start("m-approve", {})
    engine.start("m-broken", {})
    drain(engine)  # 2 completed, 1 suspended, 1 failed
    engine.cancel(engine.start("m-order", {}).run_id)  # canceled
    engine.start("m-order", {})  # running; its job is dead-lettered below
    poisoned = engine.admin.claim(worker="test")
    assert poisoned is not None
    engine.backend.dead_letter(poisoned, error="poison")
    engine.start("m-capped", {})  # running, its job held by a worker below
    assert engine.start("m-capped", {}).status is RunStatus.PENDING
    held = engine.admin.claim(worker="w1", lease=timedelta(minutes=10))
    assert held is not None
    engine.start("m-order", {})  # running, its job due on "default"
    engine.start("m-held", {})  # running, its job due but its workflow paused
    engine.pause("m-held")
    reports.start("m-order", {})  # running, its job due on "reports"
    _beat(engine, "live", expires_in=timedelta(minutes=5))
    _beat(engine, "gone", expires_in=timedelta(seconds=-1))
    engine.schedule("every-minute", "m-order", cron="* * * * *")  # next tick 00:01:00
    clock.advance(90)
    return engine


def test_a_scrape_shows_runs_jobs_dead_letters_workers_limits_and_schedules(scene):
    samples = scrape(metrics_registry(scene, cache_seconds=0))
    expected_runs = {
        ("m-order", "completed"): 2,
        ("m-order", "canceled"): 1,
        ("m-order", "running"): 3,
        ("m-approve", "suspended"): 1,
        ("m-broken", "failed"): 1,
        ("m-capped", "running"): 1,
        ("m-capped", "pending"): 1,
        ("m-held", "running"): 1,
    }
    runs = named(samples, "durable_sa_runs")
    workflows = {"m-order", "m-approve", "m-broken", "m-capped", "m-held"}
    assert len(runs) == len(workflows) * len(RunStatus)  # every status of each, 0 or more
    for workflow in workflows:
        for status in RunStatus:
            got = value(samples, "durable_sa_runs", workflow=workflow, status=status.value)
            assert got == expected_runs.get((workflow, status.value), 0), (workflow, status)

    assert named(samples, "durable_sa_jobs_due") == {
        frozenset({("queue", "default")}): 1,  # m-held's is paused, m-capped's is held
        frozenset({("queue", "reports")}): 1,
    }
    assert value(samples, "durable_sa_oldest_due_job_seconds", queue="default") == 90
    assert value(samples, "durable_sa_oldest_due_job_seconds", queue="reports") == 90
    assert value(samples, "durable_sa_jobs_running", queue="default") == 1
    assert value(samples, "durable_sa_jobs_running", queue="reports") == 0
    assert named(samples, "durable_sa_jobs_lease_expired") == {
        frozenset({("queue", "default")}): 0,
        frozenset({("queue", "reports")}): 0,
    }
    assert named(samples, "durable_sa_outbox_due") == {  # no outbox: 0, not "No data"
        frozenset({("queue", "default")}): 0,
        frozenset({("queue", "reports")}): 0,
    }

    assert value(samples, "durable_sa_dead_letters_open") == 1
    assert value(samples, "durable_sa_workers_live") == 1  # the expired one is not counted
    assert value(samples, "durable_sa_worker_slots") == 4
    assert value(samples, "durable_sa_worker_slots_busy") == 1

    assert named(samples, "durable_sa_active_runs") == {frozenset({("workflow", "m-capped")}): 1}
    assert value(samples, "durable_sa_max_active_runs", workflow="m-capped") == 1
    assert named(samples, "durable_sa_workflow_paused") == {frozenset({("workflow", "m-held")}): 1}
    assert value(samples, "durable_sa_schedule_lag_seconds", schedule="every-minute") == 30
    assert value(samples, "durable_sa_database_up") == 1


def test_a_requeued_dead_letter_and_a_drained_queue_leave_the_gauges(scene, clock):
    letter = scene.admin.dead_letters()[0]
    scene.admin.requeue(letter.id)
    scene.unpause("m-held")
    drain(scene, now=clock())
    samples = scrape(metrics_registry(scene, cache_seconds=0))
    assert value(samples, "durable_sa_dead_letters_open") == 0
    assert value(samples, "durable_sa_jobs_due", queue="default") == 0
    assert value(samples, "durable_sa_oldest_due_job_seconds", queue="default") == 0
    assert named(samples, "durable_sa_workflow_paused") == {}
    assert value(samples, "durable_sa_runs", workflow="m-held", status="completed") == 1


PER_QUEUE = (
    "durable_sa_jobs_due",
    "durable_sa_oldest_due_job_seconds",
    "durable_sa_jobs_running",
    "durable_sa_jobs_lease_expired",
    "durable_sa_outbox_due",
    "durable_sa_oldest_outbox_due_seconds",
)


def test_an_idle_queue_is_0_not_absent(sa_engine, clock):
    durable("m-idle").step("a", lambda ctx: 1)
    engine = Durable(sa_engine, clock=clock)
    engine.create_tables()
    registry = metrics_registry(engine, cache_seconds=0)
    fresh = scrape(registry)  # no job ever: the default queue is 0
    for name in PER_QUEUE:
        assert named(fresh, name) == {frozenset({("queue", "default")}): 0}, name
    Durable(sa_engine, clock=clock, queue="reports").start("m-idle", {})
    assert value(scrape(registry), "durable_sa_jobs_due", queue="reports") == 1
    drain(engine)
    after = scrape(registry)  # the queue was seen: it stays, at 0
    for name in PER_QUEUE:
        assert value(after, name, queue="reports") == 0, name
        assert value(after, name, queue="default") == 0, name


def test_a_job_whose_lease_ran_out_is_due_since_then_and_counted(sa_engine, clock):
    durable("m-lapsed").step("a", lambda ctx: 1)
    engine = Durable(sa_engine, clock=clock)
    engine.create_tables()
    engine.start("m-lapsed", {})
    clock.advance(60)  # due for a minute when a worker claims it
    assert engine.admin.claim(worker="killed", lease=timedelta(seconds=30)) is not None
    registry = metrics_registry(engine, cache_seconds=0)
    clock.advance(20)
    held = scrape(registry)
    assert value(held, "durable_sa_jobs_running", queue="default") == 1
    assert value(held, "durable_sa_jobs_due", queue="default") == 0
    assert value(held, "durable_sa_jobs_lease_expired", queue="default") == 0
    clock.advance(25)  # the worker was SIGKILLed: its lease ran out 15 s ago
    lapsed = scrape(registry)
    assert value(lapsed, "durable_sa_jobs_running", queue="default") == 0
    assert value(lapsed, "durable_sa_jobs_lease_expired", queue="default") == 1
    assert value(lapsed, "durable_sa_jobs_due", queue="default") == 1
    # due again since its lease ran out, not since it was first due (105 s ago)
    assert value(lapsed, "durable_sa_oldest_due_job_seconds", queue="default") == 15
    drain(engine, now=clock())  # another worker takes it over and finishes it
    done = scrape(registry)
    assert value(done, "durable_sa_jobs_lease_expired", queue="default") == 0
    assert value(done, "durable_sa_oldest_due_job_seconds", queue="default") == 0


def test_readings_are_cached_for_cache_seconds(engine):
    durable("m-cached").step("a", lambda ctx: 1)
    ticks = [0.0]
    collector = DurableCollector(engine, cache_seconds=5, monotonic=lambda: ticks[0])
    registry = CollectorRegistry()
    registry.register(collector)

    def runs() -> float:
        return value(scrape(registry), "durable_sa_runs", workflow="m-cached", status="running")

    engine.start("m-cached", {})
    assert runs() == 1
    engine.start("m-cached", {})
    ticks[0] = 4.9
    assert runs() == 1  # within the period: no read
    ticks[0] = 5.0
    assert runs() == 2


def test_an_unreadable_database_is_database_up_0_not_a_failed_scrape(sqlite_engine):
    bare = Durable(sqlite_engine)  # no tables
    samples = scrape(metrics_registry(bare, cache_seconds=0))
    assert value(samples, "durable_sa_database_up") == 0
    assert named(samples, "durable_sa_runs") == {}


@pytest.mark.parametrize("bad", [-1, "5", True, float("nan")])
def test_a_bad_cache_period_is_refused(sqlite_engine, bad):
    with pytest.raises(InvalidArgumentError, match="cache_seconds"):
        DurableCollector(Durable(sqlite_engine), cache_seconds=bad)


def test_the_database_going_down_and_back_is_told_once_each(sa_engine, caplog):
    engine = Durable(sa_engine)
    engine.create_tables()
    told: list[object] = []
    registry = metrics_registry(engine, cache_seconds=0, on_database_change=told.append)
    assert value(scrape(registry), "durable_sa_database_up") == 1
    assert told == []  # working from the start is no change
    engine.admin.drop_tables()
    with caplog.at_level("INFO", logger="durable_sa.metrics"):
        for _ in range(3):
            assert value(scrape(registry), "durable_sa_database_up") == 0
        assert len(told) == 1  # once, not at every scrape
        assert isinstance(told[0], SQLAlchemyError)
        engine.create_tables()
        assert value(scrape(registry), "durable_sa_database_up") == 1
        assert value(scrape(registry), "durable_sa_database_up") == 1
    assert told[1:] == [None]
    records = [r for r in caplog.records if r.name == "durable_sa.metrics.collector"]
    assert [r.levelname for r in records] == ["WARNING", "INFO"]
    assert "cannot read the database" in records[0].getMessage()
    assert "SELECT" not in records[0].getMessage()  # the driver's line, not the SQL
    assert "can be read again" in records[1].getMessage()
