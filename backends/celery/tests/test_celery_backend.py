"""Celery specifics: options, lost messages, poison jobs, a broker restart mid-run."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING

import attrs
import pytest
import sqlalchemy as sa
from celery_config import make_app
from conftest import CeleryWorker, database_url_of
from durable_sa_celery import CeleryBackend

from durable_sa import Durable, InvalidArgumentError, RunStatus
from durable_sa.outbox.message import encode_message, message_from_row
from durable_sa.results import JobOutcome
from durable_sa.store.models import outbox_table
from durable_sa.testing import scenarios
from durable_sa.testing.conformance import eventually
from durable_sa.testing.workload import define_workload, effects_metadata

if TYPE_CHECKING:
    from durable_sa.testing.servers import RedisServer

ON_SQLITE = pytest.mark.parametrize("durable_each_database_url", ["sqlite"], indirect=True)
ON_POSTGRESQL = pytest.mark.parametrize("durable_each_database_url", ["postgresql"], indirect=True)
"""Tests that need one database only: durable_sqlalchemy_engine on it alone."""


WAIT = 60


def celery_durable(sa_engine: sa.Engine, broker_url: str, **options: object) -> Durable:
    engine = Durable(
        sa_engine, backend="celery", backend_options={"app": make_app(broker_url), **options}
    )
    engine.create_tables()
    return engine


@pytest.fixture
def pg_celery(durable_sqlalchemy_engine: sa.Engine, durable_redis_url: str) -> Durable:
    effects_metadata.create_all(durable_sqlalchemy_engine)
    return celery_durable(
        durable_sqlalchemy_engine, durable_redis_url, redeliver_after=timedelta(seconds=2)
    )


@ON_SQLITE
def test_the_app_may_be_named_by_its_import_path(durable_sqlalchemy_engine: sa.Engine) -> None:
    engine = Durable(
        durable_sqlalchemy_engine, backend="celery", backend_options={"app": "celery_config:probe"}
    )
    assert isinstance(engine.backend, CeleryBackend)
    import celery_config  # noqa: PLC0415 - the module the path names

    assert engine.backend.app is celery_config.probe


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"app": object()}, "Celery application"),
        ({"app": "celery_config"}, "module:attribute"),
        ({"app": "celery_config:probe", "redeliver_after": timedelta(0)}, "redeliver_after"),
        ({"app": "celery_config:probe", "retry_delay": -1}, "retry_delay"),
    ],
)
@ON_SQLITE
def test_bad_options_are_refused(durable_sqlalchemy_engine: sa.Engine, options, match) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        Durable(durable_sqlalchemy_engine, backend="celery", backend_options=options)


@ON_SQLITE
def test_durable_workers_do_not_consume_celery(
    durable_sqlalchemy_engine: sa.Engine, durable_redis_url: str
) -> None:
    engine = celery_durable(durable_sqlalchemy_engine, durable_redis_url)
    scenarios.define_scenarios()
    engine.start(scenarios.SEQUENTIAL, {})
    engine.relay().drain()
    assert engine.admin.claim(worker="w1") is None
    assert engine.backend.waiting_messages() == 1  # type: ignore[attr-defined]
    assert engine.backend.pending_count() == 1


@ON_SQLITE
def test_a_message_celery_lost_is_published_again(
    durable_sqlalchemy_engine: sa.Engine, durable_redis_url: str
) -> None:
    engine = celery_durable(
        durable_sqlalchemy_engine, durable_redis_url, redeliver_after=timedelta(seconds=1)
    )
    scenarios.define_scenarios()
    run = engine.start(scenarios.SEQUENTIAL, {"n": 1})
    relay = engine.relay()
    assert relay.drain() == 1
    engine.backend.broker_clear()  # type: ignore[attr-defined] # the message is gone
    assert engine.backend.waiting_messages() == 0  # type: ignore[attr-defined]
    assert relay.drain() == 0  # published a moment ago: not yet
    time.sleep(1.1)
    assert relay.drain() == 1
    with durable_sqlalchemy_engine.connect() as conn:
        assert conn.execute(sa.select(outbox_table.c.redeliveries)).scalar_one() == 1
    with (
        CeleryWorker(database_url_of(engine), durable_redis_url, name="lost").start() as worker,
        engine.relay(poll_interval=0.05),
    ):
        final = engine.wait(run.run_id, timeout=WAIT)
        assert final.status is RunStatus.COMPLETED, worker.output()


@ON_POSTGRESQL
def test_a_job_that_kills_every_worker_is_dead_lettered(
    pg_celery: Durable, durable_redis_url: str
) -> None:
    define_workload(pg_celery.sa_engine)  # rel-crash
    run = pg_celery.start("rel-crash", {})
    with (
        CeleryWorker(
            database_url_of(pg_celery), durable_redis_url, name="poison"
        ).start() as worker,
        pg_celery.relay(poll_interval=0.05),
    ):
        assert eventually(lambda: len(pg_celery.admin.dead_letters()) >= 1, timeout=WAIT), (
            worker.output()
        )
        time.sleep(3)  # copies of the job (relay, Celery) must not dead-letter it again
    (letter,) = pg_celery.admin.dead_letters()
    assert letter.run_id == run.run_id
    assert "without finishing (max 5)" in letter.error
    assert letter.attempts >= 6
    assert pg_celery.backend.pending_count() == 0
    assert pg_celery.status(run.run_id).status is RunStatus.RUNNING  # recover() can retry it


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
@ON_POSTGRESQL
def test_runs_survive_a_broker_restart(
    durable_sqlalchemy_engine: sa.Engine, durable_own_redis_server: RedisServer, kill: bool
) -> None:
    engine = celery_durable(
        durable_sqlalchemy_engine,
        durable_own_redis_server.url,
        redeliver_after=timedelta(seconds=15),
    )
    scenarios.define_scenarios()
    runs = [engine.start(scenarios.PARALLEL, {"n": i}).run_id for i in range(20)]
    runs += [engine.start(scenarios.SLEEP, {"n": i}).run_id for i in range(10)]
    workers = [
        CeleryWorker(database_url_of(engine), durable_own_redis_server.url, name=f"r{i}").start()
        for i in range(2)
    ]
    try:
        with engine.relay(poll_interval=0.05) as relay:
            time.sleep(0.3)
            durable_own_redis_server.restart(kill=kill)
            deadline = time.monotonic() + WAIT * 2
            while not all_done(engine, runs) and time.monotonic() < deadline:
                # A supervisor's job: a Celery worker may exit when its broker goes away.
                for i, worker in enumerate(workers):
                    if worker.proc is not None and worker.proc.poll() is not None:
                        worker.close()
                        workers[i] = CeleryWorker(
                            database_url_of(engine), durable_own_redis_server.url, name=f"r{i}b"
                        ).start()
                time.sleep(0.2)
            assert all_done(engine, runs)
            assert eventually(lambda: engine.backend.pending_count() == 0)
        assert relay.stats.published >= len(runs)
    finally:
        for worker in workers:
            worker.close()


def all_done(engine: Durable, run_ids: list[int]) -> bool:
    return all(engine.status(run_id).status is RunStatus.COMPLETED for run_id in run_ids)


@ON_SQLITE
def test_a_copy_of_a_finished_job_is_dropped_without_running(
    durable_sqlalchemy_engine: sa.Engine,
) -> None:
    engine = Durable(
        durable_sqlalchemy_engine, backend="celery", backend_options={"app": "celery_config:probe"}
    )
    engine.create_tables()
    scenarios.define_scenarios()
    run = engine.start(scenarios.SEQUENTIAL, {"n": 1})
    with durable_sqlalchemy_engine.connect() as conn:
        row = conn.execute(sa.select(outbox_table)).mappings().one()
    message = message_from_row(row)
    backend = engine.backend
    assert isinstance(backend, CeleryBackend)
    first = backend.consume(engine, encode_message(message), redelivered=False)
    assert first is JobOutcome.APPLIED
    after_first = engine.status(run.run_id)
    # The task ran the run's next steps in place: one message for the whole run, and
    # every row it took is gone with its job.
    assert after_first.status is RunStatus.COMPLETED
    assert after_first.results == {"one": 2, "two": 3, "three": 4}
    assert backend.pending_count() == 0
    celery_redelivery = backend.consume(engine, encode_message(message), redelivered=True)
    relay_copy = backend.consume(
        engine, encode_message(attrs.evolve(message, redeliveries=1)), redelivered=False
    )
    assert (celery_redelivery, relay_copy) == (JobOutcome.STALE, JobOutcome.STALE)
    assert engine.status(run.run_id).updated_at == after_first.updated_at


@ON_SQLITE
def test_a_malformed_message_is_dead_lettered_by_the_task_logic(
    durable_sqlalchemy_engine: sa.Engine,
) -> None:
    engine = Durable(
        durable_sqlalchemy_engine, backend="celery", backend_options={"app": "celery_config:probe"}
    )
    engine.create_tables()
    backend = engine.backend
    assert isinstance(backend, CeleryBackend)
    assert backend.consume(engine, "{nope", redelivered=False) is JobOutcome.DEAD_LETTERED
    (letter,) = engine.admin.dead_letters()
    assert letter.kind == "unreadable"
    assert "malformed Celery task message" in letter.error
