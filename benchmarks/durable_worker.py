"""A durable-sa worker process under the benchmark driver's control.

Protocol on stdin/stdout, one line each: the process imports everything and connects,
prints ``ready``, waits for ``go``, runs a worker with the given concurrency, waits for
``stop``, stops the worker gracefully and prints one JSON line with its CPU time
(``time.process_time`` over the run) and the worker's counters. Importing Python and
opening connections is kept out of the measured time this way.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

import attrs

from benchmarks.workload import engine_from_env


def main(argv: list[str] | None = None) -> None:
    """Run one worker process (see the module docstring)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    engine = engine_from_env()
    with engine.sa_engine.connect():  # open a pooled connection before the clock starts
        pass
    worker = engine.worker(concurrency=args.concurrency)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    if sys.stdin.readline().strip() != "go":
        return
    cpu = time.process_time()
    worker.start()
    sys.stdin.readline()  # "stop" (or EOF: the driver went away)
    cpu = time.process_time() - cpu
    worker.stop(wait=True)
    lane = worker._lane  # noqa: SLF001 - the benchmark reads the fast lane's counters
    report = {"cpu_s": cpu, "stats": attrs.asdict(worker.stats)}
    if lane is not None:
        claims = sorted(lane.stats.claim_seconds)
        report["claim_p50_ms"] = claims[len(claims) // 2] * 1000 if claims else None
        report["commits"] = lane.stats.commits
        report["writes"] = lane.stats.writes
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
