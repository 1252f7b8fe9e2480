"""The Celery app of the relay scenario: its Celery workers run the benchmark's jobs.

Started as ``celery -A benchmarks.relay_celery_app:app worker`` by
:mod:`benchmarks.relay_bench`, with everything in the environment: the broker URL in
``DURABLE_SA_BENCH_BROKER`` and the database URL in ``DURABLE_SA_BENCH_URL``. The relay
process names the same app by its import path (``benchmarks.workload.engine_for`` with
the ``celery`` backend), so both sides send to and read from the same queue.

The settings are the ones durable-sa needs (``durable_sa_celery.settings()``):
``task_acks_late`` (a message is acknowledged only once the step's checkpoint has
committed) and ``worker_prefetch_multiplier = 1`` (a pool process holds one message at a
time). The visibility timeout is a minute rather than the tests' few seconds: nothing is
killed here, and a message waiting behind a slow neighbour must not be handed out twice.

The durable engine is made on first use, in each pool process after the fork (so no
process inherits another's connections), through the factory given to ``install``.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

from celery import Celery
from durable_sa_celery import install, settings

from benchmarks.workload import BROKER_ENV, CELERY, URL_ENV, engine_for

if TYPE_CHECKING:
    from durable_sa import Durable

VISIBILITY_TIMEOUT_S = 60


def make_app(broker_url: str) -> Celery:
    """A Celery app on ``broker_url`` configured the way durable-sa needs it."""
    celery_app = Celery("durable-sa-bench", broker=broker_url)
    celery_app.conf.update(settings(visibility_timeout=VISIBILITY_TIMEOUT_S, restore_every=1))
    celery_app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)
    return celery_app


@functools.cache
def engine() -> Durable:
    """The durable engine of this process, on the Celery backend (made once)."""
    return engine_for(os.environ[URL_ENV], CELERY)


app = make_app(os.environ[BROKER_ENV])
task = install(app, engine)
