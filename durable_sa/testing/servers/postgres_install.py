"""Where PostgreSQL's binaries are, and the unprivileged user that runs the server.

``initdb`` refuses to run as root; as root, the throwaway server runs as
:data:`SERVER_OS_USER`, created on first use.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


class PostgresServerError(RuntimeError):
    """Starting, stopping or talking to the test server failed."""


class PostgresNotFoundError(PostgresServerError):
    """The PostgreSQL server binaries are not installed."""


SERVER_OS_USER = "durable-test"
"""Unprivileged OS user that runs the server when the tests run as root."""
DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")


@dataclass(frozen=True)
class PostgresBinaries:
    """Paths of the server programs this module runs."""

    initdb: Path
    pg_ctl: Path
    postgres: Path


def _version_key(bin_dir: Path) -> tuple[int, ...]:
    """Sort key for ``/usr/lib/postgresql/<version>/bin``: ``"15"`` -> ``(15,)``."""
    try:
        return tuple(int(part) for part in bin_dir.parent.name.split("."))
    except ValueError:
        return (-1,)


def find_postgres_binaries() -> PostgresBinaries:
    """Locate ``initdb``, ``pg_ctl`` and ``postgres``, preferring the newest Debian version.

    Raises:
        PostgresNotFoundError: if they are not installed.

    """
    names = ("initdb", "pg_ctl", "postgres")
    for bin_dir in sorted(DEBIAN_PG_ROOT.glob("*/bin"), key=_version_key, reverse=True):
        paths = [bin_dir / name for name in names]
        if all(path.is_file() and os.access(path, os.X_OK) for path in paths):
            return PostgresBinaries(*paths)
    found = [shutil.which(name) for name in names]
    if all(found):
        return PostgresBinaries(*(Path(path) for path in found if path))
    msg = (
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in "
        f"{DEBIAN_PG_ROOT}/<version>/bin or on PATH: install the PostgreSQL server "
        "(in this repository, `make test` or `scripts/ensure-postgres.sh` does)."
    )
    raise PostgresNotFoundError(msg)


def _ensure_os_user(name: str) -> pwd.struct_passwd:
    """Return the passwd entry of system user *name*, creating the user if missing."""
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    last_error = ""
    for _ in range(5):  # another process may be creating the same user right now
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
        result = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [
                useradd,
                "--system",
                "--no-create-home",
                "--user-group",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        last_error = result.stderr.strip()
        time.sleep(0.2)
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    msg = f"could not create OS user {name!r} to run PostgreSQL: {last_error}"
    raise PostgresServerError(msg)
