"""The throwaway Redis server of durable_sa.testing.servers, checked over raw sockets.

Each test starts its own server (they restart, kill and stop it), so none share state.
No Redis client library is needed: a few lines of RESP below are enough.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import TYPE_CHECKING

import pytest

from durable_sa.testing.servers import REDIS_URL_ENV, RedisServer, RedisServerError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import IO


def _send(stream: IO[bytes], sock: socket.socket, *args: str) -> bytes | None:
    """Send one command; return a simple/bulk reply's bytes (``None`` for a nil bulk)."""
    request = f"*{len(args)}\r\n".encode()
    for arg in args:
        data = arg.encode()
        request += b"$%d\r\n%s\r\n" % (len(data), data)
    sock.sendall(request)
    line = stream.readline()
    assert line.endswith(b"\r\n"), line
    kind, payload = line[:1], line[1:-2]
    if kind == b"-":
        pytest.fail(f"server error: {payload.decode()}")
    if kind in {b"+", b":"}:
        return payload
    assert kind == b"$", line
    size = int(payload)
    if size < 0:
        return None
    return stream.read(size + 2)[:-2]


def command(server: RedisServer, *args: str) -> bytes | None:
    """Run one command on a new connection to *server*."""
    with (
        socket.create_connection((server.host, server.port), timeout=10) as sock,
        sock.makefile("rb") as stream,
    ):
        return _send(stream, sock, *args)


def _port_is_free(port: int) -> bool:
    """Whether nobody listens on *port* (closed connections in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def redis_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisServer]:
    """A server of our own, even if the environment names an external one."""
    monkeypatch.delenv(REDIS_URL_ENV, raising=False)
    with RedisServer() as server:
        yield server


def test_answers_ping_on_loopback(redis_server: RedisServer) -> None:
    assert redis_server.host == "127.0.0.1"
    assert redis_server.port != 6379
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert command(redis_server, "PING") == b"PONG"
    assert _process_exists(redis_server.pid)


def test_set_and_get(redis_server: RedisServer) -> None:
    key = f"k-{uuid.uuid4().hex}"
    assert command(redis_server, "GET", key) is None
    assert command(redis_server, "SET", key, "value 1") == b"OK"
    assert command(redis_server, "GET", key) == b"value 1"


def test_runs_with_aof_in_its_own_directory(redis_server: RedisServer) -> None:
    assert redis_server.data_dir is not None
    with (
        socket.create_connection((redis_server.host, redis_server.port), timeout=10) as sock,
        sock.makefile("rb") as stream,
    ):
        # CONFIG GET answers an array: read it by hand as key/value bulk strings.
        for name, expected in (
            ("appendonly", "yes"),
            ("appendfsync", "always"),
            ("save", ""),
            ("dir", str(redis_server.data_dir)),
        ):
            sock.sendall(
                b"*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(name), name.encode())
            )
            assert stream.readline() == b"*2\r\n"
            assert stream.readline().startswith(b"$")
            assert stream.readline() == f"{name}\r\n".encode()
            assert stream.readline().startswith(b"$")
            assert stream.readline() == f"{expected}\r\n".encode()


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_restart_keeps_acknowledged_writes(redis_server: RedisServer, kill: bool) -> None:
    port, old_pid = redis_server.port, redis_server.pid
    assert command(redis_server, "SET", "survivor", "still here") == b"OK"
    assert command(redis_server, "RPUSH", "queue", "a", "b") == b"2"

    redis_server.restart(kill=kill)

    assert redis_server.port == port
    assert redis_server.pid != old_pid
    assert not _process_exists(old_pid)
    assert command(redis_server, "GET", "survivor") == b"still here"
    assert command(redis_server, "LPOP", "queue") == b"a"
    # And again, with a write made by the restarted server.
    redis_server.restart(kill=kill)
    assert command(redis_server, "LPOP", "queue") == b"b"
    assert command(redis_server, "LPOP", "queue") is None


def test_stop_removes_directory_and_frees_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REDIS_URL_ENV, raising=False)
    server = RedisServer().start()
    data_dir, port, pid = server.data_dir, server.port, server.pid
    assert data_dir is not None
    assert data_dir.is_dir()
    assert command(server, "SET", "k", "v") == b"OK"

    server.stop()

    assert not data_dir.exists()
    assert not _process_exists(pid)
    assert _port_is_free(port)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    server.stop()  # idempotent
    with pytest.raises(RedisServerError, match="not running"):
        _ = server.pid


def test_external_server_is_used_not_managed(redis_server: RedisServer) -> None:
    external = RedisServer(external_url=redis_server.url)
    with external:
        assert external.is_external
        assert external.port == redis_server.port
        assert external.url == redis_server.url
        assert command(external, "PING") == b"PONG"
        with pytest.raises(RedisServerError, match="cannot be restarted"):
            external.restart()
    # Leaving the block did not stop the real server.
    assert command(redis_server, "PING") == b"PONG"


def test_flushall_empties_every_database(redis_server: RedisServer) -> None:
    assert command(redis_server, "SET", "k", "v") == b"OK"
    assert command(redis_server, "RPUSH", "queue", "a") == b"1"
    assert command(redis_server, "DBSIZE") == b"2"
    redis_server.flushall()
    assert command(redis_server, "GET", "k") is None
    assert command(redis_server, "DBSIZE") == b"0"


def test_flushall_of_a_stopped_server_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REDIS_URL_ENV, raising=False)
    server = RedisServer().start()
    port = server.port
    server.stop()
    gone = RedisServer(external_url=f"redis://127.0.0.1:{port}/0")
    with pytest.raises(RedisServerError, match="could not reach the Redis server"):
        gone.flushall()
