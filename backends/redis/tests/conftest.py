"""Fixtures for the Redis Streams backend: an engine on each database, one Redis server.

The databases (``durable_sqlalchemy_engine``, on SQLite then PostgreSQL) and the Redis
server (``durable_redis_url``) come from durable_sa.testing's pytest plugin, as they
would for a third-party backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from durable_sa import Durable

if TYPE_CHECKING:
    from collections.abc import Iterator

    import sqlalchemy as sa


@pytest.fixture(autouse=True)
def _clean_registry(durable_clean_registry: None) -> None:
    """Every test: the workflows it defines are unregistered after it."""


@pytest.fixture
def redis_engine(durable_sqlalchemy_engine: sa.Engine, durable_redis_url: str) -> Iterator[Durable]:
    """A durable engine relaying to Redis, with short waits so tests stay quick."""
    engine = Durable(
        durable_sqlalchemy_engine,
        backend=durable_redis_url,
        backend_options={"block": 0.2, "reclaim_every": 0.0},
    )
    engine.create_tables()
    yield engine
    engine.backend.close()  # type: ignore[attr-defined]
