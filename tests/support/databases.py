"""Shared fixtures: databases and SQLAlchemy engines for SQLite and PostgreSQL.

A pytest plugin, loaded by the repository's root ``conftest.py``, so the engine's tests
(``tests/``) and every backend's tests (``backends/*/tests``) share one server.

* ``sa_engine`` / ``database_url``: parametrized, so a test using either runs twice,
  once per backend (test ids ``[sqlite]`` and ``[postgresql]``).
* ``sqlite_engine`` / ``pg_engine``: one backend only, for backend-specific tests.
* Every test gets a fresh, empty database: a file in ``tmp_path`` for SQLite, a new
  database ``t_<uuid>`` on the session's throwaway server for PostgreSQL (dropped after).
* The PostgreSQL server (``postgres_server``) is started lazily, on first use, once per
  session; ``DURABLE_SA_TEST_POSTGRES_URL`` points the tests at an existing one instead.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from tests.support.pgserver import PostgresServer, sigterm_as_keyboard_interrupt

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

# Backend name (also the test id) -> fixture giving that backend's fresh database URL.
_DATABASE_URL_FIXTURES = {"sqlite": "sqlite_database_url", "postgresql": "pg_database_url"}


def _create_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        # Wait for locks held by other connections instead of failing at once.
        return sa.create_engine(url, connect_args={"timeout": 30})
    return sa.create_engine(url)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server (started on first use, stopped at session end)."""
    # SIGTERM (e.g. from `timeout`) would otherwise skip the teardown and leak the server.
    with sigterm_as_keyboard_interrupt(), PostgresServer() as server:
        yield server


@pytest.fixture
def sqlite_database_url(tmp_path: Path) -> str:
    """URL of a fresh SQLite database file in ``tmp_path``."""
    return f"sqlite:///{tmp_path / 'test.sqlite'}"


@pytest.fixture
def pg_database_url(postgres_server: PostgresServer) -> Iterator[str]:
    """URL of a fresh PostgreSQL database, dropped (connections and all) after the test."""
    name = f"t_{uuid.uuid4().hex}"
    postgres_server.create_database(name)
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop_database(name)


@pytest.fixture(params=list(_DATABASE_URL_FIXTURES))
def database_url(request: pytest.FixtureRequest) -> str:
    """URL of a fresh database, once per backend."""
    url: str = request.getfixturevalue(_DATABASE_URL_FIXTURES[request.param])
    return url


@pytest.fixture
def sa_engine(database_url: str) -> Iterator[sa.Engine]:
    """Engine on a fresh database, once per backend; disposed after the test."""
    engine = _create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_engine(sqlite_database_url: str) -> Iterator[sa.Engine]:
    """Engine on a fresh SQLite database."""
    engine = _create_engine(sqlite_database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_engine(pg_database_url: str) -> Iterator[sa.Engine]:
    """Engine on a fresh PostgreSQL database."""
    engine = _create_engine(pg_database_url)
    yield engine
    engine.dispose()
