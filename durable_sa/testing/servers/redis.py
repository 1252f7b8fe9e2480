"""A throwaway ``redis-server`` on 127.0.0.1, a child process of the test.

It is spoken to in raw RESP, so no client library is needed (see
:mod:`durable_sa.testing.servers`).
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
from typing import IO, Self
from urllib.parse import urlsplit

from durable_sa.testing.servers.common import (
    _START_ATTEMPTS,
    HOST,
    _free_port,
    _log_tail,
    _Server,
    _started,
)

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
