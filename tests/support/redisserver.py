"""Moved to :mod:`durable_sa.testing.servers`; this name stays for ``benchmarks/run.py``.

Tests import from ``durable_sa.testing.servers`` (or use the pytest plugin's fixtures).
"""

from durable_sa.testing.servers import REDIS_URL_ENV as EXTERNAL_URL_ENV
from durable_sa.testing.servers import (
    RedisNotFoundError,
    RedisServer,
    RedisServerError,
    find_redis_server,
)

__all__ = [
    "EXTERNAL_URL_ENV",
    "RedisNotFoundError",
    "RedisServer",
    "RedisServerError",
    "find_redis_server",
]
