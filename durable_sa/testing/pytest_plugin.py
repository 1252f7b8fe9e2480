"""pytest fixtures for testing your own workflows and backends: databases, servers, engines.

Installed with durable-sa (entry point ``pytest11``), so the fixtures are there in any
test suite of a project that has durable-sa installed. For a workflow's tests:

- ``durable_database_url``: a fresh SQLite file in ``tmp_path``, or the database given by
  ``--durable-database-url`` (or the ``DURABLE_SA_TEST_DATABASE_URL`` environment
  variable), e.g. a PostgreSQL URL;
- ``durable_clock``: a :class:`~durable_sa.testing.FakeClock` at 2030-01-01 UTC;
- ``durable_engine``: a :class:`~durable_sa.Durable` on that database with that clock,
  its tables created if missing and its job queue empty;
- ``durable_driver``: a :class:`~durable_sa.testing.Driver` for that engine;
- ``durable_clean_registry``: unregisters, after the test, every workflow it defined.

For tests on real servers (a backend's suite, a worker's), each database fresh and empty:

- ``durable_sqlite_url``: a fresh SQLite file in ``tmp_path``;
- ``durable_postgres_url``: a fresh database on the session's throwaway PostgreSQL
  server (``durable_postgres_server``), dropped after the test: empty, or a copy of the
  database ``durable_postgres_template`` names (override it to clone prepared tables);
- ``durable_each_database_url``: parametrized, so the test runs once per database
  (test ids ``[sqlite]`` and ``[postgresql]``); ``durable_sqlalchemy_engine``: a
  SQLAlchemy engine on it;
- ``durable_redis_url``: the session's throwaway Redis server (``durable_redis_server``),
  emptied for the test; ``durable_own_redis_server``: a server of the test's own, to
  restart or kill;
- ``durable_workload_url``: a fresh PostgreSQL database with the tables of the
  crash-test workload that :mod:`durable_sa.testing.processes` runs in real processes.

Rules:
- Every name starts with ``durable_``, so none can shadow a fixture of the user's own.
- No server starts unless a test asks for it: the servers are started on first use, once
  per session (:mod:`durable_sa.testing.servers`, loaded only then), and stopped at its
  end. ``DURABLE_SA_TEST_POSTGRES_URL`` and ``DURABLE_SA_TEST_REDIS_URL`` point them at
  existing servers instead.
- A configured database (``--durable-database-url``) is shared by every test of the
  session: its tables are created if missing and never dropped, and each
  ``durable_engine`` starts by deleting queued jobs (like
  :func:`~durable_sa.testing.check_workflow`, a test owns the queue). Do not point it at
  a database anything else is using.
"""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Engine, create_engine

from durable_sa.core.registry import registry
from durable_sa.facade import Durable
from durable_sa.testing.clock import FakeClock
from durable_sa.testing.driver import Driver

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from durable_sa.testing.servers import PostgresServer, RedisServer

OPTION = "--durable-database-url"
ENV_VAR = "DURABLE_SA_TEST_DATABASE_URL"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register ``--durable-database-url``."""
    group = parser.getgroup("durable-sa")
    group.addoption(
        OPTION,
        dest="durable_database_url",
        default=None,
        metavar="URL",
        help=(
            "SQLAlchemy URL of the database the durable_* fixtures use (e.g. a PostgreSQL "
            f"test database; tables are created if missing). Default: ${ENV_VAR}, else a "
            "fresh SQLite file per test."
        ),
    )


def configured_database_url(config: pytest.Config) -> str | None:
    """The URL from ``--durable-database-url``, else from the environment, else ``None``."""
    url = config.getoption("durable_database_url") or os.environ.get(ENV_VAR)
    return url or None


@pytest.fixture
def durable_database_url(request: pytest.FixtureRequest) -> str:
    """The database's URL: the configured one, else a fresh SQLite file in ``tmp_path``."""
    configured = configured_database_url(request.config)
    if configured is not None:
        return configured
    url: str = request.getfixturevalue("durable_sqlite_url")
    return url


@pytest.fixture
def durable_clock() -> FakeClock:
    """A fake clock at 2030-01-01 UTC that moves only when the test moves it."""
    return FakeClock()


@pytest.fixture
def durable_engine(durable_database_url: str, durable_clock: FakeClock) -> Iterator[Durable]:
    """A ``Durable`` on the test database with the fake clock, tables created, queue empty."""
    sa_engine = create_engine(durable_database_url)
    try:
        engine = Durable(sa_engine, clock=durable_clock)
        engine.create_tables()
        engine.backend.clear()
        yield engine
    finally:
        sa_engine.dispose()


@pytest.fixture
def durable_driver(durable_engine: Durable) -> Driver:
    """A driver that runs ``durable_engine``'s jobs and plays faults against its runs."""
    return Driver(durable_engine)


