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


def _until(served: _Process, port: int, text: str, timeout: float = 30) -> None:
    """Scrape until ``text`` is printed (each scrape reads: ``--cache 0``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not any(text in line for line in served.lines):
        _scrape(port)
        time.sleep(0.1)


def test_a_database_going_down_and_back_is_one_line_each(engine, durable_each_database_url, app):
    port = _free_port()
    served = _Process(
        "metrics", APP, "--port", str(port), "--cache", "0", url=durable_each_database_url
    )
    try:
        served.wait_for("durable-sa metrics: http")
        assert value(parse(_scrape(port)), "durable_sa_database_up") == 1
        engine.admin.drop_tables()
        _until(served, port, "database down")
        for _ in range(3):
            assert value(parse(_scrape(port)), "durable_sa_database_up") == 0
        engine.create_tables()
        _until(served, port, "database back up")
        assert value(parse(_scrape(port)), "durable_sa_database_up") == 1
    finally:
        code, text = served.stop()
    assert code == 0, text
    down = [line for line in served.lines if "database down" in line]
    assert len(down) == 1, text  # once, not at every scrape
    assert down[0].startswith("durable-sa metrics: database down, durable_sa_database_up is 0: ")
    assert "has no durable-sa tables" in down[0]
    assert "create them with Durable(...).create_tables() or your migrations" in down[0]
    assert len([line for line in served.lines if "database back up" in line]) == 1
    assert "SELECT" not in text
    assert "Traceback" not in text


@pytest.mark.parametrize("before", [True, False], ids=["before-command", "after-command"])
def test_metrics_takes_database_url_like_every_command(
    engine, durable_each_database_url, app, tmp_path, before
):
    engine.start("cli-three", {"n": 1})
    port = _free_port()
    flag = ["--database-url", durable_each_database_url]
    argv = [*flag, "metrics"] if before else ["metrics", *flag]
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"  # what the environment names
    served = _Process(*argv, "--port", str(port), "--cache", "0", url=elsewhere)
    try:
        served.wait_for("durable-sa metrics: http")
        samples = parse(_scrape(port))
        assert value(samples, "durable_sa_runs", workflow="cli-three", status="running") == 1
    finally:
        code, text = served.stop()
    assert code == 0, text
    assert not (tmp_path / "elsewhere.db").exists()


@pytest.mark.parametrize("how", ["app", "flag"])
def test_a_missing_sqlite_file_is_said_and_not_created(tmp_path, app, how):
    missing = tmp_path / "orders.db"
    url = f"sqlite:///{missing}"
    argv = ["metrics", APP] if how == "app" else ["metrics", "--database-url", url]
    code, text = _Process(*argv, "--port", str(_free_port()), url=url).stop(terminate=False)
    assert code == 1
    assert text == f"durable-sa: no SQLite database file at {missing}"
    assert not missing.exists()


def test_a_worker_whose_metrics_port_is_taken_prints_no_start_line(
    sqlite_engine, durable_sqlite_url, app
):
    Durable(sqlite_engine).create_tables()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = _Process("worker", APP, "--metrics-port", str(port), url=durable_sqlite_url)
        code, text = worker.stop(terminate=False)
    assert code == 1
    assert text == f"durable-sa: cannot serve metrics on 127.0.0.1:{port}: Address already in use"
