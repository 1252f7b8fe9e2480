"""LISTEN on PostgreSQL channels in a background thread, reconnecting by itself.

A :class:`Listener` turns notifications into calls of ``on_notify(channel, payload)``.
It holds one dedicated psycopg connection in autocommit mode (never a pooled one), and
when the connection drops (a database restart, a network cut) it reconnects with a
growing pause. On other databases it does nothing: callers poll instead.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Final

import psycopg
from psycopg import sql

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from sqlalchemy import Engine

logger = logging.getLogger(__name__)

_MAX_PAUSE: Final = 5.0
_STOP_CHECK: Final = 0.2
"""How often a quiet listener looks at its stop flag: bounds how long stop() takes."""


def conninfo_for(sa_engine: Engine) -> str:
    """A libpq connection string for ``sa_engine``'s database (password included)."""
    url = sa_engine.url.set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


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
        self.enabled = sa_engine.dialect.name == "postgresql"
        self._conninfo = conninfo_for(sa_engine) if self.enabled else ""
        self._channels = list(channels)
        self._on_notify = on_notify
        self._on_reconnect = on_reconnect
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()

    def start(self) -> Listener:
        """Start listening in a daemon thread (no-op unless PostgreSQL)."""
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
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5) as conn:
                    for channel in self._channels:
                        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    self.connected.set()
                    pause = 0.1
                    if self._on_reconnect is not None:
                        self._on_reconnect()  # anything sent while we were away is missed
                    while not self._stopping.is_set():
                        for note in conn.notifies(timeout=_STOP_CHECK):
                            self._on_notify(note.channel, note.payload)
            except psycopg.Error as exc:
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
