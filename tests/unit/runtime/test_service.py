"""The lifecycle the worker and the relay share: start, stop, join, wake, error pauses."""

from __future__ import annotations

import threading
import time

import pytest

from durable_sa.runtime.service import MAX_ERROR_PAUSE, ErrorPause, Service


class Ticker(Service):
    """Counts wake-ups until stopped."""

    def __init__(self, *, fail_at_start: bool = False) -> None:
        super().__init__("ticker")
        self.fail_at_start = fail_at_start
        self.ticks = 0
        self.thread: threading.Thread | None = None

    def _serve(self) -> None:
        if self.fail_at_start:
            msg = "cannot start"
            raise RuntimeError(msg)
        self.thread = threading.current_thread()
        self._ready()
        while not self.stopping:
            seen = self._wakeup.rung
            self.ticks += 1
            self._idle(10.0, seen)


def test_start_serves_in_a_thread_and_stop_ends_it() -> None:
    ticker = Ticker().start()
    assert ticker.thread is not None
    assert ticker.thread.name == "ticker"
    assert ticker.thread is not threading.current_thread()
    assert not ticker.join(timeout=0.05)
    ticker.stop(wait=True)
    assert ticker.join(timeout=0)
    assert not ticker.thread.is_alive()


def test_wake_cuts_an_idle_wait_short() -> None:
    with Ticker() as ticker:
        before = ticker.ticks
        began = time.monotonic()
        ticker.wake()
        while ticker.ticks == before and time.monotonic() - began < 5:
            time.sleep(0.01)
        assert ticker.ticks > before
        assert time.monotonic() - began < 5  # far below the 10 s idle wait


def test_a_service_that_dies_while_starting_counts_as_stopped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ticker = Ticker(fail_at_start=True)
    failures: list[type[BaseException]] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: failures.append(args.exc_type))
    began = time.monotonic()
    ticker.start()  # returns at once: the service ended
    ticker.stop(wait=True)  # and never hangs
    assert time.monotonic() - began < 5
    assert failures == [RuntimeError]


def test_run_serves_in_the_calling_thread() -> None:
    ticker = Ticker()
    threading.Timer(0.1, ticker.stop).start()
    ticker.run(install_signal_handlers=False)
    assert ticker.thread is threading.current_thread()
    assert ticker.join(timeout=0)


def test_the_error_pause_doubles_up_to_its_cap_and_resets() -> None:
    pause = ErrorPause()
    waits = [pause.failed() for _ in range(10)]
    assert waits[:3] == [0.1, 0.2, 0.4]
    assert max(waits) == MAX_ERROR_PAUSE
    assert waits == sorted(waits)
    pause.succeeded()
    assert pause.failed() == pytest.approx(0.1)
