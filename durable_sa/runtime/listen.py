"""LISTEN on PostgreSQL channels, on a connection of the application's own engine.

Rules:
- The listening connection comes from the application's ``Engine`` (its URL, ``creator=``,
  ``connect_args``, SSL settings and ``connect`` events all apply), is detached from the
  pool so it is never handed to anyone else, and is switched to autocommit: a LISTEN
  takes effect at once and no transaction stays open.
- Listening needs a driver that delivers notifications while waiting (psycopg 3). With
  another driver, or another database, nothing listens and callers poll instead:
  notifications are only an optimisation, never needed for correctness.
- A :class:`Listener` turns notifications into calls of ``on_notify(channel, payload)``
  in a background thread and reconnects with a growing pause when the connection drops
  (a database restart, a network cut).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from sqlalchemy import Engine
    from sqlalchemy.pool import PoolProxiedConnection

logger = logging.getLogger(__name__)

_MAX_PAUSE: Final = 5.0
_STOP_CHECK: Final = 0.2
"""How often a quiet listener looks at its stop flag: bounds how long stop() takes."""
_LISTENING_DRIVERS: Final = frozenset({"psycopg"})
"""SQLAlchemy driver names whose connections wait for notifications (``notifies()``)."""


def can_listen(sa_engine: Engine) -> bool:
    """Whether ``sa_engine`` can LISTEN: PostgreSQL through psycopg 3."""
    return sa_engine.dialect.name == "postgresql" and sa_engine.dialect.driver in _LISTENING_DRIVERS


def connection_errors(sa_engine: Engine) -> tuple[type[BaseException], ...]:
    """What a dropped or refused listening connection raises: retry on these."""
    dbapi = sa_engine.dialect.loaded_dbapi
    return (DBAPIError, OSError, dbapi.Error)


class ListeningConnection:
    """One detached connection of the application's engine, LISTENing on channels.

    Safe to close from another thread while a :meth:`notifications` slice runs: closing
    waits for that slice (at most its timeout) to end.
    """

    def __init__(self, sa_engine: Engine, channels: Sequence[str]) -> None:
        """Open the connection and LISTEN on ``channels``.

        Raises:
            DBAPIError: the database could not be reached (and the driver's own errors).

        """
        raw: PoolProxiedConnection = sa_engine.raw_connection()
        try:
            driver: Any = raw.driver_connection
            raw.detach()  # ours alone: never returned to the pool, closed when we are done
            driver.autocommit = True
            quote = sa_engine.dialect.identifier_preparer.quote
            for channel in channels:
                driver.execute(f"LISTEN {quote(channel)}")
        except BaseException:
            raw.close()
            raise
        self._raw = raw
        self._driver = driver
        self._lock = threading.Lock()

    def notifications(self, timeout: float) -> Iterator[tuple[str, str]]:
        """``(channel, payload)`` pairs as they arrive, for up to ``timeout`` seconds."""
        with self._lock:
            for note in self._driver.notifies(timeout=timeout):
                yield note.channel, note.payload

    def wait_for(self, payload: str, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a notification carrying ``payload``."""
        with self._lock:
            for note in self._driver.notifies(timeout=timeout):
                if note.payload == payload:
                    return True
        return False

    def close(self) -> None:
        """Close the connection (after a running :meth:`notifications` slice ends)."""
        with self._lock:
            self._raw.close()


@contextlib.contextmanager
def listening(sa_engine: Engine, channels: Sequence[str]) -> Iterator[ListeningConnection | None]:
    """A :class:`ListeningConnection` for the block, or ``None`` when the engine cannot listen."""
    if not can_listen(sa_engine):
        yield None
        return
    conn = ListeningConnection(sa_engine, channels)
    try:
        yield conn
    finally:
        conn.close()


class Listener:
    """Calls ``on_notify`` for every notification on ``channels`` until stopped."""

    def __init__(
        self,
        sa_engine: Engine,
        channels: Sequence[str],
        on_notify: Callable[[str, str], None],
        *,
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        self.enabled = can_listen(sa_engine)
        self._sa_engine = sa_engine
        self._channels = list(channels)
        self._on_notify = on_notify
        self._on_reconnect = on_reconnect
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()

    def start(self) -> Listener:
        """Start listening in a daemon thread (no-op when the engine cannot listen)."""
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="durable-sa-listen", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening; returns within about :data:`_STOP_CHECK` seconds."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        pause = 0.1
        errors = connection_errors(self._sa_engine)
        while not self._stopping.is_set():
            try:
                with listening(self._sa_engine, self._channels) as conn:
                    if conn is None:  # pragma: no cover - start() checked can_listen
                        return
                    self.connected.set()
                    pause = 0.1
                    if self._on_reconnect is not None:
                        self._on_reconnect()  # anything sent while we were away is missed
                    while not self._stopping.is_set():
                        for channel, payload in conn.notifications(_STOP_CHECK):
                            self._on_notify(channel, payload)
            except errors as exc:
                self.connected.clear()
                if self._stopping.is_set():
                    return
                logger.warning(
                    "listening for notifications failed (%s); reconnecting in %.1f s",
                    exc.__class__.__name__,
                    pause,
                    extra={"action": "listen_reconnect"},
                )
                self._stopping.wait(pause)
                pause = min(pause * 2, _MAX_PAUSE)
        self.connected.clear()
