"""durable-sa's own scenarios: throughput, latency, memory, fan-out, SQLite, mixed, controls,
tracing, fairness.

Each scenario runs in this process (the client that starts runs) plus real worker
processes (:mod:`benchmarks.durable_worker`) on a fresh database, and prints one JSON
line. Run as ``python -m benchmarks.durable_bench SCENARIO --url URL ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import psycopg
from sqlalchemy import func, select, text

from benchmarks.workload import (
    BENCH_RATE_LIMIT,
    LIMITS_KEYS,
    ORDERS_METADATA,
    TRACING_ENV,
    URL_ENV,
    bench_orders,
    engine_for,
    trace_in_memory,
)
from durable_sa.store.models import runs_table
from durable_sa.store.notify import RUNS_CHANNEL

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from contextlib import AbstractContextManager

    from durable_sa import Durable

_POLL_S = 0.005


class Workers:
    """``processes`` worker processes, started idle and released together."""

    def __init__(
        self,
        url: str,
        *,
        processes: int,
        concurrency: int,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Start the processes (``env`` added to theirs) and wait until each has connected."""
        env = {**os.environ, URL_ENV: url, **(env or {})}
        self.procs = [
            subprocess.Popen(  # noqa: S603 - our own module, run with our interpreter
                [
                    sys.executable,
                    "-m",
                    "benchmarks.durable_worker",
                    "--concurrency",
                    str(concurrency),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
                text=True,
            )
            for _ in range(processes)
        ]
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if line != "ready":
                msg = f"worker process {proc.pid} failed to start"
                raise RuntimeError(msg)

    def go(self) -> None:
        """Let every worker start claiming."""
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()

    def stop(self) -> list[dict[str, Any]]:
        """Stop every worker; their CPU reports."""
        reports = []
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write("stop\n")
            proc.stdin.flush()
        for proc in self.procs:
            assert proc.stdout is not None
            reports.append(json.loads(proc.stdout.readline()))
            proc.wait(timeout=60)
        return reports


def completed(engine: Durable, *, after: int = 0) -> int:
    """How many runs with an id above ``after`` have completed."""
    with engine.sa_engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).where(
                    runs_table.c.status == "completed", runs_table.c.id > after
                )
            ).scalar_one()
        )


def last_run_id(engine: Durable) -> int:
    """The highest run id so far (0 for none): runs started later have higher ids."""
    with engine.sa_engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.max(runs_table.c.id), 0))).scalar_one())


def wait_completed(engine: Durable, n: int, timeout: float, *, after: int = 0) -> None:
    """Poll until ``n`` runs with an id above ``after`` completed."""
    deadline = time.monotonic() + timeout
    while completed(engine, after=after) < n:
        if time.monotonic() > deadline:
            msg = f"only {completed(engine, after=after)} of {n} runs completed within {timeout} s"
            raise RuntimeError(msg)
        time.sleep(_POLL_S)


def throughput(  # noqa: PLR0913 - the workers, the runs and the workflow they run
    url: str,
    *,
    n: int,
    processes: int,
    concurrency: int,
    timeout: float,
    workflow: str = "bench3",
    start_options: Callable[[int], Mapping[str, Any]] | None = None,
    worker_env: Mapping[str, str] | None = None,
    under_span: Callable[[], AbstractContextManager[object]] = nullcontext,
) -> dict[str, Any]:
    """Scenario 2: start ``n`` runs of ``workflow`` up front, then drain them with workers.

    ``start_options(i)``, if given, are the keyword options of the ``i``-th start
    (``concurrency_key``, say); without it every run starts with none. ``worker_env``
    is added to the worker processes' environment; each start runs inside ``under_span()``.
    """
    engine = engine_for(url)
    engine.create_tables()
    workers = Workers(url, processes=processes, concurrency=concurrency, env=worker_env)
    before = last_run_id(engine)
    try:
        started = time.perf_counter()
        for i in range(n):
            with under_span():
                engine.start(workflow, {"i": i}, **(start_options(i) if start_options else {}))
        start_s = time.perf_counter() - started
        started = time.perf_counter()
        workers.go()
        wait_completed(engine, n, timeout, after=before)
        drain_s = time.perf_counter() - started
    finally:
        reports = workers.stop()
    cpu = sum(r["cpu_s"] for r in reports)
    claims = [r["claim_p50_ms"] for r in reports if r.get("claim_p50_ms") is not None]
    writes = sum(r.get("writes", 0) for r in reports)
    commits = sum(r.get("commits", 0) for r in reports)
    traced = all("spans" in r for r in reports)  # the tracing scenario's workers count spans
    return {
        "system": "durable-sa",
        "n": n,
        "processes": processes,
        "concurrency": concurrency,
        "start_s": start_s,
        "drain_s": drain_s,
        "wf_per_s": n / (start_s + drain_s),
        "drain_wf_per_s": n / drain_s,
        "cpu_ms_per_wf": cpu * 1000 / n,
        "claim_p50_ms": statistics.median(claims) if claims else None,
        "steps_per_commit": writes / commits if commits else None,
        "stats": [r["stats"] for r in reports],
        **({"spans": sum(r["spans"] for r in reports)} if traced else {}),
    }