@pytest.fixture
def durable_clean_registry() -> Iterator[None]:
    """Unregister, after the test, every workflow the test defined.

    Request it, or make it apply to every test of a folder from its ``conftest.py``::

        @pytest.fixture(autouse=True)
        def _clean_registry(durable_clean_registry): ...
    """
    before = set(registry.names())
    yield
    for name in set(registry.names()) - before:
        registry.unregister(name)


# ── databases and servers: none starts unless a test asks ─────────────────────

_SQLITE_LOCK_TIMEOUT_S = 30

_EACH_DATABASE = {"sqlite": "durable_sqlite_url", "postgresql": "durable_postgres_url"}
"""Database name (also the test id) -> the fixture that gives a fresh one's URL."""


@pytest.fixture
def durable_sqlite_url(tmp_path: Path) -> str:
    """URL of a fresh SQLite database file in ``tmp_path``.

    The URL asks SQLite to wait up to 30 s for another connection's lock (``?timeout=30``),
    so workers, relays and other processes on the file wait for each other instead of
    failing with "database is locked".
    """
    return f"sqlite:///{tmp_path / 'durable.sqlite'}?timeout={_SQLITE_LOCK_TIMEOUT_S}"


@pytest.fixture(scope="session")
def durable_postgres_server() -> Iterator[PostgresServer]:
    """The session's throwaway PostgreSQL server, started on first use.

    ``initdb`` into a temporary directory (as an unprivileged OS user when run as root),
    127.0.0.1 only, stopped and deleted at the session's end; or the server named by
    ``DURABLE_SA_TEST_POSTGRES_URL``. See :class:`~durable_sa.testing.servers.PostgresServer`.
    """
    from durable_sa.testing import servers  # noqa: PLC0415 - loaded when a test asks

    # SIGTERM (e.g. from `timeout`) would otherwise skip the teardown and leak the server.
    with servers.sigterm_as_keyboard_interrupt(), servers.PostgresServer() as server:
        yield server


@pytest.fixture
def durable_postgres_template() -> str | None:
    """The database each ``durable_postgres_url`` is a copy of; ``None``: an empty one.

    Override it (in a ``conftest.py``) to name a database the session prepared once, e.g.
    with your tables, so that a test does not spend its time creating them again.
    """
    return None


@pytest.fixture
def durable_postgres_url(
    durable_postgres_server: PostgresServer, durable_postgres_template: str | None
) -> Iterator[str]:
    """URL of a fresh PostgreSQL database, dropped (connections and all) after the test.

    Empty, or a copy of ``durable_postgres_template`` when that fixture names a database.
    """
    name = f"t_{uuid.uuid4().hex}"
    durable_postgres_server.create_database(name, template=durable_postgres_template)
    try:
        yield durable_postgres_server.url(name)
    finally:
        durable_postgres_server.drop_database(name)


@pytest.fixture
def durable_workload_url(durable_postgres_url: str) -> str:
    """A fresh PostgreSQL database ready for the crash-test workload's processes.

    It has the engine's tables and the workload's effects table
    (:mod:`durable_sa.testing.workload`); define the workflows in the test's process
    with :func:`~durable_sa.testing.workload.define_workload`.
    """
    from durable_sa.testing import workload  # noqa: PLC0415 - loaded when a test asks

    return workload.prepare_database(durable_postgres_url)


@pytest.fixture(params=list(_EACH_DATABASE))
def durable_each_database_url(request: pytest.FixtureRequest) -> str:
    """URL of a fresh database, once per database: the test runs on SQLite and PostgreSQL."""
    url: str = request.getfixturevalue(_EACH_DATABASE[request.param])
    return url


@pytest.fixture
def durable_sqlalchemy_engine(durable_each_database_url: str) -> Iterator[Engine]:
    """A SQLAlchemy engine on a fresh database, once per database; disposed after the test.

    Parametrize ``durable_each_database_url`` (``indirect=True``) to keep one database::

        @pytest.mark.parametrize("durable_each_database_url", ["sqlite"], indirect=True)
    """
    engine = create_engine(durable_each_database_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def durable_redis_server() -> Iterator[RedisServer]:
    """The session's throwaway Redis server, started on first use.

    A child ``redis-server`` on 127.0.0.1 and a free port, its data in a temporary
    directory, stopped and deleted at the session's end; or the server named by
    ``DURABLE_SA_TEST_REDIS_URL``. See :class:`~durable_sa.testing.servers.RedisServer`.
    """
    from durable_sa.testing import servers  # noqa: PLC0415 - loaded when a test asks

    with servers.sigterm_as_keyboard_interrupt(), servers.RedisServer() as server:
        yield server


@pytest.fixture
def durable_redis_url(durable_redis_server: RedisServer) -> str:
    """URL of the session's Redis server, emptied (``FLUSHALL``) for this test."""
    durable_redis_server.flushall()
    return durable_redis_server.url


@pytest.fixture
def durable_own_redis_server() -> Iterator[RedisServer]:
    """A Redis server for this test alone, to restart or kill (:meth:`RedisServer.restart`)."""
    from durable_sa.testing import servers  # noqa: PLC0415 - loaded when a test asks

    with servers.RedisServer() as server:
        yield server
