"""Fixtures for the Celery backend: an engine on each database, real Celery workers.

The databases (``sa_engine``) and the Redis server that Celery uses as its broker
(``redis_url``) come from the repository's shared fixture plugins.
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
from tests.reliability.harness import ChildProcess
from tests.support.registry import clean_registry  # noqa: F401 - autouse: no workflow leaks

if TYPE_CHECKING:
    from collections.abc import Iterator

    import sqlalchemy as sa

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]


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
                "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)]),
                "REL_STEP_SECONDS": os.environ.get("REL_STEP_SECONDS", "0.05"),
                **(env or {}),
            },
            cwd=HERE,
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
def celery_engine(sa_engine: sa.Engine, redis_url: str) -> Durable:
    """A durable engine relaying to Celery through the test Redis server."""
    engine = Durable(sa_engine, backend="celery", backend_options={"app": make_app(redis_url)})
    engine.create_tables()
    return engine
