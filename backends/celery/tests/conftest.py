"""Fixtures for the Celery backend: an engine on each database, real Celery workers.

The databases (``durable_each_database_url``...) and the Redis server that Celery uses as
its broker (``durable_redis_url``) come from durable_sa.testing's pytest plugin, the
worker processes from :mod:`durable_sa.testing.processes`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Self

import pytest
from celery_config import make_app

from durable_sa import Durable
from durable_sa.testing.processes import ChildProcess
from durable_sa.testing.workload import STEP_SECONDS_ENV

if TYPE_CHECKING:
    from collections.abc import Iterator

    import sqlalchemy as sa

HERE = Path(__file__).resolve().parent
"""This folder: Celery worker processes import the test app (``celery_test_app``) here."""


@pytest.fixture(autouse=True)
def _clean_registry(durable_clean_registry: None) -> None:
    """Every test: the workflows it defines are unregistered after it."""


class CeleryWorker(ChildProcess):
    """One ``celery worker`` process on the test app, its output in a file."""

    log_prefix = "durable-sa-celery-"

    def __init__(
        self,
        database_url: str,
        broker_url: str,
        *,
        concurrency: int = 2,
        name: str,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            {
                "DURABLE_SA_DATABASE_URL": database_url,
                "CELERY_BROKER_URL": broker_url,
                STEP_SECONDS_ENV: os.environ.get(STEP_SECONDS_ENV, "0.05"),
                **(env or {}),
            },
            cwd=HERE,
            pythonpath=[HERE],
        )
        self.concurrency = concurrency
        self.name = name

    def argv(self) -> list[str]:
        return [
            sys.executable, "-m", "celery", "-A", "celery_test_app:app", "worker",
            "--pool=prefork", f"--concurrency={self.concurrency}",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-n", f"{self.name}@%h", "--loglevel=INFO",
        ]  # fmt: skip

    def start(self, *, wait: bool = True) -> Self:
        super().start()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while " ready." not in self.output():
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"celery worker exited at start:\n{self.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"celery worker not ready in {timeout} s:\n{self.output()}")
            time.sleep(0.1)


def database_url_of(engine: Durable) -> str:
    return engine.sa_engine.url.render_as_string(hide_password=False)


@contextlib.contextmanager
def celery_consumers(engine: Durable, *, workers: int = 1) -> Iterator[list[CeleryWorker]]:
    """Celery worker processes on the engine's database, and a relay in this process."""
    broker_url = engine.backend.app.conf.broker_url  # type: ignore[attr-defined]
    procs = [
        CeleryWorker(database_url_of(engine), broker_url, name=f"w{i}") for i in range(workers)
    ]
    try:
        for proc in procs:
            proc.start(wait=False)
        for proc in procs:
            proc.wait_ready()
        with engine.relay(poll_interval=0.05):
            yield procs
        for proc in procs:
            assert proc.terminate() == 0, proc.output()
    finally:
        for proc in procs:
            proc.close()


@pytest.fixture
def celery_engine(durable_sqlalchemy_engine: sa.Engine, durable_redis_url: str) -> Durable:
    """A durable engine relaying to Celery through the test Redis server."""
    engine = Durable(
        durable_sqlalchemy_engine,
        backend="celery",
        backend_options={"app": make_app(durable_redis_url)},
    )
    engine.create_tables()
    return engine