def mixed(url: str, *, n: int, workflow: str, timeout: float) -> dict[str, Any]:
    """Scenario 9: scenario 2 with ``mixed6`` or ``plain6``, one worker as ``durable-sa worker``
    runs by default (P=1, C=1); the application's table is created first.

    Raises:
        RuntimeError: ``mixed6`` did not write exactly one row per run.
    """
    engine = engine_for(url)
    ORDERS_METADATA.create_all(engine.sa_engine)
    out = throughput(url, n=n, processes=1, concurrency=1, timeout=timeout, workflow=workflow)
    with engine.sa_engine.connect() as conn:
        orders = int(conn.execute(select(func.count()).select_from(bench_orders)).scalar_one())
    if orders != (n if workflow == "mixed6" else 0):
        msg = f"{workflow}: {orders} rows in bench_orders after {n} runs"
        raise RuntimeError(msg)
    return {**out, "scenario": workflow, "workflow": workflow, "orders": orders}


CONTROLS_WORKFLOWS: Final = {
    "off": "bench3",
    "idle": "bench3",
    "on": "bench3_limited",
    "limits": "bench3_capped",
    "both": "bench3_capped_limited",
}
"""The workflow each mode of the controls scenario runs."""


def controls(url: str, *, n: int, mode: str, timeout: float) -> dict[str, Any]:
    """Scenario 10: scenario 2 (P=1 C=1) with queue controls off or on, in five modes.

    ``on``: ``bench3_limited``, whose first step takes a grant of a shared rate limit set
    too high ever to defer it, while another workflow is paused (so the claim's filter
    and the paused-set cache have something to read); ``idle``: ``bench3`` with the same
    limit set and workflow paused (what a workflow that uses neither pays); ``off``:
    ``bench3``, nothing set. ``limits``: ``bench3_capped``, with ``max_active`` and
    ``max_active_per_key`` far above what is ever active (nothing waits), started over
    eight concurrency keys, nothing else set; ``both``: ``bench3_capped_limited`` (the
    limits and the rate-limited first step) with what ``on`` sets.
    """
    engine = engine_for(url)
    engine.create_tables()
    workflow = CONTROLS_WORKFLOWS[mode]
    if mode in {"idle", "on", "both"}:
        engine.set_rate_limit(BENCH_RATE_LIMIT, limit=1_000_000_000, per=timedelta(seconds=1))
        engine.pause("bench-paused-elsewhere", force=True)
    keyed = mode in {"limits", "both"}
    out = throughput(
        url,
        n=n,
        processes=1,
        concurrency=1,
        timeout=timeout,
        workflow=workflow,
        start_options=(lambda i: {"concurrency_key": f"k{i % LIMITS_KEYS}"}) if keyed else None,
    )
    return {**out, "scenario": f"controls_{mode}", "workflow": workflow, "mode": mode}


def tracing(url: str, *, n: int, mode: str, timeout: float) -> dict[str, Any]:
    """Scenario 12: scenario 2 (P=1 C=1) on ``bench3`` with OpenTelemetry tracing off or on.

    ``off``: OpenTelemetry installed, no tracer provider set anywhere (no span is made,
    no run stores a trace context: checked), what a user without a provider has.
    ``on``: this process starts each run under a span of its own, through a provider
    (so every run stores a trace context: checked), and the worker sets a provider that
    keeps spans in memory behind a ``BatchSpanProcessor``, as production runs it (an
    exporter that ships spans runs behind one): three step spans a run.

    Raises:
        RuntimeError: with tracing on, the worker recorded fewer spans than steps.
    """
    under_span: Callable[[], AbstractContextManager[object]] = nullcontext
    if mode == "on":
        trace_in_memory(batch=False)
        from opentelemetry import trace  # noqa: PLC0415 - the tracing scenario only

        tracer = trace.get_tracer("bench")

        def under_span() -> AbstractContextManager[object]:
            return tracer.start_as_current_span("request")

    out = throughput(
        url, n=n, processes=1, concurrency=1, timeout=timeout, under_span=under_span,
        worker_env={TRACING_ENV: mode},
    )  # fmt: skip
    spans = out.get("spans", 0)
    if mode == "on" and spans < 3 * n:
        msg = f"tracing on: the worker recorded {spans} spans for {n} runs of three steps"
        raise RuntimeError(msg)
    traced = traced_runs(url, n)
    if traced != (n if mode == "on" else 0):  # off is a user's state with no provider
        msg = f"tracing {mode}: {traced} of the last {n} runs stored a trace context"
        raise RuntimeError(msg)
    return {**out, "scenario": f"tracing_{mode}", "workflow": "bench3", "mode": mode}


