"""Fixtures for the Redis Streams backend: an engine on each database, one Redis server.

The databases (``sa_engine``) and the Redis server (``redis_url``) come from the
repository's shared fixture plugins; a third-party backend would provide its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from durable_sa import Durable
from tests.support.registry import clean_registry  # noqa: F401 - autouse: no workflow leaks

if TYPE_CHECKING:
    from collections.abc import Iterator

    import sqlalchemy as sa


@pytest.fixture
def redis_engine(sa_engine: sa.Engine, redis_url: str) -> Iterator[Durable]:
    """A durable engine relaying to Redis, with short waits so tests stay quick."""
    engine = Durable(
        sa_engine,
        backend=redis_url,
        backend_options={"block": 0.2, "reclaim_every": 0.0},
    )
    engine.create_tables()
    yield engine
    engine.backend.close()  # type: ignore[attr-defined]
