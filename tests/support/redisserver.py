"""A throwaway Redis server for tests.

:class:`RedisServer` starts ``redis-server`` as a child process of the test process (not
daemonized) in a fresh temporary directory, on a free port of 127.0.0.1, and on
:meth:`RedisServer.stop` ends it and deletes the directory. Nothing survives a run: the
system service, its configuration and port 6379 are never used or changed.

Details:

* The binary is ``redis-server`` from ``PATH``, else ``/usr/bin/redis-server`` (Debian's
  package). Install it with ``make test`` (or ``scripts/ensure-redis.sh``); a missing
  server is an error, never a skipped test.
* Unlike PostgreSQL, Redis runs as root without complaint, so no OS user is switched to.
* The server listens on 127.0.0.1 only (so ``protected-mode`` may stay on) and keeps its
  data in the append-only file with ``appendfsync always`` and no RDB snapshots: every
  write acknowledged to a client is on disk, so :meth:`RedisServer.restart`, even with
  ``kill=True`` (SIGKILL, as in a crash), loses none. Broker-restart tests rely on that.
* Readiness is checked with a raw-socket RESP ``PING`` (so this module needs no Redis
  client library), plus ``INFO server`` to make sure the server that answers is ours and
  not someone else's that took the port first.
* If the environment variable :data:`EXTERNAL_URL_ENV` holds a URL of an existing server
  (e.g. ``redis://127.0.0.1:6379/0``), that server is used instead:
  :meth:`RedisServer.start` and ``stop`` do nothing to it and ``restart`` is refused.

Typical use::

    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        ...
        server.restart(kill=True)  # a broker crash; acknowledged writes survive
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Self
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from types import TracebackType

__all__ = [
    "EXTERNAL_URL_ENV",
    "RedisNotFoundError",
    "RedisServer",
    "RedisServerError",
    "find_redis_server",
]

EXTERNAL_URL_ENV = "DURABLE_SA_TEST_REDIS_URL"
"""Environment variable naming an existing server to use instead of starting one."""

HOST = "127.0.0.1"

DEFAULT_PORT = 6379
"""Port of an external server whose URL names none."""

DEBIAN_REDIS_SERVER = Path("/usr/bin/redis-server")

_START_ATTEMPTS = 3  # a free port can be taken by someone else before the server binds it
_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 30.0
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
        f"redis-server not found on PATH or at {DEBIAN_REDIS_SERVER}. Run the tests with "
        "`make test`, which installs it, or run `scripts/ensure-redis.sh` first."
    )
    raise RedisNotFoundError(msg)


def _free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


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


class RedisServer:
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
            external_url = os.environ.get(EXTERNAL_URL_ENV) or None
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
            return urlsplit(self._external_url).port or DEFAULT_PORT
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
            msg = f"an external server ({EXTERNAL_URL_ENV}) cannot be restarted by the tests"
            raise RedisServerError(msg)
        if self._base_dir is None or self._port is None:
            msg = "only a started server can be restarted"
            raise RedisServerError(msg)
        self._end_process(signal.SIGKILL if kill else signal.SIGTERM)
        self._launch(self._port)

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
        assert self._base_dir is not None
        quoted_dir = str(self._base_dir).replace("\\", "\\\\").replace('"', '\\"')
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
        config = self._base_dir / "redis.conf"
        config.write_text(
            "# Written by tests/support/redisserver.py\n"
            + "".join(f"{key} {value}\n" for key, value in settings.items()),
            encoding="utf-8",
        )
        return config

    def _launch(self, port: int) -> None:
        """Start ``redis-server`` on *port* and wait until it answers; else end it and raise."""
        assert self._binary is not None
        assert self._base_dir is not None
        config = self._write_config(port)
        with (self._base_dir / "redis.log").open("ab") as log:
            try:
                self._process = subprocess.Popen(  # noqa: S603 - argv built here, no shell
                    [str(self._binary), str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self._base_dir,
                    # Own session: a Ctrl-C meant for pytest does not kill the server
                    # before the fixtures' teardown stops it.
                    start_new_session=True,
                )
            except OSError as exc:
                msg = f"could not run {self._binary}: {exc}"
                raise RedisServerError(msg) from exc
        process = self._process
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self._process = None
                msg = (
                    f"redis-server exited with code {process.returncode} while starting on "
                    f"port {port}{self._log_tail()}"
                )
                raise RedisServerError(msg)
            if _server_pid(port) == process.pid:
                self._port = port
                return
            time.sleep(0.05)
        self._end_process(signal.SIGKILL)
        msg = f"redis-server did not answer on port {port} in {_START_TIMEOUT_S:.0f}s"
        raise RedisServerError(msg + self._log_tail())

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
            process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=_STOP_TIMEOUT_S)

    def _log_tail(self, lines: int = 30) -> str:
        log_file = self.log_file
        if log_file is None or not log_file.exists():
            return ""
        tail = log_file.read_text(errors="replace").splitlines()[-lines:]
        return f"\n--- last lines of {log_file} ---\n" + "\n".join(tail)
