"""In-process wake-ups: callbacks run after a commit that queued jobs.

A worker (or a relay) in the same process as the code that queued a job hears about it
at once, without a round trip through the database server. That matters on SQLite,
which has no NOTIFY, and saves latency on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from sqlalchemy import event

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.orm import Session

logger = logging.getLogger(__name__)


class WakeCallbacks:
    """The callbacks a backend calls when jobs it queued become visible."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[], None]] = []

    def add(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after each commit that queued jobs in this process."""
        self._callbacks.append(callback)

    def remove(self, callback: Callable[[], None]) -> None:
        """Stop calling ``callback`` (no error if it was never added)."""
        with contextlib.suppress(ValueError):
            self._callbacks.remove(callback)

    def call_all(self) -> None:
        """Call every callback now."""
        for callback in list(self._callbacks):
            callback()

    def after_commit(self, session: Session) -> None:
        """Call every callback once ``session``'s transaction commits (never on rollback)."""
        callbacks = list(self._callbacks)
        if not callbacks:
            return

        def wake(_session: Session) -> None:
            for callback in callbacks:
                callback()

        event.listen(session, "after_commit", wake, once=True)
