"""A durable-sa worker (or relay) process under the benchmark driver's control.

Protocol on stdin/stdout, one line each: the process imports everything and connects,
prints ``ready``, waits for ``go``, runs a worker with the given concurrency, waits for
``stop``, stops the worker gracefully and prints one JSON line with its CPU time
(``time.process_time`` over the run) and the worker's counters. Importing Python and
opening connections is kept out of the measured time this way.

The engine, and so the queue backend, comes from the environment
(:func:`benchmarks.workload.engine_from_env`). With a relay backend:

* ``--no-relay``: the worker runs no relay thread; a separate relay process publishes.
* ``--relay-only``: the process runs no worker but one relay (``engine.relay()``, the
  same :class:`~durable_sa.outbox.Relay` that ``durable-sa relay`` runs, with its
  defaults unless ``--batch-size`` says otherwise). Between ``go`` and ``stop`` it also
  answers each ``sample`` line with one line: how many messages it has published so far.
  Its JSON line holds its CPU time and the relay's counters.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import TYPE_CHECKING, Any

import attrs

from benchmarks.workload import TRACING_ENV, engine_from_env, trace_in_memory

if TYPE_CHECKING:
    from durable_sa import Durable


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def run_worker(engine: Durable, *, concurrency: int, relay: bool) -> dict[str, Any]:
    """Run a worker between ``go`` and ``stop``; its report.

    With ``$DURABLE_SA_BENCH_TRACING=on`` a tracer provider records the worker's spans
    (in memory, batched); the report counts them, flushed after the stop.
    """
    exporter = trace_in_memory(batch=True) if os.environ.get(TRACING_ENV) == "on" else None
    worker = engine.worker(concurrency=concurrency, **({} if relay else {"relay": False}))
    _say("ready")
    if sys.stdin.readline().strip() != "go":
        return {}
    cpu = time.process_time()
    worker.start()
    sys.stdin.readline()  # "stop" (or EOF: the driver went away)
    cpu = time.process_time() - cpu
    worker.stop(wait=True)
    lane = worker._pipeline  # noqa: SLF001 - the benchmark reads the pipeline's counters
    report: dict[str, Any] = {"cpu_s": cpu, "stats": attrs.asdict(worker.stats)}
    if exporter is not None:
        from opentelemetry import trace  # noqa: PLC0415 - the tracing scenario only

        trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
        report["spans"] = getattr(exporter, "exported", 0)  # workload.counting_exporter
    if lane is not None:
        claims = sorted(lane.stats.claim_seconds)
        report["claim_p50_ms"] = claims[len(claims) // 2] * 1000 if claims else None
        report["commits"] = lane.stats.commits
        report["writes"] = lane.stats.writes
    return report


def run_relay(engine: Durable, *, batch_size: int | None) -> dict[str, Any]:
    """Run a relay between ``go`` and ``stop``, answering ``sample``; its report."""
    relay = engine.relay(**({} if batch_size is None else {"batch_size": batch_size}))
    _say("ready")
    if sys.stdin.readline().strip() != "go":
        return {}
    cpu = time.process_time()
    relay.start()
    for line in sys.stdin:  # "sample" lines until "stop" (or EOF: the driver went away)
        if line.strip() != "sample":
            break
        _say(str(relay.stats.published))
    cpu = time.process_time() - cpu
    relay.stop(wait=True)
    return {"cpu_s": cpu, "batch_size": relay.batch_size, "stats": attrs.asdict(relay.stats)}


def main(argv: list[str] | None = None) -> None:
    """Run one worker or relay process (see the module docstring)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=1)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--no-relay", dest="relay", action="store_false")
    mode.add_argument("--relay-only", action="store_true")
    parser.add_argument("--batch-size", type=int, help="the relay's (with --relay-only)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    engine = engine_from_env()
    with engine.sa_engine.connect():  # open a pooled connection before the clock starts
        pass
    if args.relay_only:
        report = run_relay(engine, batch_size=args.batch_size)
    else:
        report = run_worker(engine, concurrency=args.concurrency, relay=args.relay)
    if report:
        _say(json.dumps(report))


if __name__ == "__main__":
    main()
