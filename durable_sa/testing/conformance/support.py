"""What both conformance suites use, and a backend's own tests may use too.

Waiting for something that happens in another thread (:func:`eventually`), making a
relay backend deliver what is due now (:func:`publish`), and a durable-sa worker in this
process as the default consumer (:func:`in_process_worker`).
"""

from __future__ import annotations

import contextlib
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from durable_sa.facade import Durable

WAIT_SECONDS: Final = 30.0
"""How long a scenario may take end to end before the test fails."""


def publish(engine: Durable) -> int:
    """Relay every due outbox row now (relay backends); how many were published."""
    if engine.backend.capabilities.outbox:
        return engine.relay().drain()
    return 0


def eventually(check: Callable[[], bool], *, timeout: float = WAIT_SECONDS) -> bool:
    """Poll ``check`` until it holds or ``timeout`` seconds pass; whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


@contextlib.contextmanager
def in_process_worker(engine: Durable) -> Iterator[None]:
    """A durable-sa worker (and, for relay backends, its relay thread) in this process."""
    worker = engine.worker(
        concurrency=4,
        lease=timedelta(seconds=4),
        heartbeat=timedelta(seconds=1),
        poll_interval=0.1,
        name="conformance-worker",
    )
    with worker:
        yield
