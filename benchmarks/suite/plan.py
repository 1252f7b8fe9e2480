"""What a run measures: the scenario programs, their arguments and sizes, in running order.

:func:`plan` lists one repetition's measurements (:class:`Job`), each a scenario program
and its arguments, for the sizes of the mode (:data:`FULL` or :data:`QUICK`) and the
groups ``--only`` picked (:data:`GROUPS`). Nothing here runs anything:
:mod:`benchmarks.suite.measure` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from benchmarks.report.samples import RELAY_BACKENDS, RELAY_PREFIX, job_label

if TYPE_CHECKING:
    from collections.abc import Sequence

GROUPS: Final = (
    "floor",
    "throughput",
    "peers",
    "dbos",
    "procrastinate",
    "latency",
    "history",
    "memory",
    "fanout",
    "sqlite",
    "relay",
    "mixed",
    "controls",
    "tracing",
    "fairness",
)
"""What ``--only`` selects: ``floor`` is the PostgreSQL floor, ``throughput`` durable-sa's
worker configurations, ``peers`` both peers (or ``dbos`` / ``procrastinate`` alone),
``sqlite`` the SQLite floor and durable-sa on SQLite, ``relay`` scenario 2 through the
jobs table, Redis Streams and Celery (:mod:`benchmarks.relay_bench`), ``mixed`` one
worker on ``mixed6`` and on ``plain6``, and DBOS on its ``mixed6``; ``controls`` one worker
on ``bench3`` without and with a shared rate limit and a paused workflow, with active-run
limits, and with both (:func:`benchmarks.durable_bench.controls`); ``tracing`` one worker
on ``bench3`` with OpenTelemetry tracing off and on (:func:`benchmarks.durable_bench.
tracing`); ``fairness`` one worker
of C=4 on a hot key's runs and four cold keys' under ``max_active_per_key=1``
(:func:`benchmarks.durable_bench.fairness`)."""

RELAY_PROCESSES: Final = 1
RELAY_CONCURRENCY: Final = 4

DBOS_POLLING_INTERVAL_S: Final = 0.01
"""DBOS polls its queue once a second by default, which caps it at about C workflows a
second: we poll every 10 ms instead, so DBOS is measured at its best, not its default."""


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is in one mode (quick or full)."""

    mode: str
    n: int
    dbos_n: int
    procrastinate_n: int
    latency_n: int
    history_runs: int
    memory_runs: int
    memory_checkpoint: int
    fanout_n: int
    multi_process_concurrency: int
    relay_n: int
    mixed_n: int
    dbos_mixed_n: int
    fairness_hot: int
    fairness_cold: int
    """Runs of the fairness scenario's hot key (started first), and of each cold key."""
    timeout_s: float


FULL: Final = Sizes(
    mode="full",
    n=2000,
    dbos_n=1000,  # about 50 wf/s at C=1: 2000 would take 40 s a repetition
    procrastinate_n=2000,
    latency_n=200,
    history_runs=1_000_000,
    memory_runs=100_000,
    memory_checkpoint=10_000,
    fanout_n=20,
    multi_process_concurrency=16,
    relay_n=2000,
    mixed_n=1000,  # mixed6 runs at about 35 wf/s before the engine's rewrite: 30 s a repetition
    dbos_mixed_n=500,  # about 17 wf/s: 30 s a repetition
    fairness_hot=200,
    fairness_cold=40,
    timeout_s=600,
)
QUICK: Final = Sizes(
    mode="quick",
    n=200,
    dbos_n=100,
    procrastinate_n=100,
    latency_n=50,
    history_runs=20_000,
    memory_runs=2_000,
    memory_checkpoint=200,
    fanout_n=10,
    multi_process_concurrency=4,
    relay_n=300,
    mixed_n=200,
    dbos_mixed_n=100,
    fairness_hot=100,
    fairness_cold=20,
    timeout_s=60,
)


@dataclass(frozen=True)
class Job:
    """One scenario program with its arguments (the database URL is added per run)."""

    group: str
    kind: str
    system: str
    module: str
    args: tuple[str, ...]
    database: str = "postgresql"
    processes: int | None = None
    concurrency: int | None = None
    timeout_s: float = 600
    broker: bool = False
    """Whether the program needs the suite's Redis server (``--broker-url``)."""

    @property
    def label(self) -> str:
        """``durable-sa P=1 C=4``, ``dbos C=16``, ``floor sqlite``."""
        return job_label(self.kind, self.system, self.processes, self.concurrency)


