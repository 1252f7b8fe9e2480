"""The relay scenario: scenario 2's 3-step throughput through a relay backend.

``python -m benchmarks.relay_bench --url PG_URL --backend jobs_table|redis|celery
--broker-url REDIS_URL --n N --concurrency C --processes P`` prints one JSON line.

Like scenario 2 (:func:`benchmarks.durable_bench.throughput`), N ``bench3`` runs are
started up front while nothing consumes, then the consumers are let go and the clock
runs until the database shows all N completed (the *drain*). The consumers:

* ``jobs_table``: P durable-sa worker processes of concurrency C on the jobs table (the
  baseline: no outbox, no relay, no broker).
* ``redis``: P durable-sa worker processes of concurrency C on Redis Streams, started
  with ``relay=False``, plus **one** relay process (:mod:`benchmarks.durable_worker`
  ``--relay-only``: the :class:`~durable_sa.outbox.Relay` that ``durable-sa relay``
  runs, with its defaults).
* ``celery``: one relay process, plus P Celery worker processes (``celery -A
  benchmarks.relay_celery_app:app worker``, prefork pool of concurrency C) running the
  durable task.

Each run of ``bench3`` is three jobs, one per step, so a relay backend carries 3 N
messages: every step's commit writes the next step's outbox row, and the relay must
publish it before any consumer can run that step.

While draining, every ``--sample-interval`` seconds (0.25) the program records the
completed runs, the outbox **backlog** (rows with ``published_at IS NULL`` and
``available_at <= now``: due and not yet handed to the broker, what
:meth:`Relay.backlog <durable_sa.outbox.Relay.backlog>` counts) and the messages
**published** so far. Published is the relay process's own counter
(``relay.stats.published``, asked for over its stdin at each sample): exact for both
backends, whereas a count of outbox rows is not (the Celery backend deletes a row once
its job is done, and pruning deletes published Redis rows after a while).
``published_per_s`` is the published count when the drain ended over the drain's time.

``backlog_max_after_warmup`` leaves out the warm-up: the first 2 s or 10 % of the drain,
or until the relay had published N messages (the rows of the runs started up front,
which it publishes first, being due first), whichever is longest, at most half the
drain. The verdict ``bounded`` (see :func:`benchmarks.report.relay_backlog.backlog_verdict`) says
whether the relay kept up with the engine's commits: the backlog at the end is within
one relay batch, and over the second half of the drain it does not trend upward
(least-squares slope) nor rise above the first half's maximum. The JSON line also
carries the backlog series (``[t, backlog]`` pairs, at most 200) and the published
series. The jobs table has no outbox: its backlog figures and verdict are ``null``.

The database must be fresh (the suite creates one per measurement); the broker's Redis
database is flushed (FLUSHALL) first.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

from sqlalchemy import func, select

from benchmarks.durable_bench import completed, last_run_id
from benchmarks.report.relay_backlog import backlog_verdict, thin
from benchmarks.workload import BACKEND_ENV, BROKER_ENV, CELERY, URL_ENV, engine_for
from durable_sa.store.models import outbox_table

if TYPE_CHECKING:
    from collections.abc import Sequence

    from durable_sa import Durable

ROOT: Final = Path(__file__).resolve().parents[1]
BACKENDS: Final = ("jobs_table", "redis", "celery")
BATCH_SIZE: Final = 500
"""The relay's batch size: ``durable-sa relay``'s default."""
SERIES_POINTS: Final = 200
_POLL_S: Final = 0.005
_STOP_TIMEOUT_S: Final = 60.0


class Controlled:
    """A :mod:`benchmarks.durable_worker` process: ``ready``, then ``go`` / ``stop``."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        """Start the process (call :meth:`wait_ready` before :meth:`go`)."""
        self.proc = subprocess.Popen(  # noqa: S603 - our own module, run with our interpreter
            [sys.executable, "-m", "benchmarks.durable_worker", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=ROOT,
            text=True,
        )

    def _send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def _read(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def wait_ready(self) -> None:
        """Block until the process has imported everything and connected."""
        if self._read() != "ready":
            msg = f"process {self.proc.pid} ({' '.join(self.proc.args[3:])}) failed to start"
            raise RuntimeError(msg)

    def go(self) -> None:
        """Let it start working."""
        self._send("go")

    def sample(self) -> int:
        """A relay process's published count so far."""
        self._send("sample")
        return int(self._read())

    def stop(self) -> dict[str, Any]:
        """Stop it gracefully; its JSON report."""
        self._send("stop")
        line = self._read()
        self.proc.wait(timeout=_STOP_TIMEOUT_S)
        return json.loads(line) if line else {}

    def close(self) -> None:
        """Kill it if it is still there (after an error)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=_STOP_TIMEOUT_S)


class CeleryWorker:
    """A ``celery worker`` process (prefork) on the scenario's app, its log in a file."""

    def __init__(self, env: dict[str, str], *, concurrency: int, name: str) -> None:
        """Start the process (call :meth:`wait_ready` before relying on it)."""
        self.log: IO[bytes] = tempfile.TemporaryFile(prefix="durable-bench-celery-")  # noqa: SIM115 - closed in close()
        command = [
            sys.executable, "-m", "celery", "-A", "benchmarks.relay_celery_app:app", "worker",
            "--pool=prefork", f"--concurrency={concurrency}",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-n", f"{name}@%h", "--loglevel=INFO",
        ]  # fmt: skip
        self.proc = subprocess.Popen(  # noqa: S603 - our interpreter, our app
            command,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )

    def output(self) -> str:
        """What the worker logged so far."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        """Block until the worker logs that it is ready."""
        deadline = time.monotonic() + timeout
        while " ready." not in self.output():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.output().strip().splitlines()[-5:]
                msg = f"celery worker {self.proc.pid} not ready: {' / '.join(tail)}"
                raise RuntimeError(msg)
            time.sleep(0.1)

    def stop(self) -> None:
        """Warm shutdown (SIGTERM): finish what runs, then exit."""
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(timeout=_STOP_TIMEOUT_S)

    def close(self) -> None:
        """Kill it if it is still there, and drop its log."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=_STOP_TIMEOUT_S)
        self.log.close()


