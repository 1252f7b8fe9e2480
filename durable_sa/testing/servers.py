"""Throwaway servers for tests: a PostgreSQL cluster and a Redis server, 127.0.0.1 only.

:class:`PostgresServer` runs ``initdb`` into a fresh temporary directory, starts the
server with ``pg_ctl`` on a free port of 127.0.0.1, and on :meth:`PostgresServer.stop`
shuts it down and deletes the directory. :class:`RedisServer` does the same with
``redis-server``, run as a child process of the test. Nothing survives a run: no system
cluster, service, configuration or default port is used or changed.

The pytest plugin (:mod:`durable_sa.testing.pytest_plugin`) starts them on first use
through its ``durable_postgres_*`` and ``durable_redis_*`` fixtures; use the classes
directly outside pytest (benchmarks, scripts).

PostgreSQL:

* Binaries come from the newest ``/usr/lib/postgresql/<version>/bin`` (Debian's layout),
  else from ``PATH``. A missing server is an error (:class:`PostgresNotFoundError`),
  never a skipped test.
* ``initdb`` refuses to run as root. As root, the server runs as the unprivileged system
  user :data:`SERVER_OS_USER` (created on first use) and owns the temporary directory.
* The database superuser is ``postgres``; authentication is ``trust`` for local and
  loopback connections, the server listens on 127.0.0.1 only, and its Unix socket lives
  inside the temporary directory. Durability is switched off for speed (``fsync``,
  ``synchronous_commit``, ``full_page_writes``) unless ``durable=True``: data are
  thrown away anyway.
* If the environment variable :data:`POSTGRES_URL_ENV` holds a URL of an existing server
  (database ``postgres``, e.g. ``postgresql://user:pw@127.0.0.1:5432/postgres``), that
  server is used instead and :meth:`PostgresServer.start`/``stop`` do nothing to it.

Redis:

* The binary is ``redis-server`` from ``PATH``, else ``/usr/bin/redis-server`` (Debian's
  package); a missing one is an error (:class:`RedisNotFoundError`).
* Redis runs as root without complaint, so no OS user is switched to.
* The server listens on 127.0.0.1 only (so ``protected-mode`` may stay on) and keeps its
  data in the append-only file with ``appendfsync always`` and no RDB snapshots: every
  write acknowledged to a client is on disk, so :meth:`RedisServer.restart`, even with
  ``kill=True`` (SIGKILL, as in a crash), loses none.
* Readiness is checked with a raw-socket RESP ``PING`` (so this module needs no Redis
  client library), plus ``INFO server`` to make sure the server that answers is ours and
  not someone else's that took the port first.
* If the environment variable :data:`REDIS_URL_ENV` holds a URL of an existing server
  (e.g. ``redis://127.0.0.1:6379/0``), that server is used instead:
  :meth:`RedisServer.start` and ``stop`` do nothing to it and ``restart`` is refused.

Typical use::

    with PostgresServer() as server:
        server.create_database("t_1")
        engine = sqlalchemy.create_engine(server.url("t_1"))
        ...
        server.drop_database("t_1")

    with RedisServer() as broker:
        ...
        broker.restart(kill=True)  # a broker crash; acknowledged writes survive
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Self, TypeVar
from urllib.parse import urlsplit

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL, make_url

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from types import FrameType, TracebackType

    from psycopg.rows import TupleRow

__all__ = [
    "POSTGRES_URL_ENV",
    "REDIS_URL_ENV",
    "SERVER_OS_USER",
    "PostgresBinaries",
    "PostgresNotFoundError",
    "PostgresServer",
    "PostgresServerError",
    "RedisNotFoundError",
    "RedisServer",
    "RedisServerError",
    "find_postgres_binaries",
    "find_redis_server",
    "sigterm_as_keyboard_interrupt",
]

HOST = "127.0.0.1"
"""The only address the servers listen on."""

_T = TypeVar("_T")
_START_ATTEMPTS = 3  # a free port can be taken by someone else before the server binds it


def _free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _started(value: _T | None, error: type[Exception]) -> _T:
    """``value``, set once the server has started; else ``error`` ("server not started")."""
    if value is None:
        msg = "server not started"
        raise error(msg)
    return value


def _log_tail(log_file: Path | None, lines: int = 30) -> str:
    """The last lines of a server's log, to explain a failure (``""`` when there is none)."""
    if log_file is None or not log_file.exists():
        return ""
    tail = log_file.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- last lines of {log_file} ---\n" + "\n".join(tail)


