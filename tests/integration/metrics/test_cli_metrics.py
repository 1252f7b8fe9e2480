"""``durable-sa metrics`` and ``worker --metrics-port``: real processes, scraped over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from durable_sa import Durable
from tests.integration.metrics.scraping import parse, value

ROOT = Path(__file__).resolve().parents[3]
APP = "tests.support.cli_app:engine"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Process:
    """A CLI process whose output is read in a thread, so its pipe never fills."""

    def __init__(self, *argv: str, url: str) -> None:
        env = {**os.environ, "DURABLE_SA_DATABASE_URL": url}
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "durable_sa.cli", *argv],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        self.lines.extend(line.rstrip("\n") for line in self.proc.stdout)

    def wait_for(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        pytest.fail(f"no line with {text!r}:\n" + "\n".join(self.lines))

    def stop(self, *, terminate: bool = True) -> tuple[int, str]:
        if terminate and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self._reader.join(timeout=10)
        return code, "\n".join(self.lines)


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        return response.read().decode()


def test_durable_sa_metrics_serves_the_database_metrics(engine, durable_each_database_url, app):
    for n in range(2):
        engine.start("cli-three", {"n": n})
    port = _free_port()
    served = _Process(
        "metrics", APP, "--port", str(port), "--cache", "0", url=durable_each_database_url
    )
    try:
        line = served.wait_for("durable-sa metrics: ")
        samples = parse(_scrape(port))
        assert value(samples, "durable_sa_runs", workflow="cli-three", status="running") == 2
        assert value(samples, "durable_sa_jobs_due", queue="default") == 2
        assert value(samples, "durable_sa_dead_letters_open") == 0
        assert value(samples, "durable_sa_workers_live") == 0
        engine.start("cli-three", {"n": 3})  # --cache 0: every scrape reads
        samples = parse(_scrape(port))
        assert value(samples, "durable_sa_runs", workflow="cli-three", status="running") == 3
    finally:
        code, text = served.stop()
    assert code == 0, text
    assert f"http://127.0.0.1:{port}/metrics" in line
    assert "durable-sa metrics stopped" in text
    assert "Traceback" not in text


def test_a_worker_serves_its_step_histogram(engine, durable_each_database_url, app):
    port = _free_port()
    worker = _Process(
        "worker",
        APP,
        "--poll-interval",
        "0.2",
        "--metrics-port",
        str(port),
        url=durable_each_database_url,
    )
    try:
        worker.wait_for(f"step metrics: http://127.0.0.1:{port}/metrics")
        runs = [engine.start("cli-three", {"n": n}).run_id for n in range(3)]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all(engine.status(run).status.is_terminal for run in runs):
                break
            time.sleep(0.2)
        samples = parse(_scrape(port))
        for step in ("fetch", "double", "report"):
            count = "durable_sa_step_duration_seconds_count"
            assert value(samples, count, workflow="cli-three", step=step) == 3
            attempts = "durable_sa_step_attempts_total"
            assert value(samples, attempts, workflow="cli-three", step=step, outcome="advance") == 3
        assert value(samples, "process_cpu_seconds_total") > 0  # the process's own, too
    finally:
        code, text = worker.stop()
    assert code == 0, text
    assert "Traceback" not in text


def test_a_port_in_use_and_a_bad_port_are_one_line(sqlite_engine, durable_sqlite_url, app):
    Durable(sqlite_engine).create_tables()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = _Process("metrics", APP, "--port", str(port), url=durable_sqlite_url)
        code, text = busy.stop(terminate=False)
    assert code == 1
    assert text.startswith(f"durable-sa: cannot serve metrics on 127.0.0.1:{port}: ")
    assert len(text.splitlines()) == 1
    bad = _Process("metrics", APP, "--port", "70000", url=durable_sqlite_url)
    code, text = bad.stop(terminate=False)
    assert code == 2
    assert "expected a TCP port from 1 to 65535, not '70000'" in text
    bad = _Process("metrics", APP, "--cache", "-1", url=durable_sqlite_url)
    code, text = bad.stop(terminate=False)
    assert code == 2
    assert "expected a number of seconds, 0 or more, not '-1'" in text
