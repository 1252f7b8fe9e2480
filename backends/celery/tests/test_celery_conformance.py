"""Celery passes the delivery conformance suite, on both databases, with real workers.

Celery's own workers consume the messages, so the claim-level suite does not apply.

A Celery worker process takes about 1 s to start and 3 s for its warm shutdown, so the
class starts one per database and keeps it for all its tests: each test still starts
from empty tables and an empty queue (:func:`_emptied`), and each worker's clean exit
(code 0) is still asserted, once, when the class is done with that database.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Final

import pytest
import sqlalchemy as sa
from celery_config import make_app
from conftest import CeleryWorker
from durable_sa_celery import TASK_NAME

from durable_sa import Durable, metadata
from durable_sa.testing.conformance import DeliveryConformance
from durable_sa.testing.conformance.support import eventually

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from durable_sa.testing.servers import PostgresServer, RedisServer

_SQLITE_LOCK_TIMEOUT_S = 30
DEFER: Final = timedelta(seconds=1)
"""The worker's ``defer_delay``: a deploy-in-progress test waits 1 s per offer, not 5."""


def send_malformed_task(engine: Durable) -> None:
    """A task message for the durable task whose argument is no job document."""
    engine.backend.app.send_task(TASK_NAME, args=("{not json",))  # type: ignore[attr-defined]


def _emptied(engine: Durable) -> None:
    """Every durable-sa row deleted and the broker's queue purged: a test starts from empty."""
    with engine.sa_engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())
    engine.backend.clear()


@pytest.fixture(scope="class", params=["sqlite", "postgresql"])
def class_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A fresh database for this class's tests on one database (the test id)."""
    if request.param == "sqlite":
        folder: Path = tmp_path_factory.mktemp("celery-conformance")
        yield f"sqlite:///{folder / 'durable.sqlite'}?timeout={_SQLITE_LOCK_TIMEOUT_S}"
        return
    server: PostgresServer = request.getfixturevalue("durable_postgres_server")
    name = f"t_{uuid.uuid4().hex}"
    server.create_database(name)
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)


@pytest.fixture(scope="class")
def class_workers(
    class_database_url: str, durable_redis_server: RedisServer
) -> Iterator[tuple[str, CeleryWorker]]:
    """The broker's URL and a Celery worker process on the class's database."""
    durable_redis_server.flushall()
    engine = Durable(sa.create_engine(class_database_url))
    engine.create_tables()  # the tables exist before the worker starts
    engine.sa_engine.dispose()
    worker = CeleryWorker(
        class_database_url,
        durable_redis_server.url,
        name="w0",
        env={"DURABLE_SA_DEFER_DELAY": str(DEFER.total_seconds())},
    )
    try:
        worker.start()
        yield durable_redis_server.url, worker
        assert worker.terminate() == 0, worker.output()
    finally:
        worker.close()


class TestCeleryDelivery(DeliveryConformance):
    @pytest.fixture
    def conformance_engine(
        self, class_database_url: str, class_workers: tuple[str, CeleryWorker]
    ) -> Iterator[Durable]:
        broker_url, _ = class_workers
        sa_engine = sa.create_engine(class_database_url)
        engine = Durable(sa_engine, backend="celery", backend_options={"app": make_app(broker_url)})
        engine.create_tables()
        _emptied(engine)
        try:
            yield engine
        finally:
            sa_engine.dispose()

    @pytest.fixture
    def conformance_malformed(self):
        return send_malformed_task

    @pytest.fixture
    def conformance_defer_delay(self) -> timedelta:
        return DEFER

    @pytest.fixture
    def conformance_consumers(self, class_workers: tuple[str, CeleryWorker]):
        _, worker = class_workers

        @contextlib.contextmanager
        def consumers(engine: Durable) -> Iterator[list[CeleryWorker]]:
            """The class's worker process, and a relay in this process while the test runs."""
            assert worker.running(), worker.output()
            with engine.relay(poll_interval=0.05):
                yield [worker]
                # What the test set going settles before the next test empties the tables.
                eventually(lambda: engine.backend.pending_count() == 0)
            assert worker.running(), worker.output()

        return consumers