def plan(sizes: Sizes, only: Sequence[str] | None = None) -> list[Job]:
    """Every measurement of one repetition, in the order they run."""
    n = ("--n", str(sizes.n))
    timeout = sizes.timeout_s

    def ours(group: str, kind: str, *args: str, **where: Any) -> Job:  # noqa: ANN401 - Job's fields
        where.setdefault("timeout_s", timeout)
        return Job(group, kind, "durable-sa", "benchmarks.durable_bench", args, **where)

    def peer(system: str, c: int, *args: str) -> Job:
        module = f"benchmarks.peers.{system}_peer"
        options = (*args, "--concurrency", str(c))
        return Job(system, "peer", system, module, options, concurrency=c, timeout_s=timeout)

    def mixed(workflow: str) -> Job:
        args = ("mixed", "--workflow", workflow, "--n", str(sizes.mixed_n))
        return ours("mixed", workflow, *args, processes=1, concurrency=1)

    configs = [(1, 1), (1, 4), (1, 16)]
    configs += [(p, sizes.multi_process_concurrency) for p in (2, 4)]
    one_worker = ("--processes", "1", "--concurrency", "1")
    dbos = ("--n", str(sizes.dbos_n), "--polling-interval", str(DBOS_POLLING_INTERVAL_S))
    memory = ("--runs", str(sizes.memory_runs), "--checkpoint", str(sizes.memory_checkpoint))
    jobs = [
        Job("floor", "floor", "floor", "benchmarks.floor", n, timeout_s=timeout),
        *(
            ours("throughput", "throughput", "throughput", *n, "--processes", str(p),
                 "--concurrency", str(c), processes=p, concurrency=c)
            for p, c in configs
        ),
        *(
            job
            for c in (1, 4, 16)
            for job in (
                peer("dbos", c, *dbos),
                peer("procrastinate", c, "--n", str(sizes.procrastinate_n)),
            )
        ),
        ours("latency", "latency", "latency", "--n", str(sizes.latency_n)),
        ours("history", "history", "history", *n, "--history", str(sizes.history_runs),
             timeout_s=2 * timeout),
        ours("memory", "memory", "memory", *memory, timeout_s=2 * timeout),
        ours("fanout", "fanout", "fanout", "--n", str(sizes.fanout_n)),
        Job("sqlite", "sqlite_floor", "floor", "benchmarks.floor", n, database="sqlite",
            timeout_s=timeout),
        ours("sqlite", "sqlite", "throughput", *n, *one_worker, database="sqlite"),
        *(
            Job("relay", f"{RELAY_PREFIX}{backend}", "durable-sa", "benchmarks.relay_bench",
                ("--backend", backend, "--n", str(sizes.relay_n),
                 "--processes", str(RELAY_PROCESSES), "--concurrency", str(RELAY_CONCURRENCY)),
                processes=RELAY_PROCESSES, concurrency=RELAY_CONCURRENCY,
                broker=backend != "jobs_table", timeout_s=timeout)
            for backend in RELAY_BACKENDS
        ),
        mixed("mixed6"),
        mixed("plain6"),
        *(
            ours("controls", f"controls_{mode}", "controls", "--mode", mode, *n,
                 processes=1, concurrency=1)
            for mode in ("off", "idle", "on", "limits", "both")
        ),
        *(
            ours("tracing", f"tracing_{mode}", "tracing", "--mode", mode, *n,
                 processes=1, concurrency=1)
            for mode in ("off", "on")
        ),
        ours("fairness", "fairness", "fairness", "--hot", str(sizes.fairness_hot),
             "--cold", str(sizes.fairness_cold), processes=1, concurrency=4),
        Job("mixed", "mixed6", "dbos", "benchmarks.peers.dbos_mixed_peer",
            ("--n", str(sizes.dbos_mixed_n), "--polling-interval", str(DBOS_POLLING_INTERVAL_S),
             "--concurrency", "1"), concurrency=1, timeout_s=timeout),
    ]  # fmt: skip
    if not only:
        return jobs
    wanted = set(only)
    if "peers" in wanted:
        wanted |= {"dbos", "procrastinate"}
    return [job for job in jobs if job.group in wanted]
