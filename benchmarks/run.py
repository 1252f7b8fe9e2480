"""Run the benchmark suite and report: ``python -m benchmarks.run [--quick] [--only ...]``.

Rules of this module:

* Every measurement is one run of a scenario program (``python -m benchmarks.…``) in a
  subprocess, on a fresh database: a new database on the suite's own PostgreSQL server
  (started here with the server's default durability, dropped after each measurement)
  or a new SQLite file in a temporary directory. The program prints one JSON line.
* The relay scenario (group ``relay``) also needs a broker: the suite starts its own
  Redis server (``tests.support.redisserver``: 127.0.0.1, a free port, every write
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
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

from benchmarks.report import docs_page, mixed_table, plots, relay_table, report, tables
from benchmarks.report.figures import fmt, metrics_from_sample
from benchmarks.report.json_document import to_json
from benchmarks.report.samples import RELAY_BACKENDS, RELAY_PREFIX, Sample, job_label, one_line
from benchmarks.report.text_table import text_table

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from benchmarks.report.figures import Result
    from benchmarks.report.targets import Target
    from tests.support.pgserver import PostgresServer
    from tests.support.redisserver import RedisServer

ROOT: Final = Path(__file__).resolve().parents[1]
RESULTS_JSON: Final = ROOT / "benchmarks" / "results" / "latest.json"
PLOT_PNG: Final = ROOT / "docs" / "performance.png"
RELAY_PNG: Final = ROOT / "docs" / "performance-relay.png"
MIXED_PNG: Final = ROOT / "docs" / "performance-mixed.png"
DOCS_PAGE: Final = ROOT / "docs" / "performance.md"

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
)
"""What ``--only`` selects: ``floor`` is the PostgreSQL floor, ``throughput`` durable-sa's
worker configurations, ``peers`` both peers (or ``dbos`` / ``procrastinate`` alone),
``sqlite`` the SQLite floor and durable-sa on SQLite, ``relay`` scenario 2 through the
jobs table, Redis Streams and Celery (:mod:`benchmarks.relay_bench`), ``mixed`` one
worker on ``mixed6`` and on ``plain6``, and DBOS on its ``mixed6``."""

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


# --------------------------------------------------------------------------- one measurement


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


# --------------------------------------------------------------------------- the machine


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in {"model name", "Model", "cpu model"}:
                return value.strip()
    return platform.processor() or platform.machine()


def _ram_gb() -> float | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def _os_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text(encoding="utf-8").splitlines():
            if line.startswith("PRETTY_NAME="):
                return f"{line.split('=', 1)[1].strip().strip(chr(34))}, {platform.release()}"
    return platform.platform()


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(  # noqa: S603 - fixed argv, no shell
            ["git", *args],  # noqa: S607 - git from PATH, as a developer runs it
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip()


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _postgres_facts(server: PostgresServer | str) -> dict[str, Any]:
    if isinstance(server, str):
        return {"postgresql": f"unavailable ({server})"}
    try:
        with server.connect() as conn:
            settings = {
                name: str(conn.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
                for name in ("server_version", "fsync", "synchronous_commit", "shared_buffers")
            }
    except Exception as exc:  # noqa: BLE001 - facts are best effort
        return {"postgresql": f"unknown ({one_line(str(exc))})"}
    return {
        "postgresql": settings.pop("server_version").split()[0],
        "postgresql_settings": settings,
    }


def machine_facts(server: PostgresServer | str, sizes: Sizes, repetitions: int) -> dict[str, Any]:
    """What the figures were measured on, and with which software."""
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "ram_gb": _ram_gb(),
        "os": _os_name(),
        "python": platform.python_version(),
        **_postgres_facts(server),
        "sqlalchemy": _version("sqlalchemy"),
        "psycopg": _version("psycopg"),
        "dbos": _version("dbos"),
        "procrastinate": _version("procrastinate"),
        "celery": _version("celery"),
        "redis_py": _version("redis"),
        "commit": (commit + ("-dirty" if dirty else "")) if commit else "unknown",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mode": sizes.mode,
        "repetitions": repetitions,
        "n": sizes.n,
    }


# --------------------------------------------------------------------------- main


def start_server() -> PostgresServer | str:
    """The suite's PostgreSQL server (default durability), or why it could not start."""
    try:
        from tests.support.pgserver import PostgresServer  # noqa: PLC0415 - needed only here

        return PostgresServer(durable=True).start()
    except Exception as exc:  # noqa: BLE001 - SQLite scenarios can still run
        return f"{type(exc).__name__}: {one_line(str(exc))}"


def start_broker() -> RedisServer | str:
    """The suite's Redis server (the relay scenario's broker), or why it could not start."""
    try:
        from tests.support.redisserver import RedisServer  # noqa: PLC0415 - needed only here

        return RedisServer().start()
    except Exception as exc:  # noqa: BLE001 - the other scenarios can still run
        return f"{type(exc).__name__}: {one_line(str(exc))}"


