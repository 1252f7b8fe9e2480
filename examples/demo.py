"""``make demo``: a real worker process is killed inside a step, and a new one resumes the run.

Rules:
- Everything runs on one SQLite file (no server) and in real processes: the workers are
  ``durable-sa worker`` subprocesses, and the looks at the database are ``durable-sa
  status`` and ``durable-sa list`` subprocesses, as a user would type them.
- Every process the demo starts is stopped by its PID before the demo returns, also
  when the demo fails or is interrupted.
- It takes a few seconds: the workers get a short lease (:data:`LEASE_SECONDS`) so that
  the killed worker's claim runs out quickly, and the output says why that matters.
- The counts it prints come from the handlers' own records (:mod:`examples.orders`), not
  from the engine, so they show what really ran, and in which process.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from sqlalchemy import create_engine, select

from durable_sa import Durable, Job
from examples import orders

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

ROOT: Final = Path(__file__).resolve().parents[1]
"""The checkout: the directory that holds the ``examples`` package."""

LEASE_SECONDS: Final = 3
"""The demo workers' ``--lease``: how long a dead worker's claim keeps its job (default 30)."""
HEARTBEAT_SECONDS: Final = 1
"""The demo workers' ``--heartbeat``, which renews the lease: at most half of it (default 5)."""
WIDTH: Final = 88
"""The width the demo's explanations are wrapped to."""
PATIENCE: Final = 60.0
"""Seconds the demo waits for any one thing before it gives up."""

DESCRIPTION: Final = """\
Starts an order workflow (reserve, charge, ship) on a SQLite file and runs it in a
real worker process. While the slow 'charge' step runs, the demo kills that process
with SIGKILL, then starts a second worker process, which resumes the run from its
first unfinished step. On the way it runs 'durable-sa status' and 'durable-sa list'
on the demo's database, and at the end it shows how many times each step ran and in
which process. It takes about ten seconds.
"""

