"""A pooled connection a worker keeps for one kind of statement, in autocommit mode.

A worker claims jobs many times a second. Each claim is one statement that is atomic by
itself, so it runs on a connection in autocommit mode (one round trip, no ``BEGIN`` or
``COMMIT``), held for the worker's life instead of checked out of the pool each time.
The connection comes from the application's engine (its pool, connect arguments and
events) and goes back to the pool as the pool expects it; a connection that fails is
thrown away and the next use opens another.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy import Connection, Engine

logger = logging.getLogger(__name__)


class HeldConnection:
    """One autocommit connection of ``sa_engine``'s pool, with session ``settings``.

    ``settings`` are statements run once per connection (e.g. ``SET synchronous_commit
    TO OFF``) and ``resets`` undo them before the connection goes back to the pool.
    """

    def __init__(
        self, sa_engine: Engine, *, settings: Sequence[str] = (), resets: Sequence[str] = ()
    ) -> None:
        """Hold a connection of ``sa_engine`` once first used."""
        self._engine = sa_engine
        self._settings = tuple(settings)
        self._resets = tuple(resets)
        self._conn: Connection | None = None

    def get(self) -> Connection:
        """The held connection (opened on first use, or after :meth:`broken`)."""
        if self._conn is None:
            conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            try:
                for statement in self._settings:
                    conn.exec_driver_sql(statement)
            except BaseException:
                conn.invalidate()
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def broken(self) -> None:
        """Throw the connection away (after an error); the next use opens another."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.invalidate()
            conn.close()
        except Exception:  # it is broken already
            logger.debug("discarding a broken connection failed", exc_info=True)

    def close(self) -> None:
        """Undo the settings and give the connection back to the pool."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            for statement in self._resets:
                conn.exec_driver_sql(statement)
            conn.close()
        except Exception:  # a dead connection is thrown away instead
            logger.debug("returning a held connection failed", exc_info=True)
            conn.invalidate()
            conn.close()
