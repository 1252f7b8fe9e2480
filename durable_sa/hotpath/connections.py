"""Driver connections of the engine's pool, in autocommit mode, for the fast lane.

The fast lane talks to the driver directly: one statement is one transaction, so it
needs autocommit, and it skips SQLAlchemy's per-statement work. The connections still
come from the application's engine (its pool, connect arguments and events), and go
back to the pool in the state the pool expects.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy import Engine

    from durable_sa.hotpath.store import Store
    from durable_sa.shell import Shell

logger = logging.getLogger(__name__)


def _driver(raw: Any) -> Any:  # noqa: ANN401 - the driver's own connection type
    conn = raw.driver_connection
    if conn is None:  # pragma: no cover - a checked-out connection always has one
        msg = "the pool handed out a connection without a driver connection"
        raise RuntimeError(msg)
    return conn


@contextlib.contextmanager
def borrowed(sa_engine: Engine, store: Store) -> Iterator[Any]:
    """A pooled driver connection held by ``store`` for the block, then returned."""
    raw = sa_engine.raw_connection()
    try:
        conn = _driver(raw)
        store.hold(conn, synchronous=True)
        try:
            yield conn
        finally:
            store.unhold(conn, synchronous=True)
    except BaseException:
        raw.invalidate()
        raise
    else:
        raw.close()


class HeldConnection:
    """One pooled DBAPI connection held for the lane's lifetime, replaced when it breaks."""

    def __init__(self, shell: Shell, store: Store, *, synchronous: bool) -> None:
        """Hold a connection of ``shell``'s pool once first used."""
        self._shell = shell
        self._store = store
        self._synchronous = synchronous
        self._raw: Any = None

    def get(self) -> Any:  # noqa: ANN401 - the driver's connection
        """The driver connection, held by the store (opened on first use)."""
        if self._raw is None:
            raw = self._shell.sa_engine.raw_connection()
            self._store.hold(_driver(raw), synchronous=self._synchronous)
            self._raw = raw
        return self._raw.driver_connection

    def broken(self) -> None:
        """Throw the connection away (the next use opens another)."""
        if self._raw is not None:
            raw, self._raw = self._raw, None
            try:
                raw.invalidate()
            except Exception:  # it is broken already
                logger.debug("invalidating a broken connection failed", exc_info=True)

    def close(self) -> None:
        """Give the connection back to the pool as the pool expects it."""
        if self._raw is None:
            return
        raw, self._raw = self._raw, None
        try:
            self._store.unhold(_driver(raw), synchronous=self._synchronous)
            raw.close()
        except Exception:  # noqa: BLE001 - a dead connection is invalidated instead
            raw.invalidate()
