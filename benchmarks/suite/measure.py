"""Running the measurements: each scenario program in a subprocess, on a fresh database.

:func:`run_all` runs every job of the plan (:mod:`benchmarks.suite.plan`) once per
repetition, interleaved, and turns each program run into a
:class:`~benchmarks.report.samples.Sample` (its JSON line, or one line saying why there
is none): :func:`measure` makes the fresh database (on the suite's PostgreSQL server,
:func:`start_server`) or SQLite file and drops it afterwards, :func:`run_program` runs
the program with a timeout and kills its process group if need be. :class:`Progress`
writes a line per measurement on stderr, with its :func:`headline` figure. The relay
scenario's programs get the suite's Redis server (:func:`start_broker`) as their broker.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from benchmarks.report.figures import fmt, metrics_from_sample
from benchmarks.report.samples import RELAY_PREFIX, Sample, one_line
from benchmarks.suite.paths import ROOT

if TYPE_CHECKING:
    from collections.abc import Sequence

    from benchmarks.suite.plan import Job
    from durable_sa.testing.servers import PostgresServer, RedisServer


class Progress:
    """Progress lines on stderr: ``[12/57] dbos C=4 rep 2 … 131 wf/s (3.1 s), eta 1:40``."""

    def __init__(self, total: int, stream: IO[str]) -> None:
        self.total = total
        self.done = 0
        self.stream = stream
        self.seconds: dict[str, list[float]] = {}

    def say(self, text: str) -> None:
        """One line of its own."""
        self.stream.write(text + "\n")
        self.stream.flush()

    def begin(self, job: Job, rep: int) -> None:
        """The measurement starts (the line is finished by :meth:`end`)."""
        self.done += 1
        self.stream.write(f"[{self.done}/{self.total}] {job.label} rep {rep} … ")
        self.stream.flush()

    def end(self, job: Job, outcome: str, seconds: float, remaining: Sequence[Job]) -> None:
        """Finish the line: the headline figure or the error, the time, the time to go."""
        self.seconds.setdefault(job.label, []).append(seconds)
        known = [s for times in self.seconds.values() for s in times]
        typical = statistics.median(known) if known else 0.0
        eta = sum(statistics.median(self.seconds.get(j.label, [typical])) for j in remaining)
        minutes, secs = divmod(round(eta), 60)
        self.say(f"{outcome} ({seconds:.1f} s), eta {minutes}:{secs:02d}")


def headline(sample: Sample) -> str:
    """The figure a progress line shows: ``131 wf/s``, ``2.1 ms``, ``error: ...``.

    A relay measurement shows its drain, published messages, backlog and verdict.
    """
    if sample.error is not None:
        return f"error: {one_line(sample.error, 100)}"
    out = sample.output or {}
    if sample.kind.startswith(RELAY_PREFIX) and out.get("published_per_s") is not None:
        verdict = {True: "bounded", False: "NOT bounded", None: "too short to judge"}
        return (
            f"{fmt(out.get('wf_per_s'))} wf/s, "
            f"{fmt(out.get('published_per_s'))} msg/s published, "
            f"backlog after warm-up ≤ {out.get('backlog_max_after_warmup') or 0:.0f}, "
            f"{verdict.get(out.get('bounded'), '?')} ({sample.kind})"
        )
    metrics = metrics_from_sample(sample)
    if not metrics:
        return "no figures in the output"
    first = metrics[0]
    return f"{fmt(first.value)} {first.unit} ({first.scenario})"


def _kill(proc: subprocess.Popen[str]) -> None:
    """Kill the program and every process it started (its own process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def run_program(
    job: Job, url: str, broker_url: str | None = None
) -> tuple[dict[str, Any] | None, str | None]:
    """Run the job's program on ``url``: its JSON line, or one line saying why not."""
    if importlib.util.find_spec(job.module) is None:
        return None, f"program {job.module} is missing"
    argv = [sys.executable, "-m", job.module, *job.args, "--url", url]
    if broker_url is not None:
        argv += ["--broker-url", broker_url]
    with tempfile.TemporaryFile("w+", encoding="utf-8") as stderr:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
            argv,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=True,  # its own process group: a timeout kills its workers too
        )
        try:
            stdout, _ = proc.communicate(timeout=job.timeout_s)
        except subprocess.TimeoutExpired:
            _kill(proc)
            return None, f"timed out after {job.timeout_s:g} s"
        except BaseException:
            _kill(proc)
            raise
        stderr.seek(0)
        log = stderr.read()
    if proc.returncode != 0:
        return None, f"exit code {proc.returncode}: {one_line(log)}"
    for line in reversed(stdout.splitlines()):
        with contextlib.suppress(ValueError):
            out = json.loads(line)
            if isinstance(out, dict):
                return out, None
    return None, f"no JSON line on stdout ({one_line(log)})"


