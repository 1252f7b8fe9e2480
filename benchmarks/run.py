"""Run the benchmark suite and report: ``python -m benchmarks.run [--quick] [--only ...]``.

Rules of a run (this module is its command line, :mod:`benchmarks.suite` the rest):

* Every measurement is one run of a scenario program (``python -m benchmarks.…``) in a
  subprocess, on a fresh database: a new database on the suite's own PostgreSQL server
  (started here with the server's default durability, dropped after each measurement)
  or a new SQLite file in a temporary directory. The program prints one JSON line.
* The relay scenario (group ``relay``) also needs a broker: the suite starts its own
  Redis server (``durable_sa.testing.servers``: 127.0.0.1, a free port, every write
  synced to disk) for the whole run, and the program flushes it before measuring.
* Repetitions are interleaved: repetition 1 of every system and configuration, then
  repetition 2, and so on, so that drift (caches, thermal, neighbours) hits all alike.
* Nothing a program does can stop the suite: a missing program, a crash, a timeout or
  a line that is not JSON is recorded as an error (one line) and the run goes on. A
  measurement that failed in repetition 1 is not repeated (it would fail again, slowly).
* Progress goes to stderr, one line per measurement; the table goes to stdout. Then
  ``benchmarks/results/latest.json`` is written, ``docs/performance.png`` drawn and the
  marked table of ``docs/performance.md`` replaced (see :mod:`benchmarks.report`); the
  relay scenario has its own marked table there and its own plot,
  ``docs/performance-relay.png``, and so has the mixed scenario (group ``mixed``,
  :mod:`benchmarks.report.mixed_table`, ``docs/performance-mixed.png``). A part of the page
  (and its plot) is rewritten only when the run measured something for it, so ``--only
  relay`` leaves the main table be; such a run writes ``latest-only-relay.json`` and
  leaves ``latest.json`` whole.
* ``--render-only`` measures nothing: it makes the page's parts, the plots and the JSON
  again from the last run's JSON (the same file the run wrote, so ``--only relay
  --render-only`` reads ``latest-only-relay.json``), as today's code renders them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from benchmarks.report import report
from benchmarks.report.json_document import from_json
from benchmarks.suite.machine import machine_facts
from benchmarks.suite.measure import Progress, run_all, start_broker, start_server
from benchmarks.suite.paths import ROOT, results_json
from benchmarks.suite.plan import FULL, GROUPS, QUICK, plan
from benchmarks.suite.publish import publish

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from benchmarks.report.figures import Result
    from benchmarks.report.targets import Target
    from benchmarks.suite.plan import Job
    from durable_sa.testing.servers import PostgresServer, RedisServer


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes: under 2 minutes")
    parser.add_argument("--repetitions", type=int, default=3, metavar="K", help="at least 3")
    parser.add_argument("--only", nargs="+", choices=GROUPS, metavar="SCENARIO",
                        help=f"run only these: {', '.join(GROUPS)}")  # fmt: skip
    parser.add_argument(
        "--no-docs", action="store_true", help="write the JSON only, not the plot and docs"
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="measure nothing: publish the last run's JSON again (latest.json, or with "
        "--only the latest-only-… file)",
    )
    args = parser.parse_args(argv)
    if args.repetitions < 3:
        parser.error("--repetitions must be at least 3 (medians of fewer mean little)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite; 0 unless interrupted (failed targets and errors are in the report)."""
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    jobs = plan(sizes, args.only)
    if args.render_only:
        return render_only(jobs, args)
    progress = Progress(len(jobs) * args.repetitions, sys.stderr)
    began = time.monotonic()
    progress.say(
        f"benchmarks: {sizes.mode} run, {len(jobs)} measurements x {args.repetitions} "
        "repetitions, interleaved"
    )
    server: PostgresServer | str = "not needed"
    broker: RedisServer | str = "not needed"
    if any(job.database == "postgresql" for job in jobs):
        progress.say("starting PostgreSQL (default durability) …")
        server = start_server()
        if isinstance(server, str):
            progress.say(f"PostgreSQL did not start: {server}")
    try:
        if any(job.broker for job in jobs):
            progress.say("starting Redis (every write synced to disk) …")
            broker = start_broker()
            if isinstance(broker, str):
                progress.say(f"Redis did not start: {broker}")
        machine = machine_facts(server, sizes, args.repetitions)
        samples = run_all(jobs, args.repetitions, server, progress, broker)
    finally:
        if not isinstance(broker, str):
            broker.stop()
        if not isinstance(server, str):
            server.stop()
    publish_and_print(report(samples), machine, jobs, args, progress)
    minutes, seconds = divmod(round(time.monotonic() - began), 60)
    progress.say(f"benchmarks: done in {minutes}:{seconds:02d}")
    return 0


def render_only(jobs: Sequence[Job], args: argparse.Namespace) -> int:
    """Publish the figures of the last run's JSON again; 1 if there is none."""
    progress = Progress(0, sys.stderr)
    source = results_json(args.only)
    if not source.exists():
        progress.say(f"benchmarks: no {source.relative_to(ROOT)} to render: run them first")
        return 1
    progress.say(f"benchmarks: rendering {source.relative_to(ROOT)} again, measuring nothing")
    document = json.loads(source.read_text(encoding="utf-8"))
    publish_and_print(from_json(document), document["machine"], jobs, args, progress)
    return 0


def publish_and_print(
    judged: tuple[list[Result], list[Target], list[dict[str, Any]]],
    machine: Mapping[str, Any],
    jobs: Sequence[Job],
    args: argparse.Namespace,
    progress: Progress,
) -> None:
    """Publish a report (results, targets, errors) and print its tables on stdout.

    Only the parts of the page (and plots) the jobs measure are rewritten.
    """
    groups = {job.group for job in jobs}  # the relay and mixed groups have their own tables
    table = publish(
        *judged,
        machine,
        docs=not args.no_docs,
        progress=progress,
        main=bool(groups - {"relay", "mixed"}),
        relay="relay" in groups,
        mixed="mixed" in groups,
        only=args.only,
    )
    sys.stdout.write("\n" + table)


if __name__ == "__main__":
    sys.exit(main())
