"""A clock tests move by hand, so sleeps, retry backoff and signal timeouts never wait."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from durable_sa.errors import InvalidArgumentError


class FakeClock:
    """A callable clock for ``Durable(sa_engine, clock=FakeClock())``.

    It starts at ``start`` (default: 2030-01-01 UTC, so it never collides with the
    real time of leftover rows) and moves only when :meth:`advance` or :meth:`set` is
    called. It is thread-safe.
    """

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2030, 1, 1, tzinfo=UTC)
        if start.tzinfo is None:
            msg = "FakeClock needs a timezone-aware start"
            raise InvalidArgumentError(msg)
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        """The current fake time."""
        with self._lock:
            return self._now

    def __repr__(self) -> str:
        return f"<FakeClock {self().isoformat()}>"

    def advance(self, delta: timedelta | float) -> datetime:
        """Move forward by ``delta`` (a timedelta or seconds); the new time."""
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        if step < timedelta(0):
            msg = f"a clock only moves forward, not by {step}"
            raise InvalidArgumentError(msg)
        with self._lock:
            self._now += step
            return self._now

    def set(self, moment: datetime) -> None:
        """Jump to ``moment`` (aware, not earlier than now)."""
        if moment.tzinfo is None:
            msg = "FakeClock.set needs a timezone-aware datetime"
            raise InvalidArgumentError(msg)
        with self._lock:
            if moment < self._now:
                msg = f"a clock only moves forward: {moment} is before {self._now}"
                raise InvalidArgumentError(msg)
            self._now = moment.astimezone(UTC)