Process = subprocess.Popen[bytes]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo (or, with ``--start N``, only start orders for a worker of your own)."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.demo",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--db",
        metavar="PATH",
        help="the SQLite file to use, kept afterwards (default: a temporary one)",
    )
    parser.add_argument(
        "--start",
        type=_count,
        metavar="N",
        help="only start N orders (on --db, else $DURABLE_SA_DATABASE_URL, else "
        "durable-sa-demo.sqlite here) for a worker you run yourself",
    )
    args = parser.parse_args(argv)
    if args.start is not None:
        if args.db:
            os.environ[orders.ENV_DATABASE_URL] = f"sqlite:///{Path(args.db).resolve()}"
        start_orders(args.start)
        return 0
    try:
        with tempfile.TemporaryDirectory(prefix="durable-sa-demo-") as tmp:
            database = Path(args.db).resolve() if args.db else Path(tmp) / "demo.sqlite"
            Demo(database, Path(tmp)).run()
    except DemoError as exc:
        print(f"python -m examples.demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("python -m examples.demo: interrupted; its processes are stopped", file=sys.stderr)
        return 130
    return 0


def _count(text: str) -> int:
    """A whole number of orders, at least 1 (argparse turns the error into one line)."""
    if not text.isdigit() or int(text) < 1:
        msg = f"expected a whole number of at least 1, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return int(text)


def start_orders(count: int) -> list[int]:
    """Start ``count`` orders on :func:`examples.orders.app`'s database; run none of them."""
    engine = orders.app()
    run_ids = [engine.start(orders.WORKFLOW, order(2000 + i)).run_id for i in range(count)]
    url = engine.sa_engine.url.render_as_string(hide_password=True)
    engine.sa_engine.dispose()
    print(f"started order runs {run_ids} on {url}")
    print(f"run them:    DURABLE_SA_DATABASE_URL={url} durable-sa worker examples.orders:app")
    print(f"watch them:  DURABLE_SA_DATABASE_URL={url} durable-sa list")
    return run_ids


def order(order_id: int) -> dict[str, object]:
    """An order's input."""
    return {"order_id": order_id, "sku": "BOOK-42", "amount": 39.9}


class DemoError(RuntimeError):
    """The demo could not go on: a worker exited by itself, or something took too long."""


class Demo:
    """The demo on the SQLite file ``database``; its scratch files go in ``scratch``."""

    def __init__(self, database: Path, scratch: Path) -> None:
        """Prepare the paths and the subprocesses' environment; start nothing yet."""
        self.url = f"sqlite:///{database}"
        self.scratch = scratch
        self.calls = scratch / "calls.log"
        self.calls.write_text("", encoding="utf-8")
        path = [str(ROOT), os.environ.get("PYTHONPATH", "")]  # `examples`, from anywhere
        self.env = {
            **os.environ,
            orders.ENV_DATABASE_URL: self.url,
            orders.ENV_CALLS: str(self.calls),
            "PYTHONPATH": os.pathsep.join(filter(None, path)),
        }
        self.started: list[Process] = []
        self.workers: list[Process] = []
        self.engine = Durable(create_engine(self.url))
        self.run_id = 0

    def run(self) -> None:
        """The demo, start to end; every process it started is stopped on the way out."""
        try:
            self._story()
        finally:
            for process in self.started:
                stop(process, signal.SIGKILL)
            self.engine.sa_engine.dispose()

    def _story(self) -> None:
        print("durable-sa demo: a worker process is killed in the middle of a step, and a")
        print("new worker process resumes the run from its journal.\n")
        print("The database is one SQLite file (no server). The commands below read it from")
        print(f"the environment:\n  $ export {orders.ENV_DATABASE_URL}={self.url}")

        seconds = f"{orders.CHARGE_SECONDS:.0f} s"
        heading(1, f"Start an order: reserve -> charge (takes {seconds}) -> ship")
        orders.define()
        self.engine.create_tables()
        self.run_id = self.engine.start(orders.WORKFLOW, order(1001)).run_id
        say(
            f"Run {self.run_id} started: a row in durable_runs, and the job for its first step "
            "in durable_jobs. No step has run yet: worker processes run them."
        )

        heading(2, "Start worker 1, a separate process")
        first = self._worker()
        say(f"Worker 1 has pid {first.pid}. Waiting until it begins the 'charge' step...")
        self._wait_for(lambda: self._count("charge", "began") == 1, "'charge' to begin")
        say(f"'reserve' finished and 'charge' began, in pid {first.pid}.")

        heading(3, f"kill -9 {first.pid}: worker 1 dies in the middle of 'charge'")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=PATIENCE)
        say(
            f"Worker 1 is gone, killed by signal {-first.returncode} (SIGKILL: no clean-up "
            "at all). Its output ends with 'reserve'; 'charge' never got a line:"
        )
        self._show_log(1)
        self._cli("status", str(self.run_id))
        say(
            f"Run {self.run_id} is still 'running' at step 1/3. 'reserve' is in the journal; "
            f"'charge' began, but nothing of it was committed. {self._claim()}"
        )

        heading(4, "Start worker 2, a new process")
        started = time.monotonic()
        second = self._worker()
        say(
            f"Worker 2 has pid {second.pid}. It may take the job only once the lease runs "
            "out, because until then the job's worker may be slow rather than dead: a live "
            f"worker renews its leases every --heartbeat ({HEARTBEAT_SECONDS} s here), a dead "
            f"one cannot. The demo gives its workers --lease {LEASE_SECONDS} so that you do "
            "not wait the default 30 s."
        )
        self._wait_for(self._completed, f"run {self.run_id} to complete")
        took = time.monotonic() - started
        stop(second, signal.SIGTERM)
        say(
            f"Run {self.run_id} completed {took:.1f} s after worker 2 started. Worker 2 "
            f"stopped on SIGTERM (a graceful stop, exit status {second.returncode}). It began "
            "with 'charge': it did not run 'reserve' again."
        )
        self._show_log(2)

        heading(5, "Look at the run with the CLI")
        self._cli("list")
        self._cli("status", str(self.run_id))

        heading(6, "What ran, and where (from the handlers' own records)")
        self._tally({first.pid: "worker 1 (killed)", second.pid: "worker 2"})

    # ── the processes ──────────────────────────────────────────────────────────

    def _worker(self) -> Process:
        """Start a ``durable-sa worker`` process; its output goes to a log file."""
        flags = ["--lease", str(LEASE_SECONDS), "--heartbeat", str(HEARTBEAT_SECONDS)]
        command = [sys.executable, "-m", "durable_sa.cli", "worker", "examples.orders:app", *flags]
        print(f"  $ {shown(command)} &")
        with (self.scratch / f"worker-{len(self.workers) + 1}.log").open("wb") as log:
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self.started.append(process)
        self.workers.append(process)
        return process

    def _cli(self, *arguments: str) -> None:
        """Run ``durable-sa ARGUMENTS`` on the demo's database and print what it prints."""
        command = [sys.executable, "-m", "durable_sa.cli", *arguments]
        print(f"  $ {shown(command)}")
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.started.append(process)
        output, _ = process.communicate(timeout=PATIENCE)
        quote(output.decode(errors="replace"))

    def _show_log(self, number: int) -> None:
        log = self.scratch / f"worker-{number}.log"
        quote(log.read_text(encoding="utf-8", errors="replace"))

    def _wait_for(self, done: Callable[[], bool], what: str) -> None:
        """Poll ``done`` until it holds; a worker that exits on its own meanwhile is an error."""
        deadline = time.monotonic() + PATIENCE
        while not done():
            if any(p.poll() not in (None, -signal.SIGKILL) for p in self.workers):
                msg = f"a worker exited while the demo waited for {what}:\n{self._logs()}"
                raise DemoError(msg)
            if time.monotonic() > deadline:
                msg = f"gave up waiting for {what} after {PATIENCE:.0f} s:\n{self._logs()}"
                raise DemoError(msg)
            time.sleep(0.1)

    def _logs(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(encoding='utf-8', errors='replace')}"
            for log in sorted(self.scratch.glob("worker-*.log"))
        )

    # ── what the database and the records say ──────────────────────────────────

    def _records(self) -> list[tuple[str, str, int]]:
        """(step, event, pid) for this run, from the handlers' calls file."""
        records = []
        for line in self.calls.read_text(encoding="utf-8").splitlines():
            run_id, step, event, pid = line.split()
            if int(run_id) == self.run_id:
                records.append((step, event, int(pid)))
        return records

    def _count(self, step: str, event: str) -> int:
        return sum(1 for s, e, _ in self._records() if (s, e) == (step, event))

    def _completed(self) -> bool:
        return self.engine.status(self.run_id).status == "completed"

    def _claim(self) -> str:
        """A sentence on who holds the run's job, and for how long."""
        with self.engine.sa_engine.connect() as connection:
            job = connection.execute(
                select(Job.claimed_by, Job.claimed_until).where(Job.run_id == self.run_id)
            ).one()
        if job.claimed_until is None:
            return "Its job is queued, claimed by nobody."
        until = job.claimed_until.replace(tzinfo=job.claimed_until.tzinfo or UTC)
        left = (until - datetime.now(UTC)).total_seconds()
        if left <= 0:
            return (
                f"Its job is still marked as claimed by the dead worker ({job.claimed_by}), "
                "but that claim's lease has run out: any worker may take it now."
            )
        return (
            f"Its job is still claimed by the dead worker ({job.claimed_by}) for another "
            f"{left:.1f} s: a claim is a lease."
        )

    def _tally(self, names: dict[int, str]) -> None:
        """Print how many times each step began and finished, and in which processes."""
        records = self._records()
        counts = Counter((step, event) for step, event, _ in records)
        rows = [("step", "began", "finished", "in")]
        for step in orders.STEPS:
            where = dict.fromkeys(
                names.get(pid, f"pid {pid}") for s, _, pid in records if s == step
            )
            rows.append(
                (step, str(counts[step, "began"]), str(counts[step, "finished"]), ", ".join(where))
            )
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        for row in rows:
            print(
                "   "
                + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
                + "  "
                + row[3]
            )
        print()
        say(
            "'reserve' ran once: worker 2 read its result from the journal instead of running "
            "it. 'charge' began twice and finished once: the kill cut it off before its "
            "checkpoint, so worker 2 ran it again from its start. A step cut off by a crash "
            "runs again (at least once): give its side effects an idempotency key (see "
            "docs/delivery.md). 'ship' ran once. Each step is in the journal once, and the "
            "run is completed."
        )


def heading(number: int, title: str) -> None:
    """A numbered section title."""
    print(f"\n{number}. {title}")


def say(text: str) -> None:
    """A paragraph of explanation, indented and wrapped."""
    print(textwrap.fill(text, width=WIDTH, initial_indent="   ", subsequent_indent="   "))


def quote(output: str) -> None:
    """A process's output, each line behind a bar, so that it stands apart from the story."""
    for line in output.rstrip().splitlines():
        print(f"  | {line}".rstrip())
    print()


def shown(command: Sequence[str]) -> str:
    """``command`` as a user would type it: ``durable-sa ...`` for the CLI module."""
    words = list(command)
    if words[1:3] == ["-m", "durable_sa.cli"]:
        words = ["durable-sa", *words[3:]]
    return " ".join(words)


def stop(process: Process, how: signal.Signals) -> None:
    """Send ``how`` to ``process`` by its PID unless it has exited, and wait for its end."""
    if process.poll() is None:
        os.kill(process.pid, how)
        try:
            process.wait(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


if __name__ == "__main__":
    raise SystemExit(main())
