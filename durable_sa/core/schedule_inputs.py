"""Input callables of schedules, registered in this process under the schedule's name.

A schedule's ``input`` may be a callable ``fire_time -> mapping``. A callable cannot be
stored, so ``engine.schedule(...)`` registers it here and stores only that the schedule
has one; the worker that fires a tick calls it. A worker whose process has not
registered it (it did not run that ``engine.schedule(...)`` call, at import time for
instance) leaves the schedule to workers that have, as it leaves runs of workflows it
does not define.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from datetime import datetime


class ScheduleInputs:
    """Schedule name → the callable that makes each tick's input (thread-safe)."""

    def __init__(self) -> None:
        """An empty registry."""
        self._makers: dict[str, Callable[[datetime], Mapping[str, Any]]] = {}
        self._lock = threading.Lock()

    def register(self, name: str, maker: Callable[[datetime], Mapping[str, Any]]) -> None:
        """Make ``maker`` the input of schedule ``name`` in this process."""
        with self._lock:
            self._makers[name] = maker

    def get(self, name: str) -> Callable[[datetime], Mapping[str, Any]] | None:
        """The callable of schedule ``name``, if this process registered one."""
        with self._lock:
            return self._makers.get(name)

    def names(self) -> list[str]:
        """The schedules whose callable this process registered."""
        with self._lock:
            return sorted(self._makers)

    def unregister(self, name: str) -> None:
        """Forget schedule ``name``'s callable (nothing if it had none)."""
        with self._lock:
            self._makers.pop(name, None)


schedule_inputs = ScheduleInputs()
"""The process's schedule input callables."""
