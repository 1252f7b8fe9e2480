"""A worker's schedule thread: fire due schedules, then sleep until the next tick.

Rules:
- Every worker runs one; there is no leader. Firing is the engine's
  ``fire_schedules`` (:mod:`durable_sa.engine.schedules`): each due schedule is fired
  by exactly one transaction, whichever worker's it is.
- The thread sleeps until the earliest next tick of the schedules this process can fire,
  or the poll interval (a ``buffer_one`` tick waits for a run's end, which nothing
  announces), whichever is sooner; ``stop`` wakes it at once.
- Database errors are logged and retried with a growing pause, as the slots do.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Final, Protocol, runtime_checkable

from durable_sa.core.registry import registry
from durable_sa.engine import schedules
from durable_sa.runtime.service import ErrorPause

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime

    from durable_sa.core.schedules import FiredTick
    from durable_sa.engine.shell import Shell

logger = logging.getLogger(__name__)

_HELD_ELSEWHERE: Final = 0.02
"""Seconds before looking again at a due schedule another worker is firing."""


@runtime_checkable
class FiresSchedules(Protocol):
    """An engine that fires its due schedules (:class:`~durable_sa.Durable` does)."""

    def fire_schedules(self, *, now: datetime | None = None) -> Sequence[FiredTick]:
        """Fire the due schedules; the runs started."""
        ...


class ScheduleThread:
    """Fires an engine's due schedules until ``stopping`` is set."""

    def __init__(  # noqa: PLR0913 - the thread's parts, keyword-only
        self,
        engine: FiresSchedules,
        shell: Shell,
        *,
        interval: float,
        stopping: threading.Event,
        on_fired: Callable[[], None],
        worker: str,
    ) -> None:
        """Prepare the thread; :meth:`start` runs it."""
        self._engine = engine
        self._shell = shell
        self._interval = interval
        self._stopping = stopping
        self._on_fired = on_fired
        self._worker = worker
        self._thread = threading.Thread(
            target=self._run, name=f"durable-sa-schedules-{worker}", daemon=True
        )

    def start(self) -> None:
        """Begin firing in the background."""
        self._thread.start()

    def join(self, timeout: float) -> None:
        """Wait for the thread to end (after ``stopping`` was set)."""
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        pause = ErrorPause()
        while not self._stopping.is_set():
            try:
                fired = self._engine.fire_schedules()
                if fired:
                    self._on_fired()
                    logger.info(
                        "worker %s fired %d scheduled run(s)",
                        self._worker,
                        len(fired),
                        extra={"action": "schedules_fired", "worker": self._worker},
                    )
                wait = self._until_next_tick()
                pause.succeeded()
            except Exception as exc:  # noqa: BLE001 - a database blip must not end the thread
                wait = pause.failed()
                logger.warning(
                    "firing schedules failed (%s: %s); retrying in %.1f s",
                    type(exc).__name__,
                    exc,
                    wait,
                    extra={"action": "schedules_failed", "worker": self._worker},
                )
            self._stopping.wait(wait)

    def _until_next_tick(self) -> float:
        earliest = schedules.earliest(self._shell, registry.names())
        if earliest is None:
            return self._interval
        seconds = (earliest - self._shell.now()).total_seconds()
        # Due already but not fired by this pass: another worker holds it; look again soon.
        return max(_HELD_ELSEWHERE, min(self._interval, seconds))
