"""The command as operators run it: real processes, a real worker, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from durable_sa import Durable

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret"  # noqa: S105 - a fake password that must never be printed
APP = "tests.support.cli_app:engine"


def _command(*argv: str) -> list[str]:
    return [sys.executable, "-m", "durable_sa.cli", *argv]


def _cli(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        _command(*argv), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _with_password(url: str) -> str:
    """PostgreSQL URLs get a password (the test server trusts loopback, so it is ignored)."""
    if not url.startswith("postgresql"):
        return url
    return sa.make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)


class _Output:
    """Collects a process's output lines in a thread, so its pipe never fills up."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert proc.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(proc.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            time.sleep(0.05)
        pytest.fail(f"no line with {text!r} within {timeout} s:\n" + "\n".join(self.lines))

    def text(self) -> str:
        self._thread.join(timeout=10)
        return "\n".join(self.lines)


def _poll(check, *, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        done, last = check()
        if done:
            return last
        time.sleep(0.2)
    pytest.fail(f"gave up after {timeout} s; last output:\n{last}")


def test_a_worker_process_runs_workflows_while_the_cli_watches(
    engine, durable_each_database_url, app
):
    url = _with_password(durable_each_database_url)
    env = {**os.environ, "DURABLE_SA_DATABASE_URL": url}
    worker = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        _command(
            "worker", APP, "--concurrency", "2", "--poll-interval", "0.2", "--heartbeat", "0.5"
        ),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = _Output(worker)
    try:
        started = output.wait_for("durable-sa worker ")
        runs = [engine.start("cli-three", {"n": n, "pause": 0.1}).run_id for n in range(3)]
        gated = engine.start("cli-signal").run_id

        def listed() -> tuple[bool, str]:
            out = _cli("list", env=env).stdout
            rows = {line.split()[0]: line for line in out.splitlines()[1:]}
            done = all("completed  3/3" in rows.get(str(r), "") for r in runs)
            return done and "suspended" in rows.get(str(gated), ""), out

        listed_out = _poll(listed)
        assert "awaiting signal 'approve'" in listed_out

        workers = _cli("workers", env=env).stdout
        assert "cli-three@fp-" in workers.splitlines()[1]

        resumed = _cli("resume", str(gated), "approve", "--data", '{"by": "ops"}', env=env)
        assert resumed.returncode == 0, resumed.stderr
        assert f"run {gated} accepted signal 'approve'" in resumed.stdout

        def status() -> tuple[bool, str]:
            out = _cli("status", str(gated), env=env).stdout
            return "status:          completed" in out, out

        final = _poll(status)
        assert '{"approved_by": "ops"}' in final
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=30)
    text = output.text()
    assert code == 0, text
    assert "concurrency 2, queues all, workflows cli-signal@fp-" in started
    assert f"database {sa.make_url(url).render_as_string(hide_password=True)}" in started
    for run_id in runs:
        assert f"run {run_id} cli-three step 'report' attempt 1: advance" in text
    assert f"run {gated} cli-signal step 'ship' attempt 1: advance" in text
    assert "SIGTERM received" in text
    assert "stopped: " in text
    assert "Traceback" not in text
    assert PASSWORD not in text


def test_mistakes_are_one_line_without_traceback_or_password(durable_sqlite_url, tmp_path):
    engine = Durable(sa.create_engine(durable_sqlite_url))
    engine.create_tables()
    engine.sa_engine.dispose()
    unreachable = f"postgresql+psycopg://user:{PASSWORD}@127.0.0.1:1/db"
    no_tables = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    cases = {
        "unreachable": (["status", "1", "--database-url", unreachable], 1, durable_sqlite_url),
        "bad url": (["list", "--database-url", f"nosuchdb://u:{PASSWORD}@h/db"], 2, ""),
        "unknown run": (["status", "999999"], 1, durable_sqlite_url),
        "malformed data": (["resume", "1", "go", "--data", "{not json"], 2, durable_sqlite_url),
        "bad app": (["worker", "no_such_package.workflows:engine"], 2, durable_sqlite_url),
        "not an engine": (["worker", "tests.support.cli_app:not_an_engine"], 2, no_tables),
        "worker, no tables": (["worker", APP], 1, no_tables),
        "worker, unreachable": (["worker", APP, "--startup-timeout", "1"], 1, unreachable),
    }
    procs = {
        name: subprocess.Popen(  # noqa: S603 - our own interpreter and module
            _command(*argv),
            cwd=ROOT,
            env={**os.environ, "DURABLE_SA_DATABASE_URL": url},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (argv, _, url) in cases.items()
    }
    errors = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        assert PASSWORD not in out + err, (name, err)
        if name == "worker, unreachable":  # it tried before giving up, and logged each try
            *tries, err = err.splitlines(keepends=True)
            assert tries, (name, err)
            assert all("WARNING" in line and "cannot reach the database" in line for line in tries)
        assert proc.returncode == cases[name][1], (name, err)
        assert err.startswith("durable-sa: "), (name, err)
        assert err.count("\n") == 1, (name, err)
        assert "Traceback" not in err, (name, err)
        assert PASSWORD not in out + err, (name, err)
        errors[name] = err
    assert "could not reach the database at " in errors["unreachable"]
    assert "user:***@127.0.0.1:1/db" in errors["unreachable"]
    assert "No durable run with id 999999 exists." in errors["unknown run"]
    assert "--data is not valid JSON" in errors["malformed data"]
    assert "has no durable-sa tables" in errors["worker, no tables"]
    assert "is not a durable_sa.Durable" in errors["not an engine"]
    assert "cannot import APP module 'no_such_package" in errors["bad app"]
    assert "user:***@127.0.0.1:1/db" in errors["worker, unreachable"]
    assert "within 1 s" in errors["worker, unreachable"]
