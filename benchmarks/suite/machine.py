"""What the figures were measured on: the machine, PostgreSQL's settings, the software.

:func:`machine_facts` is recorded in the JSON (``machine``) and summed up in one line
under every table and over every plot
(:func:`benchmarks.report.tables.machine_summary`). Every fact is best effort: one that
cannot be read says so, and never stops the run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.report.samples import one_line
from benchmarks.suite.paths import ROOT

if TYPE_CHECKING:
    from benchmarks.suite.plan import Sizes
    from durable_sa.testing.servers import PostgresServer


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
