"""Fixtures the whole main suite shares: engines on fresh databases, the CLI in-process.

The databases and servers are the fixtures durable_sa.testing's pytest plugin ships to
every user (``durable_each_database_url``, ``durable_postgres_url``, ``durable_redis_url``
...); here they become SQLAlchemy engines, a ``Durable`` engine and the CLI. Every test
gets a clean workflow registry: workflows a test defines never leak into the next.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from durable_sa import Durable
from durable_sa.cli import main
from tests.support import cli_app

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from durable_sa.testing.servers import PostgresServer


@pytest.fixture(autouse=True)
def _clean_registry(durable_clean_registry: None) -> None:
    """Every test: the workflows it defines are unregistered after it."""


_WITH_TABLES = frozenset({"engine", "eng", "pg", "timed", "driven", "conformance_engine"})
"""Fixtures (here and in test modules) that create durable-sa's tables on a fresh database:
a PostgreSQL test that takes one gets a database that has them already (see below)."""


def _template(server: PostgresServer, prepare: Callable[[str], object]) -> Iterator[str]:
    name = f"tables_{uuid.uuid4().hex}"
    server.create_database(name)
    try:
        prepare(server.url(name))  # disposes of its engine: a template must have no session
        yield name
    finally:
        server.drop_database(name)


def _create_tables(url: str) -> None:
    sa_engine = sa.create_engine(url)
    try:
        Durable(sa_engine).create_tables()
    finally:
        sa_engine.dispose()


@pytest.fixture(scope="session")
def _tables_template(durable_postgres_server: PostgresServer) -> Iterator[str]:
    """A database with durable-sa's tables, made once per session by ``create_tables``.

    The fixtures still call ``create_tables`` on the copy: it finds every table there.
    """
    yield from _template(durable_postgres_server, _create_tables)


@pytest.fixture(scope="session")
def _workload_template(durable_postgres_server: PostgresServer) -> Iterator[str]:
    """The same for the crash-test workload: made by the ``prepare_database`` of
    ``durable_workload_url``, which the fixture calls again on the copy."""
    from durable_sa.testing.workload import prepare_database  # noqa: PLC0415 - on use

    yield from _template(durable_postgres_server, prepare_database)


@pytest.fixture
def durable_postgres_template(request: pytest.FixtureRequest) -> str | None:
    """Tests whose fixtures create the tables start from a copy that has them.

    Creating the tables costs a PostgreSQL test several times what copying them does;
    every other test gets an empty database, as the plugin promises.
    """
    if "durable_workload_url" in request.fixturenames:
        fixture = "_workload_template"
    elif not _WITH_TABLES.isdisjoint(request.fixturenames):
        fixture = "_tables_template"
    else:
        return None
    template: str = request.getfixturevalue(fixture)
    return template


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