def measure(  # noqa: PLR0913 - the job and everything it runs on
    job: Job,
    rep: int,
    index: int,
    server: PostgresServer | str,
    tmp: Path,
    *,
    broker: RedisServer | str = "not needed",
) -> Sample:
    """One repetition of one job on a fresh database (dropped afterwards)."""
    name = f"bench_r{rep}_j{index}"
    started = time.perf_counter()
    output: dict[str, Any] | None = None
    error: str | None = None
    broker_url = None if isinstance(broker, str) else broker.url
    if job.broker and broker_url is None:
        error = f"no Redis server: {broker}"
    elif job.database == "sqlite":
        path = tmp / f"{name}.db"
        try:
            output, error = run_program(job, f"sqlite:///{path}")
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
    elif isinstance(server, str):
        error = f"no PostgreSQL server: {server}"
    else:
        try:
            server.create_database(name)
            output, error = run_program(job, server.url(name), broker_url if job.broker else None)
        except Exception as exc:  # noqa: BLE001 - one measurement never stops the suite
            error = f"{type(exc).__name__}: {one_line(str(exc))}"
        finally:
            with contextlib.suppress(Exception):
                server.drop_database(name)
    return Sample(
        kind=job.kind,
        system=job.system,
        rep=rep,
        processes=job.processes,
        concurrency=job.concurrency,
        output=output,
        error=error,
        seconds=time.perf_counter() - started,
    )


def run_all(
    jobs: Sequence[Job],
    repetitions: int,
    server: PostgresServer | str,
    progress: Progress,
    broker: RedisServer | str = "not needed",
) -> list[Sample]:
    """Every job ``repetitions`` times, interleaved; a job that failed in rep 1 stops."""
    samples: list[Sample] = []
    failed_first: set[int] = set()
    order = [
        (rep, index, job) for rep in range(1, repetitions + 1) for index, job in enumerate(jobs)
    ]
    with tempfile.TemporaryDirectory(prefix="durable-bench-") as tmp:
        for position, (rep, index, job) in enumerate(order):
            remaining = [j for r, i, j in order[position + 1 :] if i not in failed_first or r == 1]
            progress.begin(job, rep)
            if index in failed_first:
                progress.end(job, "skipped: failed in rep 1", 0.0, remaining)
                continue
            sample = measure(job, rep, index, server, Path(tmp), broker=broker)
            if sample.error is not None and rep == 1:
                failed_first.add(index)
            samples.append(sample)
            progress.end(job, headline(sample), sample.seconds, remaining)
    return samples


def start_server() -> PostgresServer | str:
    """The suite's PostgreSQL server (default durability), or why it could not start."""
    try:
        from durable_sa.testing.servers import PostgresServer  # noqa: PLC0415 - needed only here

        return PostgresServer(durable=True).start()
    except Exception as exc:  # noqa: BLE001 - SQLite scenarios can still run
        return f"{type(exc).__name__}: {one_line(str(exc))}"


def start_broker() -> RedisServer | str:
    """The suite's Redis server (the relay scenario's broker), or why it could not start."""
    try:
        from durable_sa.testing.servers import RedisServer  # noqa: PLC0415 - needed only here

        return RedisServer().start()
    except Exception as exc:  # noqa: BLE001 - the other scenarios can still run
        return f"{type(exc).__name__}: {one_line(str(exc))}"