class _Server:
    """Used as a context manager, a server is started on entry and stopped on exit."""

    def start(self) -> Self:
        """Start the server; return ``self``."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        """Start the server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()


# ------------------------------------------------------------------------- PostgreSQL

POSTGRES_URL_ENV = "DURABLE_SA_TEST_POSTGRES_URL"
"""Environment variable naming an existing PostgreSQL server to use instead of starting one."""

SERVER_OS_USER = "durable-test"
"""Unprivileged OS user that runs the server when the tests run as root."""

SUPERUSER = "postgres"
"""Name of the database superuser created by ``initdb``."""

DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")

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


class PostgresServerError(RuntimeError):
    """Starting, stopping or talking to the test server failed."""


class PostgresNotFoundError(PostgresServerError):
    """The PostgreSQL server binaries are not installed."""


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

    def create_database(self, name: str) -> None:
        """Create an empty database *name* (from ``template1``)."""
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

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


@contextlib.contextmanager
def sigterm_as_keyboard_interrupt() -> Iterator[None]:
    """Within the block, turn SIGTERM into :class:`KeyboardInterrupt`.

    By default SIGTERM ends Python without running ``finally`` blocks, fixture
    teardowns or :mod:`atexit` handlers, which would leave the server running. As a
    KeyboardInterrupt, pytest stops the session and tears everything down, as on Ctrl-C.
    Only a default SIGTERM handler in the main thread is replaced.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


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


# ------------------------------------------------------------------------------ Redis

REDIS_URL_ENV = "DURABLE_SA_TEST_REDIS_URL"
"""Environment variable naming an existing Redis server to use instead of starting one."""

DEFAULT_REDIS_PORT = 6379
"""Port of an external Redis server whose URL names none."""

DEBIAN_REDIS_SERVER = Path("/usr/bin/redis-server")

_REDIS_START_TIMEOUT_S = 30.0
_REDIS_STOP_TIMEOUT_S = 30.0
_PROBE_TIMEOUT_S = 2.0


class RedisServerError(RuntimeError):
    """Starting, stopping or talking to the test server failed."""


class RedisNotFoundError(RedisServerError):
    """The ``redis-server`` binary is not installed."""


def find_redis_server() -> Path:
    """Locate ``redis-server`` on ``PATH``, else at Debian's ``/usr/bin/redis-server``.

    Raises:
        RedisNotFoundError: if it is not installed.

    """
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    if DEBIAN_REDIS_SERVER.is_file() and os.access(DEBIAN_REDIS_SERVER, os.X_OK):
        return DEBIAN_REDIS_SERVER
    msg = (
        f"redis-server not found on PATH or at {DEBIAN_REDIS_SERVER}: install Redis (in "
        "this repository, `make test` or `scripts/ensure-redis.sh` does)."
    )
    raise RedisNotFoundError(msg)


def _resp_command(*args: str) -> bytes:
    """Encode a command as a RESP array of bulk strings."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _read_reply(stream: IO[bytes]) -> bytes:
    """Read one simple-string, error, integer or bulk-string reply; return its payload.

    Errors come back with their leading ``-`` so that callers can tell them apart.
    """
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        msg = f"connection closed mid-reply: {line!r}"
        raise RedisServerError(msg)
    kind, payload = line[:1], line[1:-2]
    if kind in {b"+", b":"}:
        return payload
    if kind == b"-":
        return line[:-2]
    if kind == b"$":
        size = int(payload)
        if size < 0:
            return b""
        data = stream.read(size + 2)
        return data[:-2]
    msg = f"unexpected reply type: {line!r}"
    raise RedisServerError(msg)


