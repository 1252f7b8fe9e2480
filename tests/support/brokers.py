"""Shared fixtures: a throwaway Redis server for the backends' tests.

A pytest plugin, loaded by the repository's root ``conftest.py``:

* ``redis_server``: the session's server (started on first use, stopped at the end);
  ``DURABLE_SA_TEST_REDIS_URL`` points the tests at an existing one instead.
* ``redis_url``: that server's URL, emptied (FLUSHALL) before the test.
* ``own_redis_server``: a server of the test's own, for tests that restart or kill it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import redis

from tests.support.redisserver import RedisServer

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The session's Redis server."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the session's Redis server, emptied for this test."""
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    """A Redis server for this test alone (restart it, kill it)."""
    with RedisServer() as server:
        yield server