def publish(  # noqa: PLR0913 - what was run, and where its figures go
    samples: Sequence[Sample],
    machine: Mapping[str, Any],
    *,
    docs: bool,
    progress: Progress,
    main: bool = True,
    relay: bool = True,
    mixed: bool = True,
    only: Sequence[str] | None = None,
) -> str:
    """Write the JSON, the plots and the docs tables; return the tables to print.

    ``main``, ``relay`` and ``mixed`` say which parts of the page (and which plot) this
    run measured: a part it did not measure keeps what an earlier run wrote there. A run of
    some groups only (``only``) writes its JSON beside ``latest.json``, as
    ``latest-only-<groups>.json``, so the last full run's figures stay whole.
    """
    results, found, errors = report(samples)
    errors = list(errors)
    RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
    if docs and main:
        try:
            plots.plot(results, machine, PLOT_PNG)
            progress.say(f"drew {PLOT_PNG.relative_to(ROOT)}")
        except Exception as exc:  # noqa: BLE001 - the figures matter more than the picture
            errors.append(_own_error("plot", exc))
        try:
            docs_page.update_docs(DOCS_PAGE, tables.markdown_table(results, found, errors, machine))
            progress.say(f"updated the table in {DOCS_PAGE.relative_to(ROOT)}")
        except Exception as exc:  # noqa: BLE001 - the figures matter more than the page
            errors.append(_own_error("docs", exc))
    if docs and relay:
        try:
            if plots.plot_relay(results, machine, RELAY_PNG):
                progress.say(f"drew {RELAY_PNG.relative_to(ROOT)}")
        except Exception as exc:  # noqa: BLE001 - the figures matter more than the picture
            errors.append(_own_error("relay plot", exc))
        try:
            block = relay_table.markdown_relay_table(results, found, errors, machine)
            docs_page.update_docs(DOCS_PAGE, block, docs_page.RELAY_START, docs_page.RELAY_END)
            progress.say(f"updated the relay table in {DOCS_PAGE.relative_to(ROOT)}")
        except Exception as exc:  # noqa: BLE001 - the figures matter more than the page
            errors.append(_own_error("relay docs", exc))
    if docs and mixed:
        errors += _publish_mixed(results, found, errors, machine, progress)
    document = to_json(machine, results, found, errors)
    target = RESULTS_JSON
    if only:
        target = RESULTS_JSON.with_name(f"latest-only-{'-'.join(sorted(set(only)))}.json")
    target.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    progress.say(f"wrote {target.relative_to(ROOT)}")
    return text_table(results, found, errors, machine)


def _publish_mixed(
    results: Sequence[Result],
    found: Sequence[Target],
    errors: Sequence[Mapping[str, Any]],
    machine: Mapping[str, Any],
    progress: Progress,
) -> list[dict[str, Any]]:
    """The mixed scenario's plot and table; the errors in drawing or writing them."""
    failed = []
    try:
        if plots.plot_mixed(results, machine, MIXED_PNG):
            progress.say(f"drew {MIXED_PNG.relative_to(ROOT)}")
    except Exception as exc:  # noqa: BLE001 - the figures matter more than the picture
        failed.append(_own_error("mixed plot", exc))
    try:
        block = mixed_table.markdown_table(results, found, errors, machine)
        docs_page.update_docs(DOCS_PAGE, block, docs_page.MIXED_START, docs_page.MIXED_END)
        progress.say(f"updated the mixed table in {DOCS_PAGE.relative_to(ROOT)}")
    except Exception as exc:  # noqa: BLE001 - the figures matter more than the page
        failed.append(_own_error("mixed docs", exc))
    return failed


def _own_error(what: str, exc: Exception) -> dict[str, Any]:
    return {
        "system": "bench",
        "scenario": what,
        "label": f"bench {what}",
        "rep": 0,
        "error": f"{type(exc).__name__}: {one_line(str(exc))}",
    }


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
    args = parser.parse_args(argv)
    if args.repetitions < 3:
        parser.error("--repetitions must be at least 3 (medians of fewer mean little)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite; 0 unless interrupted (failed targets and errors are in the report)."""
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    jobs = plan(sizes, args.only)
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
    parts = {job.group for job in jobs}  # the relay and mixed groups have their own tables
    table = publish(
        samples,
        machine,
        docs=not args.no_docs,
        progress=progress,
        main=bool(parts - {"relay", "mixed"}),
        relay="relay" in parts,
        mixed="mixed" in parts,
        only=args.only,
    )
    sys.stdout.write("\n" + table)
    minutes, seconds = divmod(round(time.monotonic() - began), 60)
    progress.say(f"benchmarks: done in {minutes}:{seconds:02d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