def _server_pid(port: int) -> int | None:
    """PID of the ready server on *port* (it answers ``PING``), or ``None`` if none is."""
    try:
        with (
            socket.create_connection((HOST, port), timeout=_PROBE_TIMEOUT_S) as sock,
            sock.makefile("rb") as stream,
        ):
            sock.sendall(_resp_command("PING") + _resp_command("INFO", "server"))
            if _read_reply(stream) != b"PONG":  # e.g. "-LOADING": still reading its AOF
                return None
            info = _read_reply(stream).decode(errors="replace")
    except (OSError, RedisServerError, ValueError):
        return None
    for line in info.splitlines():
        key, _, value = line.partition(":")
        if key == "process_id":
            return int(value.strip())
    return None


class RedisServer(_Server):
    """A Redis server that lives as long as this object is started.

    Usable as a context manager. :meth:`stop` is idempotent and is also registered with
    :mod:`atexit`, so an interrupted test session does not leave a server behind.
    """

    def __init__(self, *, external_url: str | None = None) -> None:
        """Prepare (but do not start) a server.

        Args:
            external_url: URL of an existing server to use instead of starting one.
                Defaults to the value of the ``DURABLE_SA_TEST_REDIS_URL`` variable.

        """
        if external_url is None:
            external_url = os.environ.get(REDIS_URL_ENV) or None
        self._external_url = external_url
        self._base_dir: Path | None = None
        self._port: int | None = None
        self._binary: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._started = False

    # ------------------------------------------------------------------ properties

    @property
    def is_external(self) -> bool:
        """Whether this wraps an existing server given by URL."""
        return self._external_url is not None

    @property
    def host(self) -> str:
        """Host the server listens on."""
        if self._external_url is not None:
            return urlsplit(self._external_url).hostname or HOST
        return HOST

    @property
    def port(self) -> int:
        """TCP port the server listens on."""
        if self._external_url is not None:
            return urlsplit(self._external_url).port or DEFAULT_REDIS_PORT
        if self._port is None:
            msg = "server not started"
            raise RedisServerError(msg)
        return self._port

    @property
    def url(self) -> str:
        """URL of database 0: ``redis://127.0.0.1:<port>/0`` (or the external URL)."""
        if self._external_url is not None:
            return self._external_url
        return f"redis://{HOST}:{self.port}/0"

    @property
    def pid(self) -> int:
        """PID of the running server process (it changes on :meth:`restart`)."""
        if self._external_url is not None:
            msg = "the PID of an external server is not known"
            raise RedisServerError(msg)
        if self._process is None:
            msg = "server not running"
            raise RedisServerError(msg)
        return self._process.pid

    @property
    def data_dir(self) -> Path | None:
        """The server's directory, with its config, AOF and log (``None`` if external)."""
        return self._base_dir

    @property
    def log_file(self) -> Path | None:
        """The server's output (``None`` for an external server)."""
        return self._base_dir / "redis.log" if self._base_dir is not None else None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        """Start a fresh server in a new temporary directory; return ``self``.

        Raises:
            RedisNotFoundError: if ``redis-server`` is not installed.
            RedisServerError: if the server does not start and answer in time.

        """
        if self._started:
            msg = "server already started"
            raise RedisServerError(msg)
        self._started = True
        if self._external_url is not None:
            return self
        atexit.register(self.stop)
        try:
            self._binary = find_redis_server()
            self._base_dir = Path(tempfile.mkdtemp(prefix="durable-sa-redis-"))
            self._start_on_free_port()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM) and delete its directory. Safe to call twice."""
        atexit.unregister(self.stop)
        self._started = False
        base_dir = self._base_dir
        try:
            self._end_process(signal.SIGTERM)
        finally:
            if base_dir is not None:
                shutil.rmtree(base_dir, ignore_errors=True)
            self._base_dir = None
            self._port = None

    def restart(self, *, kill: bool = False) -> None:
        """Stop the server and start it again on the same port, with the same data.

        SIGTERM (the default) is a clean shutdown that syncs the append-only file;
        ``kill=True`` sends SIGKILL, as in a crash. Either way the new server reloads the
        AOF, which holds every acknowledged write, and this returns once it answers.

        Raises:
            RedisServerError: for an external or a not started server, or if the server
                does not come back (e.g. someone else took the port meanwhile).

        """
        if self._external_url is not None:
            msg = f"an external server ({REDIS_URL_ENV}) cannot be restarted by the tests"
            raise RedisServerError(msg)
        if self._base_dir is None or self._port is None:
            msg = "only a started server can be restarted"
            raise RedisServerError(msg)
        self._end_process(signal.SIGKILL if kill else signal.SIGTERM)
        self._launch(self._port)

    def flushall(self) -> None:
        """Empty every database of the server (``FLUSHALL``), as a fresh one would be.

        Raises:
            RedisServerError: the server cannot be reached or refused the command.

        """
        try:
            with (
                socket.create_connection((self.host, self.port), timeout=10) as sock,
                sock.makefile("rb") as stream,
            ):
                sock.sendall(_resp_command("FLUSHALL"))
                reply = _read_reply(stream)
        except OSError as exc:
            msg = f"could not reach the Redis server at {self.host}:{self.port}: {exc}"
            raise RedisServerError(msg) from exc
        if reply != b"OK":
            msg = f"FLUSHALL failed: {reply.decode(errors='replace')}"
            raise RedisServerError(msg)

    # ------------------------------------------------------------------ internals

    def _start_on_free_port(self) -> None:
        for attempt in range(1, _START_ATTEMPTS + 1):
            port = _free_port()
            try:
                self._launch(port)
            except RedisServerError:
                if attempt == _START_ATTEMPTS:
                    raise
                continue
            return

    def _write_config(self, port: int) -> Path:
        """Write ``redis.conf`` for *port* into the server's directory; return its path."""
        base_dir = _started(self._base_dir, RedisServerError)
        quoted_dir = str(base_dir).replace("\\", "\\\\").replace('"', '\\"')
        settings = {
            "port": str(port),
            "bind": HOST,
            "protected-mode": "yes",  # loopback only, so no password is needed
            "daemonize": "no",  # a child of ours: we know its PID and it dies with stop()
            "supervised": "no",
            "dir": f'"{quoted_dir}"',
            "logfile": '""',  # stdout, which goes to redis.log
            "save": '""',  # no RDB snapshots: the AOF is the only persistence
            "appendonly": "yes",
            "appendfsync": "always",  # acknowledged writes survive even SIGKILL
        }
        config = base_dir / "redis.conf"
        config.write_text(
            "# Written by durable_sa.testing.servers\n"
            + "".join(f"{key} {value}\n" for key, value in settings.items()),
            encoding="utf-8",
        )
        return config

    def _launch(self, port: int) -> None:
        """Start ``redis-server`` on *port* and wait until it answers; else end it and raise."""
        binary = _started(self._binary, RedisServerError)
        base_dir = _started(self._base_dir, RedisServerError)
        config = self._write_config(port)
        with (base_dir / "redis.log").open("ab") as log:
            try:
                self._process = subprocess.Popen(  # noqa: S603 - argv built here, no shell
                    [str(binary), str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=base_dir,
                    # Own session: a Ctrl-C meant for pytest does not kill the server
                    # before the fixtures' teardown stops it.
                    start_new_session=True,
                )
            except OSError as exc:
                msg = f"could not run {binary}: {exc}"
                raise RedisServerError(msg) from exc
        process = self._process
        deadline = time.monotonic() + _REDIS_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self._process = None
                msg = (
                    f"redis-server exited with code {process.returncode} while starting on "
                    f"port {port}{_log_tail(self.log_file)}"
                )
                raise RedisServerError(msg)
            if _server_pid(port) == process.pid:
                self._port = port
                return
            time.sleep(0.05)
        self._end_process(signal.SIGKILL)
        msg = f"redis-server did not answer on port {port} in {_REDIS_START_TIMEOUT_S:.0f}s"
        raise RedisServerError(msg + _log_tail(self.log_file))

    def _end_process(self, sig: signal.Signals) -> None:
        """Send *sig* to our server process and wait for it; SIGKILL it if it lingers."""
        process = self._process
        if process is None:
            return
        self._process = None
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            process.wait(timeout=_REDIS_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=_REDIS_STOP_TIMEOUT_S)