def backlog(engine: Durable) -> int:
    """Outbox rows due now and not yet published (what ``Relay.backlog`` counts)."""
    stmt = (
        select(func.count())
        .select_from(outbox_table)
        .where(outbox_table.c.published_at.is_(None))
        .where(outbox_table.c.available_at <= datetime.now(UTC))
    )
    with engine.sa_engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def flush_broker(broker_url: str) -> None:
    """FLUSHALL on the broker's Redis server: no stream, queue or lock left over."""
    import redis  # noqa: PLC0415 - only relay backends need it

    client = redis.Redis.from_url(broker_url)
    try:
        client.flushall()
    finally:
        client.close()


class Consumers:
    """Everything that drains the runs through one backend, started and stopped together.

    The relay process (relay backends), then durable-sa worker processes (jobs table,
    Redis) or Celery worker processes (Celery); see the module docstring.
    """

    def __init__(
        self,
        backend: str,
        env: dict[str, str],
        *,
        processes: int,
        concurrency: int,
        batch_size: int,
    ) -> None:
        """Start every process and wait until each is ready (nothing runs before :meth:`go`)."""
        relayed = backend != "jobs_table"
        self.relay: Controlled | None = None
        self.workers: list[Controlled] = []
        self.celery: list[CeleryWorker] = []
        try:
            if relayed:
                self.relay = Controlled(env, "--relay-only", "--batch-size", str(batch_size))
            if backend == "celery":
                self.celery = [
                    CeleryWorker(env, concurrency=concurrency, name=f"bench{i}")
                    for i in range(processes)
                ]
            else:
                extra = ("--no-relay",) if relayed else ()
                self.workers = [
                    Controlled(env, "--concurrency", str(concurrency), *extra)
                    for _ in range(processes)
                ]
            for proc in self._controlled():
                proc.wait_ready()
            for worker in self.celery:
                worker.wait_ready()
        except BaseException:
            self.close()
            raise

    def _controlled(self) -> list[Controlled]:
        return [*([self.relay] if self.relay else []), *self.workers]

    def go(self) -> None:
        """Let the workers and the relay start (Celery workers consume from the start)."""
        for proc in self.workers:
            proc.go()
        if self.relay is not None:
            self.relay.go()

    def stop(self) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """Stop everything gracefully; the workers' reports and the relay's."""
        reports = [proc.stop() for proc in self.workers]
        relay = self.relay.stop() if self.relay is not None else None
        for worker in self.celery:
            worker.stop()
        return reports, relay

    def close(self) -> None:
        """Kill whatever is left (after an error), and drop the Celery logs."""
        for proc in self._controlled():
            proc.close()
        for worker in self.celery:
            worker.close()

    def logs(self) -> str:
        """The end of what the Celery workers logged (the first clue when they fail)."""
        return "".join(worker.output()[-4000:] for worker in self.celery)


def drain(  # noqa: PLR0913 - the drain's parts, keyword-only
    engine: Durable, consumers: Consumers, *, n: int, after: int, timeout: float, interval: float
) -> tuple[float, list[tuple[float, int, int, int]]]:
    """Let the consumers go; the drain's seconds and its samples.

    A sample is ``(t, backlog, published, completed)``, every ``interval`` seconds and
    once more when the last run completed (the jobs table: backlog and published 0).
    """
    relay = consumers.relay
    samples: list[tuple[float, int, int, int]] = []
    deadline = time.monotonic() + timeout
    started = time.perf_counter()
    consumers.go()
    next_sample = 0.0
    while True:
        done = completed(engine, after=after)
        now = time.perf_counter() - started
        if done >= n or now >= next_sample:
            if relay is not None:
                samples.append((now, backlog(engine), relay.sample(), done))
            else:
                samples.append((now, 0, 0, done))
            next_sample += interval
        if done >= n:
            return now, samples
        if time.monotonic() > deadline:
            msg = f"only {done} of {n} runs completed within {timeout} s"
            raise RuntimeError(msg)
        time.sleep(_POLL_S)


