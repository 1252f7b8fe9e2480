"""Peer benchmark: DBOS Transact running a 3-step workflow through a DBOS queue.

What is measured, on the PostgreSQL database given by ``--url`` (DBOS creates its
``dbos`` schema there on launch):

* ``start_s``: enqueue N workflows ``wf()`` on the queue, one ``DBOS.enqueue_workflow``
  (one transaction) each. The queue is not registered yet, so no worker dequeues them.
* ``drain_s``: register the queue with ``worker_concurrency=C``; this process's queue
  thread then dequeues and runs the workflows (3 trivial steps each: step i returns i,
  the workflow returns the sum) until the database shows all N in status ``SUCCESS``.
  It starts when the queue is registered, so it includes DBOS's own discovery delay (the
  queue manager looks for new queues once a second) and one polling interval.
* ``cpu_ms_per_wf``: this process's CPU time (``time.process_time``) over the drain.

Completion: step 3 counts in memory; once it has run N times, the harness polls
``dbos.workflow_status`` every 5 ms until N rows are ``SUCCESS`` (the completion commit
follows step 3). The final count is always read from the database.

Every DBOS setting is the library default, except ``--polling-interval`` when given:
DBOS claims at most ``C - running`` workflows per poll of a queue and polls it every
``polling_interval_sec`` (default 1 s), so with the default interval the queue cannot
run more than about C workflows a second, however short they are.

Run from the repository root::

    python -m benchmarks.peers.dbos_peer --url postgresql://postgres@127.0.0.1:5432/b1 \
        --n 2000 --concurrency 4 [--polling-interval 0.01] [--timeout 600]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from typing import Final

import psycopg
from dbos import DBOS
from sqlalchemy.engine import make_url

QUEUE: Final = "bench3"
_VERIFY_POLL_S: Final = 0.005

_step3_runs = 0
_step3_lock = threading.Lock()
_all_step3_ran = threading.Event()
_expected = 0


@DBOS.step()
def step1() -> int:
    return 1


@DBOS.step()
def step2() -> int:
    return 2


@DBOS.step()
def step3() -> int:
    global _step3_runs  # noqa: PLW0603 - one counter shared by DBOS's executor threads
    with _step3_lock:
        _step3_runs += 1
        if _step3_runs >= _expected:
            _all_step3_ran.set()
    return 3


@DBOS.workflow()
def wf() -> int:
    return step1() + step2() + step3()


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="postgresql://user@host:port/dbname")
    parser.add_argument("--n", type=int, default=2000, help="workflows to run")
    parser.add_argument("--concurrency", type=int, default=1, help="worker_concurrency")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to drain")
    parser.add_argument(
        "--polling-interval",
        type=float,
        default=None,
        help="queue polling_interval_sec (default: DBOS's own, 1 s)",
    )
    return parser.parse_args()


def _completed(conn: psycopg.Connection) -> int:
    row = conn.execute(
        "SELECT count(*) FROM dbos.workflow_status WHERE queue_name = %s AND status = 'SUCCESS'",
        (QUEUE,),
    ).fetchone()
    return int(row[0]) if row else 0


def _wait_completed(conninfo: str, n: int, deadline: float) -> int:
    """Wait for step 3 to run N times, then for N ``SUCCESS`` rows; the count seen last."""
    _all_step3_ran.wait(max(0.0, deadline - time.perf_counter()))
    with psycopg.connect(conninfo, autocommit=True) as conn:
        done = _completed(conn)
        while done < n and time.perf_counter() < deadline:
            time.sleep(_VERIFY_POLL_S)
            done = _completed(conn)
    return done


def main() -> int:
    global _expected  # noqa: PLW0603 - read by step3 on the executor threads
    args = _parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    n, concurrency = args.n, args.concurrency
    _expected = n
    # DBOS takes any SQLAlchemy URL and picks psycopg 3; psycopg takes the libpq form.
    conninfo = make_url(args.url).set(drivername="postgresql").render_as_string(hide_password=False)

    DBOS(
        config={"name": "dbos-peer-bench", "system_database_url": args.url, "log_level": "WARNING"}
    )
    DBOS.launch()
    try:
        t0 = time.perf_counter()
        for _ in range(n):
            DBOS.enqueue_workflow(QUEUE, wf)
        start_s = time.perf_counter() - t0

        cpu0, t1 = time.process_time(), time.perf_counter()
        if args.polling_interval is None:
            DBOS.register_queue(QUEUE, worker_concurrency=concurrency)
        else:
            DBOS.register_queue(
                QUEUE, worker_concurrency=concurrency, polling_interval_sec=args.polling_interval
            )
        completed = _wait_completed(conninfo, n, t1 + args.timeout)
        drain_s = time.perf_counter() - t1
        cpu_s = time.process_time() - cpu0
    finally:
        DBOS.destroy()

    if completed < n:
        print(
            f"dbos_peer: only {completed} of {n} workflows completed in {args.timeout:g} s",
            file=sys.stderr,
        )
        return 1
    result = {
        "system": "dbos",
        "n": n,
        "concurrency": concurrency,
        "start_s": round(start_s, 4),
        "drain_s": round(drain_s, 4),
        "wf_per_s": round(n / (start_s + drain_s), 2),
        "drain_wf_per_s": round(n / drain_s, 2),
        "cpu_ms_per_wf": round(cpu_s * 1000 / n, 3),
        "completed": completed,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
