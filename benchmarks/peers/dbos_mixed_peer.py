"""Peer benchmark: DBOS Transact running the mixed scenario's workflow through a DBOS queue.

The workflow is ``mixed6`` of :mod:`benchmarks.workload` as a DBOS user writes it:

1. a plain step (``@DBOS.step()``): the order as received;
2. a transaction that inserts one row into ``bench_orders``, the same table and row
   durable-sa's transactional step writes. DBOS 3.4 has no ``@DBOS.transaction()`` any
   more: its transactions are a datasource's, ``@ds.transaction()`` with
   ``ds.sql_session()``, which record the step's result in the same transaction;
3. three steps at once (see :func:`define` for why ``asyncio.gather``);
4. a branch in code: ``if``/``else`` between two steps;
5. a loop in code: the same step twice, each call its own checkpoint;
6. a final step.

What is measured is what :mod:`benchmarks.peers.dbos_peer` measures, the same way and
with the same settings: ``start_s`` enqueues N workflows (``DBOS.enqueue_workflow``, one
transaction each) before the queue is registered; ``drain_s`` registers the queue with
``worker_concurrency=C`` (and ``--polling-interval``) and runs until the database shows
all N in status ``SUCCESS``; ``cpu_ms_per_wf`` is this process's CPU time over the drain
divided by N. The final step counts in memory; once it has run N times the harness polls
``dbos.workflow_status`` every 5 ms. The program checks that ``bench_orders`` holds
exactly N rows at the end.

Run from the repository root::

    python -m benchmarks.peers.dbos_mixed_peer --url postgresql://postgres@127.0.0.1:5432/b1 \
        --n 1000 --concurrency 1 [--polling-interval 0.01] [--timeout 600]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Final

import psycopg
from dbos import DBOS, AsyncSQLAlchemyDatasource
from sqlalchemy import create_engine, func, insert, select
from sqlalchemy.engine import make_url

from benchmarks.workload import (
    MIXED_CHECKS,
    MIXED_LOOP_ITERATIONS,
    ORDER_CENTS,
    ORDERS_METADATA,
    bench_orders,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

QUEUE: Final = "mixed6"
_VERIFY_POLL_S: Final = 0.005


class Finished:
    """Counts the final step's runs (on DBOS's threads); set once it has run ``expected`` times."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.lock = threading.Lock()
        self.all_ran = threading.Event()

    def one(self) -> None:
        with self.lock:
            self.count += 1
            if self.count >= self.expected:
                self.all_ran.set()


def define(
    ds: AsyncSQLAlchemyDatasource, finished: Finished
) -> Callable[[int], Coroutine[Any, Any, dict[str, Any]]]:
    """The steps, the transaction and the workflow, registered with DBOS (before launch).

    They are defined here rather than at module level because the transaction needs its
    datasource, and the datasource needs the database URL of the command line.

    Why ``async`` and ``asyncio.gather`` for the three concurrent steps: DBOS runs steps
    concurrently inside one workflow only as asyncio tasks of an ``async`` workflow,
    started in a fixed order (it numbers steps as they start; its documentation shows
    ``asyncio.gather`` over ``asyncio.create_task`` for this). A thread of a sync workflow
    has no workflow context, so its step could not checkpoint. The other way DBOS offers,
    child workflows (``DBOS.start_workflow`` or a queue, then ``get_result``), makes each
    of the three a workflow of its own, with its own status row and, through a queue, a
    polling delay: more than what durable-sa's parallel entries (steps of the same run)
    do. Since the workflow is ``async``, so are its steps and its transaction
    (:class:`~dbos.AsyncSQLAlchemyDatasource`).
    """

    @DBOS.step()
    async def receive(i: int) -> dict[str, int]:
        return {"ref": i, "amount_cents": ORDER_CENTS}

    @ds.transaction()
    async def record(order: dict[str, int]) -> str:
        await ds.sql_session().execute(
            insert(bench_orders).values(
                ref=order["ref"], amount_cents=order["amount_cents"], status="new"
            )
        )
        return "recorded"

    @DBOS.step()
    async def check(name: str) -> bool:
        del name
        return True

    @DBOS.step()
    async def ship_parcel() -> dict[str, str]:
        return {"carrier": "parcel"}

    @DBOS.step()
    async def ship_freight() -> dict[str, str]:
        return {"carrier": "freight"}

    @DBOS.step()
    async def poll(value: int) -> int:
        return value + 1

    @DBOS.step()
    async def confirm() -> str:
        finished.one()
        return "confirmed"

    @DBOS.workflow()
    async def mixed6(i: int) -> dict[str, Any]:
        order = await receive(i)
        recorded = await record(order)
        tasks = [asyncio.create_task(check(name)) for name in MIXED_CHECKS]
        checks = await asyncio.gather(*tasks)
        shipped = await (ship_parcel() if i % 2 == 0 else ship_freight())
        polled = 0
        for _ in range(MIXED_LOOP_ITERATIONS):
            polled = await poll(polled)
        return {
            "receive": order,
            "record": recorded,
            **dict(zip(MIXED_CHECKS, checks, strict=True)),
            "ship": shipped,
            "poll": polled,
            "confirm": await confirm(),
        }

    return mixed6


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="postgresql://user@host:port/dbname")
    parser.add_argument("--n", type=int, default=1000, help="workflows to run")
    parser.add_argument("--concurrency", type=int, default=1, help="worker_concurrency")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to drain")
    parser.add_argument(
        "--polling-interval",
        type=float,
        default=None,
        help="queue polling_interval_sec (default: DBOS's own, 1 s)",
    )
    return parser.parse_args()