def traced_runs(url: str, n: int) -> int:
    """How many of the last ``n`` runs stored a trace context (the tracing scenario's check)."""
    engine = engine_for(url)
    after = last_run_id(engine) - n
    with engine.sa_engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).where(
                    runs_table.c.id > after, runs_table.c.trace_context.is_not(None)
                )
            ).scalar_one()
        )


HOT_KEY: Final = "hot"
COLD_KEYS: Final = 4
FAIRNESS_CONCURRENCY: Final = 4


def jain_index(counts: list[float]) -> float:
    """Jain's fairness index ``(Σx)² / (k·Σx²)``: 1.0 when all equal, 1/k when one has all."""
    squares = sum(x * x for x in counts)
    return sum(counts) ** 2 / (len(counts) * squares) if squares else 1.0


def fairness_figures(done: Mapping[str, list[float]]) -> dict[str, Any]:
    """Fairness over the period in which every key still had runs left.

    ``done`` holds each key's completion times in seconds (any origin). The period runs
    from the first completion of any key to the earliest last completion of a key: until
    then every key had work, so a fair scheduler completes about as many runs of each.
    Returns Jain's index of the completions per key in it, the cold keys' mean rate over
    the hot key's (:data:`HOT_KEY`), the period and the counts.
    """
    start = min(min(times) for times in done.values())
    end = min(max(times) for times in done.values())
    counts = {key: sum(1 for t in times if t <= end) for key, times in sorted(done.items())}
    cold = [c for key, c in counts.items() if key != HOT_KEY]
    hot = counts.get(HOT_KEY, 0)
    return {
        "jain": jain_index([float(c) for c in counts.values()]),
        "cold_hot_ratio": statistics.mean(cold) / hot if hot and cold else None,
        "period_s": end - start,
        "counts": counts,
    }


def fairness(url: str, *, hot: int, cold: int, timeout: float) -> dict[str, Any]:
    """Scenario 11: per-key limits share one worker fairly between a hot key and cold ones.

    ``fair1`` (``max_active_per_key=1``, one ~2 ms step); ``hot`` runs of :data:`HOT_KEY`
    are started first, then ``cold`` runs of each of :data:`COLD_KEYS` cold keys; one
    worker process of concurrency 4 drains them. The completion times are the completed
    runs' ``updated_at`` read back from the database (:func:`fairness_figures`).
    """
    engine = engine_for(url)
    engine.create_tables()
    workers = Workers(url, processes=1, concurrency=FAIRNESS_CONCURRENCY)
    before = last_run_id(engine)
    keys = [HOT_KEY] * hot + [f"cold{k}" for k in range(COLD_KEYS) for _ in range(cold)]
    try:
        for i, key in enumerate(keys):
            engine.start("fair1", {"i": i}, concurrency_key=key)
        started = time.perf_counter()
        workers.go()
        wait_completed(engine, len(keys), timeout, after=before)
        drain_s = time.perf_counter() - started
    finally:
        workers.stop()
    query = select(runs_table.c.concurrency_key, runs_table.c.updated_at).where(
        runs_table.c.status == "completed", runs_table.c.id > before
    )
    with engine.sa_engine.connect() as conn:
        rows = conn.execute(query).all()
    origin = min(row.updated_at for row in rows)
    done: dict[str, list[float]] = {}
    for row in rows:
        done.setdefault(row.concurrency_key, []).append((row.updated_at - origin).total_seconds())
    return {
        "system": "durable-sa",
        "scenario": "fairness",
        "n": len(keys),
        "hot": hot,
        "cold": cold,
        "cold_keys": COLD_KEYS,
        "processes": 1,
        "concurrency": FAIRNESS_CONCURRENCY,
        "drain_wf_per_s": len(keys) / drain_s,
        **fairness_figures(done),
    }