def relay_scenario(  # noqa: PLR0913 - one scenario, all of it keyword-only
    url: str,
    *,
    backend: str,
    broker_url: str | None,
    n: int,
    processes: int,
    concurrency: int,
    timeout: float,
    sample_interval: float = 0.25,
    batch_size: int = BATCH_SIZE,
) -> dict[str, Any]:
    """Start ``n`` bench3 runs, then drain them through ``backend``; see the module doc."""
    spec = {"jobs_table": None, "redis": broker_url, "celery": CELERY}[backend]
    env = {**os.environ, URL_ENV: url, "PYTHONPATH": str(ROOT)}
    if backend != "jobs_table":
        if not broker_url:
            msg = f"--broker-url is needed for the {backend} backend"
            raise SystemExit(msg)
        flush_broker(broker_url)
        env |= {BACKEND_ENV: spec or "", BROKER_ENV: broker_url}
        os.environ[BROKER_ENV] = broker_url  # this process's engine names the Celery app
    engine = engine_for(url, spec)
    engine.create_tables()

    consumers = Consumers(
        backend, env, processes=processes, concurrency=concurrency, batch_size=batch_size
    )
    try:
        before = last_run_id(engine)
        started = time.perf_counter()
        for i in range(n):
            engine.start("bench3", {"i": i})
        start_s = time.perf_counter() - started
        drain_s, samples = drain(
            engine, consumers, n=n, after=before, timeout=timeout, interval=sample_interval
        )
        worker_reports, relay_report = consumers.stop()
    except BaseException:
        sys.stderr.write(consumers.logs())
        raise
    finally:
        consumers.close()
    return summarize(
        backend=backend,
        n=n,
        processes=processes,
        concurrency=concurrency,
        start_s=start_s,
        drain_s=drain_s,
        samples=samples,
        batch_size=batch_size,
        relay_report=relay_report,
        worker_reports=worker_reports,
    )


def summarize(  # noqa: PLR0913 - the measurement's parts, all keyword-only
    *,
    backend: str,
    n: int,
    processes: int,
    concurrency: int,
    start_s: float,
    drain_s: float,
    samples: Sequence[tuple[float, int, int, int]],
    batch_size: int,
    relay_report: dict[str, Any] | None,
    worker_reports: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """The JSON line of one measurement."""
    out: dict[str, Any] = {
        "system": "durable-sa",
        "scenario": "relay",
        "backend": backend,
        "n": n,
        "processes": processes,
        "concurrency": concurrency,
        "start_s": start_s,
        "drain_s": drain_s,
        "wf_per_s": n / drain_s,
        "end_to_end_wf_per_s": n / (start_s + drain_s),
        "samples": len(samples),
    }
    cpu = [r["cpu_s"] for r in worker_reports if "cpu_s" in r]
    if cpu:
        out["worker_cpu_ms_per_wf"] = sum(cpu) * 1000 / n
    if relay_report is None:
        return out | {
            "published": None,
            "published_per_s": None,
            "backlog_max_after_warmup": None,
            "backlog_final": None,
            "bounded": None,
        }
    published = samples[-1][2]
    series = [(round(t, 3), b) for t, b, _, _ in samples]
    caught_up = next((t for t, _, p, _ in samples if p >= n), None)  # the first n published
    verdict = backlog_verdict(series, drain_s=drain_s, batch_size=batch_size, caught_up_s=caught_up)
    return out | {
        "batch_size": batch_size,
        "published": published,
        "published_per_wf": published / n,
        "published_per_s": published / drain_s,
        "relay_cpu_ms_per_msg": (
            relay_report["cpu_s"] * 1000 / published if published and "cpu_s" in relay_report
            else None
        ),
        "relay_stats": relay_report.get("stats"),
        **verdict,
        "backlog_series": thin(series, SERIES_POINTS),
        "published_series": thin([(round(t, 3), p) for t, _, p, _ in samples], SERIES_POINTS),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Run one measurement and print its JSON line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.relay_bench")
    parser.add_argument("--url", required=True)
    parser.add_argument("--backend", choices=BACKENDS, required=True)
    parser.add_argument("--broker-url", help="redis:// URL (Redis Streams, Celery's broker)")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--sample-interval", type=float, default=0.25)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)
    out = relay_scenario(
        args.url,
        backend=args.backend,
        broker_url=args.broker_url,
        n=args.n,
        processes=args.processes,
        concurrency=args.concurrency,
        timeout=args.timeout,
        sample_interval=args.sample_interval,
        batch_size=args.batch_size,
    )
    with contextlib.suppress(BrokenPipeError):
        sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
