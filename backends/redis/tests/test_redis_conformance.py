"""Redis Streams passes the backend conformance suite, on both databases."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from durable_sa.testing.conformance import ClaimConformance, DeliveryConformance

if TYPE_CHECKING:
    from durable_sa import Durable


def put_malformed_entry(engine: Durable) -> None:
    """An entry on the queue's stream that is no durable-sa job document."""
    backend = engine.backend
    backend.redis.xadd(backend.stream(backend.queue), {"job": "{not json"})  # type: ignore[attr-defined]


class TestRedisDelivery(DeliveryConformance):
    @pytest.fixture
    def conformance_engine(self, redis_engine: Durable) -> Durable:
        return redis_engine

    @pytest.fixture
    def conformance_malformed(self):
        return put_malformed_entry


class TestRedisClaims(ClaimConformance):
    @pytest.fixture
    def conformance_engine(self, redis_engine: Durable) -> Durable:
        return redis_engine
