"""Redis Streams passes the backend conformance suite, on both databases."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

import pytest

from durable_sa import Durable
from durable_sa.testing.conformance import ClaimConformance, DeliveryConformance

if TYPE_CHECKING:
    from collections.abc import Iterator

    import sqlalchemy as sa

DEFER: Final = timedelta(seconds=1)
"""How long the delivery suite's engines defer a job they cannot run (5 s by default)."""


def put_malformed_entry(engine: Durable) -> None:
    """An entry on the queue's stream that is no durable-sa job document."""
    backend = engine.backend
    backend.redis.xadd(backend.stream(backend.queue), {"job": "{not json"})  # type: ignore[attr-defined]


def _redis_engine(
    sa_engine: sa.Engine, url: str, options: dict[str, Any], **settings: Any
) -> Iterator[Durable]:
    """An engine on Redis with quick reads and reclaims, closed after the test."""
    engine = Durable(
        sa_engine,
        backend=url,
        backend_options={"block": 0.2, "reclaim_every": 0.0, **options},
        **settings,
    )
    engine.create_tables()
    yield engine
    engine.backend.close()  # type: ignore[attr-defined]


class TestRedisDelivery(DeliveryConformance):
    @pytest.fixture
    def conformance_engine(
        self, durable_sqlalchemy_engine: sa.Engine, durable_redis_url: str
    ) -> Iterator[Durable]:
        """The conftest's engine, deferring by 1 s: a deploy-in-progress test waits less."""
        yield from _redis_engine(
            durable_sqlalchemy_engine, durable_redis_url, {"defer_delay": DEFER}, defer_delay=DEFER
        )

    @pytest.fixture
    def conformance_malformed(self):
        return put_malformed_entry

    @pytest.fixture
    def conformance_defer_delay(self) -> timedelta:
        return DEFER


class TestRedisClaims(ClaimConformance):
    @pytest.fixture
    def conformance_engine(
        self, durable_sqlalchemy_engine: sa.Engine, durable_redis_url: str
    ) -> Iterator[Durable]:
        """The conftest's engine, its jobs with 2 attempts: running out costs 2 leases, not 5."""
        yield from _redis_engine(
            durable_sqlalchemy_engine, durable_redis_url, {}, max_job_attempts=2
        )
