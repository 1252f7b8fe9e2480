"""What both throwaway servers share.

The loopback address, free ports, the start/stop context manager, and turning SIGTERM
into KeyboardInterrupt so that a killed test run still stops its servers.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from typing import TYPE_CHECKING, Final, Self, TypeVar

from durable_sa.runtime.addresses import LOOPBACK

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path
    from types import FrameType, TracebackType


HOST: Final = LOOPBACK
"""The only address the servers listen on (the engine's one loopback address)."""

_T = TypeVar("_T")
_START_ATTEMPTS = 3  # a free port can be taken by someone else before the server binds it


def _free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _started(value: _T | None, error: type[Exception]) -> _T:
    """``value``, set once the server has started; else ``error`` ("server not started")."""
    if value is None:
        msg = "server not started"
        raise error(msg)
    return value


def _log_tail(log_file: Path | None, lines: int = 30) -> str:
    """The last lines of a server's log, to explain a failure (``""`` when there is none)."""
    if log_file is None or not log_file.exists():
        return ""
    tail = log_file.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- last lines of {log_file} ---\n" + "\n".join(tail)


class _Server:
    """Used as a context manager, a server is started on entry and stopped on exit."""

    def start(self) -> Self:
        """Start the server; return ``self``."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        """Start the server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()


@contextlib.contextmanager
def sigterm_as_keyboard_interrupt() -> Iterator[None]:
    """Within the block, turn SIGTERM into :class:`KeyboardInterrupt`.

    By default SIGTERM ends Python without running ``finally`` blocks, fixture
    teardowns or :mod:`atexit` handlers, which would leave the server running. As a
    KeyboardInterrupt, pytest stops the session and tears everything down, as on Ctrl-C.
    Only a default SIGTERM handler in the main thread is replaced.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
