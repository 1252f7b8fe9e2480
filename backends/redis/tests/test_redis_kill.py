"""SIGKILL of relays and consumers at random instants: no run lost, no job stranded.

The crash-test workload (:mod:`durable_sa.testing.workload`) runs through Redis Streams:
separate ``durable-sa relay`` processes publish the outbox, ``durable-sa worker
--no-relay`` processes consume the stream, and the test kills one of them at random,
again and again, while runs are in flight, restarting each victim at once.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from durable_sa import Durable
from durable_sa.testing.conformance import eventually
from durable_sa.testing.processes import APP, WorkerProcess
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

RUNS_PER_WORKFLOW = 60  # 180 runs of 5+ steps
CONSUMERS = 2
RELAYS = 2
MIN_KILLS = 16
SEED = 20261125
CONSUMER_ARGS = ("--no-relay", "--concurrency", "4", "--lease", "2", "--heartbeat", "0.5")
RELAY_ARGS = ("--poll-interval", "0.05", "--batch-size", "20")
STEP_SECONDS = 0.05


@pytest.fixture
def kill_engine(durable_workload_url: str, durable_redis_url: str) -> Iterator[Durable]:
    sa_engine = sa.create_engine(durable_workload_url, pool_pre_ping=True)
    define_workload(sa_engine)
    yield Durable(sa_engine, backend=durable_redis_url)
    sa_engine.dispose()


def test_random_sigkill_of_relays_and_consumers_loses_nothing(
    durable_workload_url: str, kill_engine: Durable, durable_redis_url: str
) -> None:
    rng = random.Random(SEED)  # noqa: S311 - a reproducible schedule, not crypto
    run_ids = {
        name: [kill_engine.start(name, {"i": i}).run_id for i in range(RUNS_PER_WORKFLOW)]
        for name in EXPECTED
    }
    everything = [run_id for ids in run_ids.values() for run_id in ids]

    def spawn(role: str) -> WorkerProcess:
        command, args = (
            (("relay", APP), RELAY_ARGS) if role == "relay" else (("worker", APP), CONSUMER_ARGS)
        )
        return WorkerProcess(
            durable_workload_url,
            *args,
            step_seconds=STEP_SECONDS,
            command=command,
            backend=durable_redis_url,
        ).start()

    roles = ["relay"] * RELAYS + ["consumer"] * CONSUMERS
    processes = [spawn(role) for role in roles]
    kills = {"relay": 0, "consumer": 0}
    started = time.monotonic()
    try:
        while sum(kills.values()) < MIN_KILLS and time.monotonic() - started < 120:
            time.sleep(rng.uniform(0.2, 0.8))
            if not wait_until_all_terminal(kill_engine.sa_engine, everything, timeout=0):
                break  # the workload is done: later kills would prove nothing
            victim = rng.randrange(len(processes))
            processes[victim].kill()
            kills[roles[victim]] += 1
            processes[victim] = spawn(roles[victim])
        left_open = wait_until_all_terminal(kill_engine.sa_engine, everything, timeout=240)
        # Entries of killed consumers come back after their lease and are dropped as stale.
        drained = eventually(lambda: kill_engine.backend.pending_count() == 0, timeout=60)
        codes = [process.terminate() for process in processes]
        outputs = [process.output() for process in processes]
    finally:
        for process in processes:
            process.close()

    figures = summary(kill_engine.sa_engine)
    stranded = unpublished_outbox_rows(kill_engine.sa_engine)
    in_stream = kill_engine.backend.pending_count()
    figures |= {
        "runs": len(everything),
        "relay_kills": kills["relay"],
        "consumer_kills": kills["consumer"],
        "lost_runs": left_open,
        "stranded_outbox_rows": stranded,
        "entries_left_in_streams": in_stream,
    }
    print(f"\nRedis Streams kill -9: {figures}")  # noqa: T201 - the figures are the report

    assert sum(kills.values()) >= MIN_KILLS
    assert kills["relay"] > 0
    assert kills["consumer"] > 0
    assert left_open == 0
    assert drained, "entries stayed in the streams"
    assert stranded == 0
    assert codes == [0] * len(processes), outputs
    assert_runs_ended_as_expected(kill_engine.sa_engine, run_ids)
    assert figures["duplicate_journal_rows"] == 0
    assert figures["dead_letters"] == 0
    assert kill_engine.recover() == 0