def percentile(values: list[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


class RunEnded:
    """A LISTEN connection that tells when a run reaches a terminal status."""

    def __init__(self, url: str) -> None:
        """Connect and LISTEN on the runs channel."""
        self.conn = psycopg.connect(url.replace("+psycopg", ""), autocommit=True)
        self.conn.execute(f"LISTEN {RUNS_CHANNEL}")

    def wait(self, run_id: int, timeout: float = 30.0) -> None:
        """Block until the notification for ``run_id`` arrives."""
        for note in self.conn.notifies(timeout=timeout):
            if note.payload == str(run_id):
                return
        msg = f"run {run_id} did not end within {timeout} s"
        raise RuntimeError(msg)


def latency(url: str, *, n: int, workflow: str = "bench3") -> dict[str, Any]:
    """Scenario 3 (and 6): one run at a time with an idle worker; start → completed."""
    engine = engine_for(url)
    engine.create_tables()
    ended = RunEnded(url)
    workers = Workers(url, processes=1, concurrency=1)
    total, first_call = [], []
    try:
        workers.go()
        time.sleep(0.5)  # the worker is claiming (idle, waiting on NOTIFY)
        for i in range(n + 5):
            began = time.monotonic()
            run_id = engine.start(workflow, {"i": i}).run_id
            ended.wait(run_id)
            done = time.monotonic()
            if i < 5:  # warm-up: connections, prepared statements
                continue
            total.append((done - began) * 1000)
            if workflow == "bench3":
                result = engine.status(run_id).result or {}
                first_call.append((float(result["first"]) - began) * 1000)
            time.sleep(0.02)  # idle again before the next start
    finally:
        workers.stop()
    out: dict[str, Any] = {
        "system": "durable-sa",
        "scenario": "latency" if workflow == "bench3" else "fanout",
        "n": n,
        "p50_ms": statistics.median(total),
        "p99_ms": percentile(total, 0.99),
    }
    if first_call:
        out["first_call_p50_ms"] = statistics.median(first_call)
        out["first_call_p99_ms"] = percentile(first_call, 0.99)
    return out


_PRELOAD = """
INSERT INTO durable_runs (workflow_name, workflow_version, input, status, state, current_step,
    total_steps, attempt, result, created_at, updated_at, revision)
SELECT 'bench3', :version, jsonb_build_object('i', g), 'completed',
    '{"first": 1, "second": 2, "third": 3}'::jsonb, 3, 3, 1,
    '{"first": 1, "second": 2, "third": 3}'::jsonb, now() - interval '1 day',
    now() - interval '1 day', 3
FROM generate_series(1, :count) AS g;
INSERT INTO durable_journal (run_id, step_id, status, result, attempt, completed_at)
SELECT r.id, s.name, 'completed', to_jsonb(s.value), 1, r.updated_at
FROM durable_runs r CROSS JOIN (VALUES ('first', 1), ('second', 2), ('third', 3)) AS s(name, value)
WHERE r.id > :after;
"""


def preload_history(engine: Durable, runs: int) -> None:
    """Insert ``runs`` completed bench3 runs with their journal, in chunks, then ANALYZE."""
    from benchmarks.workload import bench3  # noqa: PLC0415 - the version of the definition

    chunk = 100_000
    done = 0
    while done < runs:
        count = min(chunk, runs - done)
        with engine.sa_engine.begin() as conn:
            after = conn.execute(text("SELECT coalesce(max(id), 0) FROM durable_runs")).scalar_one()
            for statement in _PRELOAD.strip().split(";\n"):
                conn.execute(
                    text(statement), {"version": bench3.version, "count": count, "after": after}
                )
        done += count
    with engine.sa_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))


def history(url: str, *, n: int, runs: int, timeout: float) -> dict[str, Any]:
    """Scenario 4: scenario 2 (one process, concurrency 1) with ``runs`` finished runs."""
    engine = engine_for(url)
    engine.create_tables()
    began = time.perf_counter()
    preload_history(engine, runs)
    preload_s = time.perf_counter() - began
    out = throughput(url, n=n, processes=1, concurrency=1, timeout=timeout)
    return {**out, "scenario": "history", "history_runs": runs, "preload_s": preload_s}


