"""A doorbell for idle threads that never misses a ring.

A thread notes :attr:`Wakeup.rung` before it looks for work; if it finds none it waits
with :meth:`Wakeup.wait`, which returns at once when the bell rang since that note (the
work arrived while it was looking), else at the next ring or after the timeout. Worker
slots and relays idle this way: a NOTIFY, an in-process commit or ``stop()`` rings.
"""

from __future__ import annotations

import threading


class Wakeup:
    """Rings counted by a generation number, so a ring between look and wait counts."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._generation = 0

    @property
    def rung(self) -> int:
        """How many times the bell has rung: note it before looking for work."""
        return self._generation

    def ring(self) -> None:
        """Wake every waiting thread, and any about to wait."""
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    def wait(self, seconds: float, seen: int) -> None:
        """Wait up to ``seconds`` for a ring, unless one came after ``seen`` was noted."""
        if seconds <= 0:
            return
        with self._condition:
            if self._generation == seen:  # nothing rang since the thread last looked
                self._condition.wait(seconds)
