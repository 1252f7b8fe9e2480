"""Reaching the database at start-up: a worker or relay waits for it instead of dying.

A process started before its database is up (a deploy that starts everything at once, a
failover, a database still being provisioned) tries a connection, and on a connection
error tries again with a growing pause, logging a WARNING each time, until it works or
``timeout`` has passed; then it gives up with :class:`DatabaseUnreachableError`, which
the CLI prints as one line. Stopping the process ends the wait at once.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Final

from sqlalchemy.exc import InterfaceError, OperationalError

from durable_sa.errors import DatabaseUnreachableError

if TYPE_CHECKING:
    import threading
    from datetime import timedelta

    from sqlalchemy import Engine

logger = logging.getLogger(__name__)

_FIRST_PAUSE: Final = 0.5
_MAX_PAUSE: Final = 10.0


def wait_for_database(
    sa_engine: Engine, *, timeout: timedelta, stopping: threading.Event, who: str
) -> bool:
    """Return once a connection works: True, or False if ``stopping`` was set meanwhile.

    Raises:
        DatabaseUnreachableError: no connection worked within ``timeout``.

    """
    deadline = time.monotonic() + timeout.total_seconds()
    pause = _FIRST_PAUSE
    while True:
        try:
            with sa_engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except (OperationalError, InterfaceError) as exc:
            left = deadline - time.monotonic()
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            if left <= 0:
                raise DatabaseUnreachableError(timeout.total_seconds(), reason) from exc
            wait = min(pause, left)
            logger.warning(
                "%s cannot reach the database (%s); trying again in %.1f s, giving up in %.0f s",
                who,
                reason,
                wait,
                left,
                extra={"action": "database_unreachable"},
            )
            if stopping.wait(wait):
                return False
            pause = min(pause * 2, _MAX_PAUSE)
        else:
            return True