_BULK_START = """
WITH r AS (
    INSERT INTO durable_runs (workflow_name, workflow_version, input, status, state,
        current_step, total_steps, attempt, created_at, updated_at, revision)
    SELECT 'bench3', :version, jsonb_build_object('i', g), 'running', '{}'::jsonb, 0, 3, 1,
        now(), now(), 0
    FROM generate_series(1, :count) AS g
    RETURNING id
)
INSERT INTO durable_jobs (queue, kind, run_id, workflow_name, workflow_version, payload,
    attempts, max_attempts, available_at, created_at)
SELECT 'default', 'advance', r.id, 'bench3', :version,
    jsonb_build_object('run_id', r.id, 'step_index', 0, 'attempt', 1), 0, 5, now(), now()
FROM r
"""


def bulk_start(engine: Durable, count: int) -> None:
    """Start ``count`` bench3 runs in one statement (what ``start`` writes, in bulk).

    The memory scenario measures the worker, not the client: starting 100 k runs one
    by one would take the client longer than the worker needs to run them.
    """
    from benchmarks.workload import bench3  # noqa: PLC0415 - the definition's version

    with engine.sa_engine.begin() as conn:
        conn.execute(text(_BULK_START), {"version": bench3.version, "count": count})


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB (Linux)."""
    with Path(f"/proc/{pid}/status").open(encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    msg = f"no VmRSS for process {pid}"
    raise RuntimeError(msg)


def memory(url: str, *, runs: int, checkpoint: int, timeout: float) -> dict[str, Any]:
    """Scenario 5: the worker's RSS after ``checkpoint`` and after ``runs`` completed runs."""
    engine = engine_for(url)
    engine.create_tables()
    workers = Workers(url, processes=1, concurrency=4)
    pid = workers.procs[0].pid
    backlog = 2000
    started = 0
    readings: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    try:
        workers.go()
        for mark in (checkpoint, runs):
            while True:
                done = completed(engine)
                if done >= mark:
                    readings[mark] = rss_mb(pid)
                    break
                if started < runs and started - done < backlog:
                    batch = min(backlog, runs - started)
                    bulk_start(engine, batch)
                    started += batch
                if time.monotonic() > deadline:
                    msg = f"only {done} of {runs} runs completed within {timeout} s"
                    raise RuntimeError(msg)
                time.sleep(0.05)
    finally:
        workers.stop()
    first, last = readings[checkpoint], readings[runs]
    return {
        "system": "durable-sa",
        "scenario": "memory",
        "runs_first": checkpoint,
        "runs_last": runs,
        "rss_mb_first": first,
        "rss_mb_last": last,
        "growth_pct": (last - first) / first * 100,
    }


def main(argv: list[str] | None = None) -> None:
    """Run one scenario and print its JSON line."""
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "scenario",
        choices=[
            "throughput",
            "latency",
            "history",
            "memory",
            "fanout",
            "mixed",
            "controls",
            "tracing",
            "fairness",
        ],
    )
    parser.add_argument("--mode", choices=list(CONTROLS_WORKFLOWS), default="off")
    parser.add_argument("--workflow", choices=["mixed6", "plain6"], default="mixed6")
    parser.add_argument("--url", required=True)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--history", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--checkpoint", type=int, default=10_000)
    parser.add_argument("--hot", type=int, default=200)
    parser.add_argument("--cold", type=int, default=40)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)
    if args.scenario == "throughput":
        out = throughput(
            args.url,
            n=args.n,
            processes=args.processes,
            concurrency=args.concurrency,
            timeout=args.timeout,
        )
    elif args.scenario == "latency":
        out = latency(args.url, n=args.n)
    elif args.scenario == "fanout":
        out = latency(args.url, n=args.n, workflow="fanout16")
        out.update(entries=16, entry_ms=10)
    elif args.scenario == "mixed":
        out = mixed(args.url, n=args.n, workflow=args.workflow, timeout=args.timeout)
    elif args.scenario == "controls":
        out = controls(args.url, n=args.n, mode=args.mode, timeout=args.timeout)
    elif args.scenario == "tracing":
        out = tracing(args.url, n=args.n, mode=args.mode, timeout=args.timeout)
    elif args.scenario == "fairness":
        out = fairness(args.url, hot=args.hot, cold=args.cold, timeout=args.timeout)
    elif args.scenario == "history":
        out = history(args.url, n=args.n, runs=args.history, timeout=args.timeout)
    else:
        out = memory(args.url, runs=args.runs, checkpoint=args.checkpoint, timeout=args.timeout)
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
