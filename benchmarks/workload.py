"""The workflows every durable-sa scenario runs, and the engine a worker process loads.

``bench3`` is the shape all systems are compared on: three trivial steps, each returning
a small JSON value. ``fanout16`` is one parallel step of sixteen 10 ms sleeps. The first
step of ``bench3`` records ``time.monotonic()`` (system-wide on Linux, so comparable
across processes) so the latency scenario can measure start → first handler call.

A worker process is started as ``python -m benchmarks.durable_worker`` with the database
URL in ``DURABLE_SA_BENCH_URL``. ``DURABLE_SA_BENCH_BACKEND`` picks the queue backend (the
relay scenario): unset or empty for the jobs table, a ``redis://`` URL for Redis Streams,
or ``celery`` for the Celery app of :mod:`benchmarks.relay_celery_app`, whose broker URL
is in ``DURABLE_SA_BENCH_BROKER``.
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
BACKEND_ENV: Final = "DURABLE_SA_BENCH_BACKEND"
BROKER_ENV: Final = "DURABLE_SA_BENCH_BROKER"
CELERY: Final = "celery"
CELERY_APP: Final = "benchmarks.relay_celery_app:app"
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


def engine_for(url: str, backend: str | None = None) -> Durable:
    """An engine on ``url`` (the workflows registered themselves at import).

    ``backend``: ``None`` (or empty) for the jobs table, a ``redis://`` URL for Redis
    Streams, ``celery`` for the Celery app of :mod:`benchmarks.relay_celery_app` (named
    by its import path: its broker URL must be in ``DURABLE_SA_BENCH_BROKER``).
    """
    pool = {"pool_size": 20, "max_overflow": 20} if url.startswith("postgresql") else {}
    sa_engine = create_engine(url, **pool)
    if not backend:
        return Durable(sa_engine)
    if backend == CELERY:
        return Durable(sa_engine, backend=CELERY, backend_options={"app": CELERY_APP})
    return Durable(sa_engine, backend=backend)


def engine_from_env() -> Durable:
    """The engine a worker process runs (``DURABLE_SA_BENCH_URL``, ``…_BACKEND``)."""
    return engine_for(os.environ[URL_ENV], os.environ.get(BACKEND_ENV) or None)
