"""The workflows every durable-sa scenario runs, and the engine a worker process loads.

``bench3`` is the shape all systems are compared on: three trivial steps, each returning
a small JSON value. ``fanout16`` is one parallel step of sixteen 10 ms sleeps. The first
step of ``bench3`` records ``time.monotonic()`` (system-wide on Linux, so comparable
across processes) so the latency scenario can measure start → first handler call.

A worker process is started as ``python -m benchmarks.durable_worker`` with the database
URL in ``DURABLE_SA_BENCH_URL``.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Final

from sqlalchemy import create_engine

from durable_sa import Durable, ParallelEntry, durable

if TYPE_CHECKING:
    from durable_sa.context import DurableContext

URL_ENV: Final = "DURABLE_SA_BENCH_URL"
FANOUT_ENTRIES: Final = 16
FANOUT_SLEEP_S: Final = 0.010


def first(ctx: DurableContext) -> float:
    """Step 1: when it ran (monotonic clock), for the latency scenario."""
    del ctx
    return time.monotonic()


def second(ctx: DurableContext) -> int:
    """Step 2: trivial."""
    del ctx
    return 2


def third(ctx: DurableContext) -> int:
    """Step 3: trivial."""
    del ctx
    return 3


def _nap(ctx: DurableContext) -> int:
    del ctx
    time.sleep(FANOUT_SLEEP_S)
    return 1


bench3 = durable("bench3").step("first", first).step("second", second).step("third", third)

fanout16 = durable("fanout16").parallel(
    "fan", [ParallelEntry(name=f"e{i}", handler=_nap) for i in range(FANOUT_ENTRIES)]
)


def engine_for(url: str) -> Durable:
    """An engine on ``url`` (the workflows registered themselves at import)."""
    pool = {"pool_size": 20, "max_overflow": 20} if url.startswith("postgresql") else {}
    return Durable(create_engine(url, **pool))


def engine_from_env() -> Durable:
    """The engine a worker process runs (``DURABLE_SA_BENCH_URL``)."""
    return engine_for(os.environ[URL_ENV])