def _wait_completed(conninfo: str, finished: Finished, deadline: float) -> int:
    """Wait for the final step to run N times, then for N ``SUCCESS`` rows; the count seen."""
    finished.all_ran.wait(max(0.0, deadline - time.perf_counter()))
    query = "SELECT count(*) FROM dbos.workflow_status WHERE queue_name = %s AND status = 'SUCCESS'"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        done = 0
        while True:
            row = conn.execute(query, (QUEUE,)).fetchone()
            done = int(row[0]) if row else 0
            if done >= finished.expected or time.perf_counter() >= deadline:
                return done
            time.sleep(_VERIFY_POLL_S)


def main() -> int:
    args = _parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    n, concurrency = args.n, args.concurrency
    # DBOS takes any SQLAlchemy URL and picks psycopg 3; psycopg takes the libpq form.
    conninfo = make_url(args.url).set(drivername="postgresql").render_as_string(hide_password=False)

    app = create_engine(args.url)
    ORDERS_METADATA.create_all(app)  # the application's table, as for durable-sa
    finished = Finished(n)
    # As DBOS documents for a datasource needed before launch: created on a loop of its
    # own (create() is a coroutine); the datasource is not tied to that loop.
    ds = asyncio.run(AsyncSQLAlchemyDatasource.create(args.url))
    workflow = define(ds, finished)
    DBOS(
        config={"name": "dbos-mixed-bench", "system_database_url": args.url, "log_level": "WARNING"}
    )
    DBOS.launch()
    try:
        t0 = time.perf_counter()
        for i in range(n):
            DBOS.enqueue_workflow(QUEUE, workflow, i)
        start_s = time.perf_counter() - t0

        cpu0, t1 = time.process_time(), time.perf_counter()
        if args.polling_interval is None:
            DBOS.register_queue(QUEUE, worker_concurrency=concurrency)
        else:
            DBOS.register_queue(
                QUEUE, worker_concurrency=concurrency, polling_interval_sec=args.polling_interval
            )
        completed = _wait_completed(conninfo, finished, t1 + args.timeout)
        drain_s = time.perf_counter() - t1
        cpu_s = time.process_time() - cpu0
    finally:
        DBOS.destroy()

    with app.connect() as conn:
        orders = int(conn.execute(select(func.count()).select_from(bench_orders)).scalar_one())
    app.dispose()
    if completed < n or orders != n:
        print(
            f"dbos_mixed_peer: {completed} of {n} workflows completed in {args.timeout:g} s, "
            f"{orders} rows in bench_orders",
            file=sys.stderr,
        )
        return 1
    result = {
        "system": "dbos",
        "scenario": "mixed6",
        "workflow": "mixed6",
        "n": n,
        "concurrency": concurrency,
        "start_s": round(start_s, 4),
        "drain_s": round(drain_s, 4),
        "wf_per_s": round(n / (start_s + drain_s), 2),
        "drain_wf_per_s": round(n / drain_s, 2),
        "cpu_ms_per_wf": round(cpu_s * 1000 / n, 3),
        "completed": completed,
        "orders": orders,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
