"""One lifecycle for the long-running parts: a worker and a relay start and stop alike.

Rules:
- ``run()`` serves in the calling thread until :meth:`Service.stop` (or SIGTERM/SIGINT,
  when it installs the handlers); ``start()`` serves in a thread of its own and returns
  once the service says it is serving (or has ended).
- ``stop()`` asks the service to end and wakes it; ``join()`` waits until it has ended.
  A service that ends for any reason, an error included, counts as stopped, so
  ``stop(wait=True)`` never hangs on a service that died while starting.
- Idle waits wake early on :meth:`Service.wake`, and never start once stopping.
- After an error a service pauses before it tries again, a little longer each time, up
  to :data:`MAX_ERROR_PAUSE`; the next success resets the pause.
"""

from __future__ import annotations

import abc
import threading
from typing import TYPE_CHECKING, ClassVar, Final, Self

from durable_sa.runtime.reach import wait_for_database
from durable_sa.runtime.signals import stop_on_signals
from durable_sa.runtime.wakeup import Wakeup

if TYPE_CHECKING:
    from datetime import timedelta
    from types import TracebackType

    from sqlalchemy import Engine

MAX_ERROR_PAUSE: Final = 5.0
"""The longest pause, in seconds, between two tries after errors."""
_FIRST_ERROR_PAUSE: Final = 0.1
_READY_TIMEOUT: Final = 30.0


class ErrorPause:
    """The pause before the next try after an error: doubles, capped; reset by a success."""

    def __init__(self) -> None:
        """Start at the first pause."""
        self.seconds = _FIRST_ERROR_PAUSE

    def failed(self) -> float:
        """The pause to take now; the next one is twice as long (at most the cap)."""
        now = self.seconds
        self.seconds = min(self.seconds * 2, MAX_ERROR_PAUSE)
        return now

    def succeeded(self) -> None:
        """Back to the first pause."""
        self.seconds = _FIRST_ERROR_PAUSE


class Service(abc.ABC):
    """Start, stop, wait and wake-ups for a long-running part; see the module docstring."""

    daemon_thread: ClassVar[bool] = False
    """Whether ``start()``'s thread lets the interpreter exit while it serves."""

    def __init__(self, thread_name: str) -> None:
        """Prepare the lifecycle; ``thread_name`` names ``start()``'s thread."""
        self._thread_name = thread_name
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._serving = threading.Event()
        self._wakeup = Wakeup()
        self._thread: threading.Thread | None = None

    @abc.abstractmethod
    def _serve(self) -> None:
        """The service's whole life: call :meth:`_ready` once serving, return once stopping."""

    def run(self, *, install_signal_handlers: bool = True) -> None:
        """Serve until :meth:`stop` (or SIGTERM/SIGINT when the handlers are installed)."""
        if install_signal_handlers:
            with stop_on_signals(self.stop):
                self._lifetime()
        else:
            self._lifetime()

    def start(self) -> Self:
        """Serve in a background thread; returns once serving (or ended)."""
        self._thread = threading.Thread(
            target=self._lifetime, name=self._thread_name, daemon=self.daemon_thread
        )
        self._thread.start()
        self._serving.wait(timeout=_READY_TIMEOUT)
        return self

    def stop(self, *, wait: bool = False) -> None:
        """Ask the service to end (what it holds finishes as it says); ``wait`` for it."""
        self._stopping.set()
        self.wake()
        if wait:
            self.join()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the service has ended; True if it did within ``timeout``."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(wait=True)

    def wake(self) -> None:
        """Cut short the service's idle waits: there is work to look at."""
        self._wakeup.ring()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was asked for."""
        return self._stopping.is_set()

    def _ready(self) -> None:
        """Say the service is serving (``start()`` returns)."""
        self._serving.set()

    def _reach(self, sa_engine: Engine, timeout: timedelta, who: str) -> bool:
        """Wait for the database at start-up; False when stopped first (see :mod:`.reach`)."""
        return wait_for_database(sa_engine, timeout=timeout, stopping=self._stopping, who=who)

    def _idle(self, seconds: float, seen: int) -> None:
        """Wait up to ``seconds``, or until a wake-up after the ``seen`` one."""
        if not self._stopping.is_set():
            self._wakeup.wait(seconds, seen)

    def _lifetime(self) -> None:
        try:
            self._serve()
        finally:
            self._serving.set()
            self._stopped.set()
