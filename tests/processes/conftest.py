"""Tests that start real processes: workers, relays and the CLI, on real databases.

The crash tests (kill -9, blast radius, worker processes) are marked ``reliability``;
``make test`` runs them with everything else. Select them alone with ``-m reliability``,
or leave them out with ``-m "not reliability"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from durable_sa import Durable
from tests.reliability.harness import prepare_database

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def rel_url(pg_database_url: str) -> str:
    """A fresh PostgreSQL database with the engine's tables and the effects table."""
    return prepare_database(pg_database_url)


@pytest.fixture
def rel_engine(rel_url: str) -> Iterator[Durable]:
    """The test's own engine on that database (workflows come from the app module)."""
    import tests.reliability.app  # noqa: F401, PLC0415 - registers the workflows

    sa_engine = sa.create_engine(rel_url, pool_pre_ping=True)
    yield Durable(sa_engine)
    sa_engine.dispose()
