"""``durable-sa dashboard APP``: loopback and a printed token, or --auth; one-line errors."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import sqlalchemy as sa

from durable_sa import Durable
from durable_sa.cli.dashboard import is_loopback

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_loopback_hosts() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("localhost")
    assert is_loopback("::1")
    assert not is_loopback("0.0.0.0")  # noqa: S104 - the address being refused
    assert not is_loopback("192.168.1.10")
    assert not is_loopback("example.com")


def test_a_public_host_without_auth_is_refused(
    cli: Callable[..., tuple[int, str, str]],
) -> None:
    code, out, err = cli("dashboard", "tests.support.cli_app:engine", "--host", "0.0.0.0")  # noqa: S104
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert "refusing to serve the dashboard on 0.0.0.0 without --auth" in err
    assert "127.0.0.1" in err


def test_a_bad_auth_or_app_is_one_line(cli: Callable[..., tuple[int, str, str]]) -> None:
    code, _, err = cli("dashboard", "tests.support.cli_app:engine", "--auth", "nocolon")
    assert code == 2
    assert "--auth must look like package.module:attribute" in err
    code, _, err = cli("dashboard", "tests.support.cli_app:engine", "--auth", "json:nothing")
    assert code == 2
    assert "has no attribute 'nothing'" in err
    code, _, err = cli("dashboard", "tests.support.cli_app:not_an_engine")
    assert code == 2
    assert "is not a durable_sa.Durable" in err


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``durable-sa dashboard`` in a child process on a SQLite file; its first line."""
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    sa_engine = sa.create_engine(url)
    engine = Durable(sa_engine)
    engine.create_tables()
    sa_engine.dispose()
    port = free_port()
    env = {**os.environ, "DURABLE_SA_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(  # noqa: S603 - our own command line
        [
            sys.executable,
            "-m",
            "durable_sa.cli",
            "dashboard",
            "tests.support.cli_app:engine",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        yield proc, line
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _get(url: str, **options: object) -> httpx.Response:
    deadline = time.monotonic() + 20
    while True:
        try:
            return httpx.get(url, timeout=5, **options)  # type: ignore[arg-type]
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_the_command_serves_on_loopback_behind_the_printed_token(
    served: tuple[subprocess.Popen[str], str],
) -> None:
    proc, line = served
    found = re.search(r"open (http://127\.0\.0\.1:(\d+)/\?token=([\w-]+))$", line.strip())
    assert found is not None, line
    base = f"http://127.0.0.1:{found[2]}/"
    assert _get(base).status_code == 401
    assert _get(base + "?token=not-it").status_code == 401
    with httpx.Client(timeout=5) as client:
        opened = client.get(found[1], follow_redirects=True)
        assert opened.status_code == 200
        assert "<h1>Runs</h1>" in opened.text
        assert client.get(base + "workflows").status_code == 200
    proc.terminate()
    assert proc.wait(timeout=20) in (0, -15)
