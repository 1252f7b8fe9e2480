"""A throwaway PostgreSQL cluster on 127.0.0.1.

``initdb`` into a temporary directory, ``pg_ctl`` on a free port, everything deleted on
stop (see :mod:`durable_sa.testing.servers`).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Self

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL, make_url

if TYPE_CHECKING:
    import pwd
    from collections.abc import Sequence

    from psycopg.rows import TupleRow

from durable_sa.testing.servers.common import (
    _START_ATTEMPTS,
    HOST,
    _free_port,
    _log_tail,
    _Server,
    _started,
)
from durable_sa.testing.servers.postgres_install import (
    SERVER_OS_USER,
    PostgresBinaries,
    PostgresServerError,
    _ensure_os_user,
    find_postgres_binaries,
)

POSTGRES_URL_ENV = "DURABLE_SA_TEST_POSTGRES_URL"
"""Environment variable naming an existing PostgreSQL server to use instead of starting one."""


SUPERUSER = "postgres"
"""Name of the database superuser created by ``initdb``."""


_SERVER_SETTINGS = {
    "listen_addresses": f"'{HOST}'",
    "max_connections": "300",
}

_NO_DURABILITY = {
    # Throwaway data: trade durability for speed (tests only; benchmarks keep defaults).
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}

_START_TIMEOUT_S = 60
_DROP_WITH_FORCE_SINCE = 130000  # PostgreSQL 13: DROP DATABASE ... WITH (FORCE)


class PostgresServer(_Server):
    """A PostgreSQL server that lives as long as this object is started.

    Usable as a context manager. :meth:`stop` is idempotent and is also registered with
    :mod:`atexit`, so an interrupted test session does not leave a server behind.
    """

    def __init__(self, *, external_url: str | None = None, durable: bool = False) -> None:
        """Prepare (but do not start) a server.

        Args:
            external_url: URL of an existing server to use instead of starting one.
                Defaults to the value of the ``DURABLE_SA_TEST_POSTGRES_URL`` variable.
            durable: keep PostgreSQL's default durability (fsync, synchronous commit), as
                benchmarks need; tests switch it off for speed.

        """
        self.durable = durable
        if external_url is None:
            external_url = os.environ.get(POSTGRES_URL_ENV) or None
        self._external: URL | None = make_url(external_url) if external_url else None
        self._base_dir: Path | None = None
        self._port: int | None = None
        self._binaries: PostgresBinaries | None = None
        self._os_user: pwd.struct_passwd | None = None
        self._started = False

    # ------------------------------------------------------------------ properties

    @property
    def is_external(self) -> bool:
        """Whether this wraps an existing server given by URL."""
        return self._external is not None

    @property
    def port(self) -> int:
        """TCP port the server listens on."""
        if self._external is not None:
            return self._external.port or 5432
        if self._port is None:
            msg = "server not started"
            raise PostgresServerError(msg)
        return self._port

    @property
    def data_dir(self) -> Path | None:
        """The cluster's data directory (``None`` for an external server)."""
        return self._base_dir / "data" if self._base_dir is not None else None

    @property
    def log_file(self) -> Path | None:
        """The server log (``None`` for an external server)."""
        return self._base_dir / "postgres.log" if self._base_dir is not None else None

    # ------------------------------------------------------------------ URLs

    def url(self, dbname: str) -> str:
        """SQLAlchemy URL of database *dbname* on this server.

        For the throwaway server: ``postgresql+psycopg://postgres@127.0.0.1:<port>/<dbname>``.
        """
        return self._sa_url(dbname).render_as_string(hide_password=False)

    def _sa_url(self, dbname: str) -> URL:
        if self._external is not None:
            return self._external.set(drivername="postgresql+psycopg", database=dbname)
        return URL.create(
            "postgresql+psycopg", username=SUPERUSER, host=HOST, port=self.port, database=dbname
        )

    def _conninfo(self, dbname: str) -> str:
        """Libpq connection URI (as psycopg takes it) of database *dbname*."""
        return (
            self._sa_url(dbname).set(drivername="postgresql").render_as_string(hide_password=False)
        )

    # ------------------------------------------------------------------ databases

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[TupleRow]:
        """Open an autocommit psycopg connection to *dbname* (the caller closes it)."""
        return psycopg.connect(self._conninfo(dbname), autocommit=True, connect_timeout=10)

    def create_database(self, name: str, *, template: str | None = None) -> None:
        """Create database *name*: empty (from ``template1``), or a copy of *template*.

        Copying a database prepared once (tables, indexes, triggers) is much cheaper than
        creating its schema again in every test. Nobody may be connected to *template*
        while it is copied (PostgreSQL refuses), so dispose of its engines first.
        """
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with self.connect() as conn:
            conn.execute(statement)

    def drop_database(self, name: str) -> None:
        """Drop database *name* if it exists, ending any sessions still connected to it."""
        with self.connect() as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            force = sql.SQL(
                " WITH (FORCE)" if conn.info.server_version >= _DROP_WITH_FORCE_SINCE else ""
            )
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {}{}").format(sql.Identifier(name), force)
            )

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        """Create a fresh cluster and start the server; return ``self``.

        Raises:
            PostgresNotFoundError: if the server binaries are not installed.
            PostgresServerError: if ``initdb`` or the server start fails.

        """
        if self._started:
            msg = "server already started"
            raise PostgresServerError(msg)
        self._started = True
        if self._external is not None:
            return self
        atexit.register(self.stop)
        try:
            self._binaries = find_postgres_binaries()
            self._create_cluster()
            self._start_server()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its directory. Safe to call twice."""
        atexit.unregister(self.stop)
        self._started = False
        base_dir = self._base_dir
        if base_dir is None:
            return
        data_dir = base_dir / "data"
        try:
            if self._binaries is not None and (data_dir / "postmaster.pid").exists():
                with contextlib.suppress(Exception):  # the fallback below handles failures
                    self._run(
                        [
                            str(self._binaries.pg_ctl),
                            "stop",
                            "-D",
                            str(data_dir),
                            "-m",
                            "fast",
                            "-w",
                            "-t",
                            "30",
                        ],
                        timeout=45,
                    )
            # No-op after a clean shutdown (which removes postmaster.pid); otherwise
            # signal the postmaster so it never outlives its deleted data directory.
            _kill_postmaster(data_dir)
        finally:
            shutil.rmtree(base_dir, ignore_errors=True)
            self._base_dir = None
            self._port = None

    def restart(self, *, down_for: float = 0.0) -> None:
        """Stop the server (fast: clients are disconnected) and start it on the same port.

        ``down_for`` keeps it stopped that many seconds, so clients see refused
        connections, as in a real outage.
        """
        if self._external is not None or self._binaries is None or self._base_dir is None:
            msg = "only a server this process started can be restarted"
            raise PostgresServerError(msg)
        data_dir = self._base_dir / "data"
        pg_ctl = str(self._binaries.pg_ctl)
        self._run([pg_ctl, "stop", "-D", str(data_dir), "-m", "fast", "-w"], timeout=60)
        time.sleep(down_for)
        self._pg_ctl_start(self.port)

    # ------------------------------------------------------------------ internals

    def _run(self, argv: Sequence[str], *, timeout: float) -> str:
        """Run a PostgreSQL program, as :data:`SERVER_OS_USER` when we are root."""
        base_dir = _started(self._base_dir, PostgresServerError)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env |= {"HOME": str(base_dir), "LC_ALL": "C", "LANG": "C"}
        user = self._os_user
        try:
            result = subprocess.run(  # noqa: S603 - argv built here from absolute paths
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                cwd=base_dir,
                env=env,
                timeout=timeout,
                check=False,
                user=user.pw_uid if user else None,
                group=user.pw_gid if user else None,
                extra_groups=[] if user else None,
            )
        except OSError as exc:
            msg = f"could not run {argv[0]}: {exc}"
            raise PostgresServerError(msg) from exc
        if result.returncode != 0:
            msg = (
                f"{' '.join(argv)} failed with exit code {result.returncode}:\n"
                f"{result.stdout}{result.stderr}{_log_tail(self.log_file)}"
            )
            raise PostgresServerError(msg)
        return result.stdout

    def _create_cluster(self) -> None:
        binaries = _started(self._binaries, PostgresServerError)
        if os.geteuid() == 0:
            # initdb refuses root; the /tmp directory must be reachable by the server user.
            self._os_user = _ensure_os_user(SERVER_OS_USER)
            self._base_dir = Path(tempfile.mkdtemp(prefix="durable-sa-pg-", dir="/tmp"))
            os.chown(self._base_dir, self._os_user.pw_uid, self._os_user.pw_gid)
        else:
            self._base_dir = Path(tempfile.mkdtemp(prefix="durable-sa-pg-"))
        data_dir = self._base_dir / "data"
        self._run(
            [
                str(binaries.initdb),
                "-D",
                str(data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
            timeout=180,
        )
        settings = {
            **_SERVER_SETTINGS,
            **({} if self.durable else _NO_DURABILITY),
            "unix_socket_directories": f"'{self._base_dir}'",
        }
        with (data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n# Added by durable_sa.testing.servers\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _start_server(self) -> None:
        data_dir = _started(self._base_dir, PostgresServerError) / "data"
        for attempt in range(1, _START_ATTEMPTS + 1):
            port = _free_port()
            try:
                self._pg_ctl_start(port)
            except PostgresServerError:
                if attempt == _START_ATTEMPTS:
                    raise
                _kill_postmaster(data_dir)  # in case it half-started
                continue
            self._port = port
            return

    def _pg_ctl_start(self, port: int) -> None:
        binaries = _started(self._binaries, PostgresServerError)
        data_dir = _started(self._base_dir, PostgresServerError) / "data"
        self._run(
            [
                str(binaries.pg_ctl),
                "start",
                "-D",
                str(data_dir),
                "-l",
                str(self.log_file),
                "-o",
                f"-p {port}",
                "-w",
                "-t",
                str(_START_TIMEOUT_S),
            ],
            timeout=_START_TIMEOUT_S + 30,
        )


def _kill_postmaster(data_dir: Path) -> None:
    """Last resort: end the postmaster of *data_dir* by the PID in its ``postmaster.pid``."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return
    if str(data_dir).encode() not in cmdline:  # stale pid file: that PID is not our server
        return
    for sig, wait_s in ((signal.SIGQUIT, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
