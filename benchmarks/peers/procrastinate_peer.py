"""Peer benchmark: Procrastinate running a 3-step workflow as a chain of 3 jobs.

A workflow is three async tasks: the job of ``step1`` defers ``step2``, whose job defers
``step3`` (3 jobs per workflow; step i adds i to the running sum it passes on, so step 3
returns 6). What is measured, on the PostgreSQL database given by ``--url`` (the harness
applies Procrastinate's schema there first):

* ``start_s``: defer N ``step1`` jobs, one ``defer_async`` (one transaction) each, before
  any worker runs.
* ``drain_s``: run one worker in this process with ``concurrency=C`` until the database
  shows N ``step3`` jobs ``succeeded``.
* ``cpu_ms_per_wf``: this process's CPU time (``time.process_time``) over the drain.

Completion: step 3 counts in memory; once it has run N times, the harness polls
``procrastinate_jobs`` every 5 ms until N ``step3`` jobs are ``succeeded`` (the worker
records a job's end after the task returns). The final count is always read from the
database.

Every setting is the library default: ``PsycopgConnector`` with psycopg_pool's default
pool (4 connections, one of them held by the worker's LISTEN), LISTEN/NOTIFY on, jobs
kept after completion. The worker's signal handlers are off: the harness stops it.

Run from the repository root::

    python -m benchmarks.peers.procrastinate_peer \
        --url postgresql://postgres@127.0.0.1:5432/b1 --n 2000 --concurrency 4
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import time
from typing import Final

import procrastinate

_VERIFY_POLL_S: Final = 0.005


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="postgresql://user@host:port/dbname")
    parser.add_argument("--n", type=int, default=2000, help="workflows to run")
    parser.add_argument("--concurrency", type=int, default=1, help="worker concurrency")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to drain")
    return parser.parse_args()


def _make_app(conninfo: str, n: int, all_step3_ran: asyncio.Event) -> procrastinate.App:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo))
    step3_runs = 0

    @app.task(name="step1")
    async def step1() -> int:
        await step2.defer_async(total=1)
        return 1

    @app.task(name="step2")
    async def step2(total: int) -> int:
        await step3.defer_async(total=total + 2)
        return total + 2

    @app.task(name="step3")
    async def step3(total: int) -> int:
        nonlocal step3_runs
        step3_runs += 1
        if step3_runs >= n:
            all_step3_ran.set()
        return total + 3

    return app


async def _completed(app: procrastinate.App) -> int:
    row = await app.connector.execute_query_one_async(
        "SELECT count(*) AS done FROM procrastinate_jobs"
        " WHERE task_name = 'step3' AND status = 'succeeded'"
    )
    return int(row["done"])


async def _wait_completed(
    app: procrastinate.App, n: int, all_step3_ran: asyncio.Event, deadline: float
) -> int:
    """Wait for step 3 to run N times, then for N succeeded step-3 jobs; the count seen last."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_step3_ran.wait(), max(0.0, deadline - time.perf_counter()))
    done = await _completed(app)
    while done < n and time.perf_counter() < deadline:
        await asyncio.sleep(_VERIFY_POLL_S)
        done = await _completed(app)
    return done


async def _run(args: argparse.Namespace) -> dict[str, object] | None:
    n, concurrency = args.n, args.concurrency
    all_step3_ran = asyncio.Event()
    # The URL may be SQLAlchemy-style (postgresql+psycopg://); libpq wants postgresql://.
    conninfo = args.url.replace("postgresql+psycopg://", "postgresql://", 1)
    app = _make_app(conninfo, n, all_step3_ran)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        step1 = app.tasks["step1"]

        t0 = time.perf_counter()
        for _ in range(n):
            await step1.defer_async()
        start_s = time.perf_counter() - t0

        cpu0, t1 = time.process_time(), time.perf_counter()
        worker = asyncio.create_task(
            app.run_worker_async(concurrency=concurrency, install_signal_handlers=False)
        )
        completed = await _wait_completed(app, n, all_step3_ran, t1 + args.timeout)
        drain_s = time.perf_counter() - t1
        cpu_s = time.process_time() - cpu0
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker

    if completed < n:
        print(
            f"procrastinate_peer: only {completed} of {n} workflows completed"
            f" in {args.timeout:g} s",
            file=sys.stderr,
        )
        return None
    return {
        "system": "procrastinate",
        "n": n,
        "concurrency": concurrency,
        "start_s": round(start_s, 4),
        "drain_s": round(drain_s, 4),
        "wf_per_s": round(n / (start_s + drain_s), 2),
        "drain_wf_per_s": round(n / drain_s, 2),
        "cpu_ms_per_wf": round(cpu_s * 1000 / n, 3),
        "completed": completed,
    }


def main() -> int:
    args = _parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    # Its warning that the app lives in __main__ is about workers in other processes
    # importing the tasks; here the worker runs in this process.
    logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)
    result = asyncio.run(_run(args))
    if result is None:
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
