"""SIGKILL of relays and Celery workers at random instants: no run lost, no job stranded.

The crash-test workload (:mod:`durable_sa.testing.workload`) runs through Celery: separate
``durable-sa relay`` processes publish the outbox as task messages, and real ``celery
worker`` processes (prefork, ``acks_late``) run the steps. The test kills one of them at
random (a relay, a worker's main process, or one of its pool processes), again and
again, while runs are in flight, and restarts a killed relay or worker at once.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from celery_config import make_app
from conftest import HERE, CeleryWorker

from durable_sa import Durable
from durable_sa.testing.conformance import eventually
from durable_sa.testing.processes import WorkerProcess
from durable_sa.testing.workload import (
    EXPECTED,
    assert_runs_ended_as_expected,
    define_workload,
    summary,
    unpublished_outbox_rows,
    wait_until_all_terminal,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.reliability

RUNS_PER_WORKFLOW = 50  # 150 runs of 5+ steps
RELAYS = 2
WORKERS = 2
MIN_KILLS = 12
SEED = 20261125
RELAY_ARGS = ("--poll-interval", "0.05", "--batch-size", "20")
REDELIVER_AFTER = 20  # seconds: above the visibility timeout and any step's run time


@pytest.fixture
def kill_engine(durable_workload_url: str, durable_redis_url: str) -> Iterator[Durable]:
    sa_engine = sa.create_engine(durable_workload_url, pool_pre_ping=True)
    define_workload(sa_engine)
    yield Durable(
        sa_engine,
        backend="celery",
        backend_options={
            "app": make_app(durable_redis_url),
            "redeliver_after": timedelta(seconds=REDELIVER_AFTER),
        },
    )
    sa_engine.dispose()


def pool_children(worker: CeleryWorker) -> list[int]:
    """The pool processes of a Celery worker (the children of the PID we started)."""
    assert worker.proc is not None
    parent = str(worker.proc.pid)
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[1] == parent:  # field 4 of /proc/PID/stat: the parent's PID
                children.append(int(stat.parent.name))
    return children


def kill_worker(worker: CeleryWorker) -> None:
    """SIGKILL a worker's main process and its pool processes: the machine died."""
    children = pool_children(worker)
    worker.kill()
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class Fleet:
    """The relays and Celery workers of one test, killed and restarted at random."""

    def __init__(self, database_url: str, broker_url: str) -> None:
        self.database_url = database_url
        self.broker_url = broker_url
        self.env = {
            "CELERY_BROKER_URL": broker_url,
            "DURABLE_SA_REDELIVER_AFTER": str(REDELIVER_AFTER),
        }
        self.relays = [self.spawn_relay() for _ in range(RELAYS)]
        self.workers = [self.spawn_worker() for _ in range(WORKERS)]
        self.kills = {"relay": 0, "worker": 0, "pool_process": 0}

    def spawn_relay(self) -> WorkerProcess:
        return WorkerProcess(
            self.database_url,
            *RELAY_ARGS,
            command=("relay", "celery_test_app:engine"),
            env=self.env,
            pythonpath=[HERE],
        ).start()

    def spawn_worker(self) -> CeleryWorker:
        name = f"k{time.time_ns()}"
        return CeleryWorker(
            self.database_url, self.broker_url, concurrency=3, name=name, env=self.env
        ).start()

    def kill_one(self, rng: random.Random) -> None:
        target = rng.choice(list(self.kills))
        if target == "relay":
            victim = rng.randrange(RELAYS)
            self.relays[victim].kill()
            self.relays[victim] = self.spawn_relay()
        elif target == "worker":
            victim = rng.randrange(WORKERS)
            kill_worker(self.workers[victim])
            self.workers[victim].close()
            self.workers[victim] = self.spawn_worker()
        else:
            children = pool_children(self.workers[rng.randrange(WORKERS)])
            if not children:
                return
            os.kill(rng.choice(children), signal.SIGKILL)
        self.kills[target] += 1

    def terminate(self) -> list[int]:
        return [p.terminate() for p in self.relays] + [w.terminate() for w in self.workers]

    def close(self) -> None:
        for process in [*self.relays, *self.workers]:
            process.close()


def test_random_sigkill_of_relays_and_celery_workers_loses_nothing(
    durable_workload_url: str, kill_engine: Durable, durable_redis_url: str
) -> None:
    rng = random.Random(SEED)  # noqa: S311 - a reproducible schedule, not crypto
    run_ids = {
        name: [kill_engine.start(name, {"i": i}).run_id for i in range(RUNS_PER_WORKFLOW)]
        for name in EXPECTED
    }
    everything = [run_id for ids in run_ids.values() for run_id in ids]
    fleet = Fleet(durable_workload_url, durable_redis_url)
    started = time.monotonic()
    try:
        while sum(fleet.kills.values()) < MIN_KILLS and time.monotonic() - started < 150:
            time.sleep(rng.uniform(0.2, 0.7))
            if not wait_until_all_terminal(kill_engine.sa_engine, everything, timeout=0):
                break
            fleet.kill_one(rng)
        left_open = wait_until_all_terminal(kill_engine.sa_engine, everything, timeout=180)
        drained = eventually(lambda: kill_engine.backend.pending_count() == 0, timeout=60)
        codes = fleet.terminate()
    finally:
        fleet.close()
    kills = fleet.kills

    figures = summary(kill_engine.sa_engine)
    stranded = unpublished_outbox_rows(kill_engine.sa_engine)
    figures |= {
        "runs": len(everything),
        **{f"{role}_kills": count for role, count in kills.items()},
        "lost_runs": left_open,
        "stranded_outbox_rows": stranded,
    }
    print(f"\nCelery kill -9: {figures}")  # noqa: T201 - the figures are the report

    assert sum(kills.values()) >= MIN_KILLS
    assert left_open == 0
    assert drained, "messages stayed in Celery's queues"
    assert stranded == 0
    assert codes == [0] * len(codes)
    assert_runs_ended_as_expected(kill_engine.sa_engine, run_ids)
    assert figures["duplicate_journal_rows"] == 0
    assert figures["dead_letters"] == 0
