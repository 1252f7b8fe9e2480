"""pytest fixtures for testing your own workflows: a database, an engine, a clock, a driver.

Installed with durable-sa (entry point ``pytest11``), so the fixtures are there in any
test suite of a project that has durable-sa installed:

- ``durable_database_url``: a fresh SQLite file in ``tmp_path``, or the database given by
  ``--durable-database-url`` (or the ``DURABLE_SA_TEST_DATABASE_URL`` environment
  variable), e.g. a PostgreSQL URL;
- ``durable_clock``: a :class:`~durable_sa.testing.FakeClock` at 2030-01-01 UTC;
- ``durable_engine``: a :class:`~durable_sa.Durable` on that database with that clock,
  its tables created if missing and its job queue empty;
- ``durable_driver``: a :class:`~durable_sa.testing.Driver` for that engine.

Rules:
- Every name starts with ``durable_``, so none can shadow a fixture of the user's own.
- A configured database is shared by every test of the session: its tables are created
  if missing and never dropped, and each ``durable_engine`` starts by deleting queued
  jobs (like :func:`~durable_sa.testing.check_workflow`, a test owns the queue). Do not
  point it at a database anything else is using.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import create_engine

from durable_sa.facade import Durable
from durable_sa.testing.clock import FakeClock
from durable_sa.testing.driver import Driver

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

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
def durable_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database's URL: the configured one, else a fresh SQLite file in ``tmp_path``."""
    return configured_database_url(request.config) or f"sqlite:///{tmp_path / 'durable.sqlite'}"


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
