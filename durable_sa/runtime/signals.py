"""SIGTERM and SIGINT stop a worker gracefully; a second signal stops it at once.

Handlers are installed only from the main thread and restored on exit, so a worker
embedded in another program (or a test) can run without them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import FrameType

logger = logging.getLogger(__name__)

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """Call ``stop`` on the first SIGTERM/SIGINT; exit the process on the second."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handle(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        name = signal.Signals(signum).name
        if len(received) == 1:
            logger.warning(
                "%s received: finishing in-flight steps, then stopping (send again to quit now)",
                name,
                extra={"action": "shutdown"},
            )
            stop()
        else:
            logger.error("%s received again: quitting now", name, extra={"action": "shutdown"})
            os._exit(1)

    previous = {sig: signal.signal(sig, handle) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
