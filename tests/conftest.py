"""Fixtures the whole main suite shares: engines on fresh databases, the CLI in-process.

The databases and servers are the fixtures durable_sa.testing's pytest plugin ships to
every user (``durable_each_database_url``, ``durable_postgres_url``, ``durable_redis_url``
...); here they become SQLAlchemy engines, a ``Durable`` engine and the CLI. Every test
gets a clean workflow registry: workflows a test defines never leak into the next.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from durable_sa import Durable
from durable_sa.cli import main
from tests.support import cli_app

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


@pytest.fixture(autouse=True)
def _clean_registry(durable_clean_registry: None) -> None:
    """Every test: the workflows it defines are unregistered after it."""


@pytest.fixture
def sa_engine(durable_sqlalchemy_engine: sa.Engine) -> sa.Engine:
    """Engine on a fresh database, once per database (SQLite, PostgreSQL)."""
    return durable_sqlalchemy_engine


def _engine_on(url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_engine(durable_sqlite_url: str) -> Iterator[sa.Engine]:
    """Engine on a fresh SQLite database."""
    yield from _engine_on(durable_sqlite_url)


@pytest.fixture
def pg_engine(durable_postgres_url: str) -> Iterator[sa.Engine]:
    """Engine on a fresh PostgreSQL database."""
    yield from _engine_on(durable_postgres_url)


@pytest.fixture
def engine(sa_engine: sa.Engine) -> Durable:
    """A durable engine with fresh tables on each database."""
    durable_engine = Durable(sa_engine)
    durable_engine.create_tables()
    return durable_engine


@pytest.fixture
def app() -> None:
    """The CLI test application's workflows, registered for this test."""
    cli_app.define()


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Callable[..., tuple[int, str, str]]]:
    """``cli("status", "1")``: run the command in-process; (exit code, stdout, stderr)."""
    level = logging.getLogger().level

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    logging.getLogger().setLevel(level)  # the worker command sets the root level
