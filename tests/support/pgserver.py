"""Moved to :mod:`durable_sa.testing.servers`; this name stays for ``benchmarks/run.py``.

Tests import from ``durable_sa.testing.servers`` (or use the pytest plugin's fixtures).
"""

from durable_sa.testing.servers import (
    POSTGRES_URL_ENV as EXTERNAL_URL_ENV,
)
from durable_sa.testing.servers import (
    SERVER_OS_USER,
    PostgresBinaries,
    PostgresNotFoundError,
    PostgresServer,
    PostgresServerError,
    find_postgres_binaries,
    sigterm_as_keyboard_interrupt,
)

__all__ = [
    "EXTERNAL_URL_ENV",
    "SERVER_OS_USER",
    "PostgresBinaries",
    "PostgresNotFoundError",
    "PostgresServer",
    "PostgresServerError",
    "find_postgres_binaries",
    "sigterm_as_keyboard_interrupt",
]
