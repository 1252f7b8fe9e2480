"""A loopback TCP proxy that can go silent: half-open connections on demand.

Bound to 127.0.0.1 on a free port, it forwards every connection to a target port. A
frozen connection stops carrying bytes both ways but stays open: its client sees a
server that took its statement and never answers, as behind a dead NAT entry or a cut
cable, and no error ever reaches it. :meth:`FreezingProxy.freeze` freezes every
connection; :meth:`FreezingProxy.freeze_on` freezes only the one that sends a given
byte string (one statement's connection), while the others go on working.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from typing import Self

_CHUNK = 65536


class FreezingProxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``target`` until frozen."""

    def __init__(self, target: int) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._frozen = threading.Event()
        self._marker: bytes | None = None
        self._closing = threading.Event()
        self._sockets: list[socket.socket] = [self._listener]
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def freeze(self) -> None:
        """Stop forwarding in both directions; keep every connection open."""
        self._frozen.set()

    def freeze_on(self, marker: bytes) -> None:
        """Freeze, from then on, each connection whose client sends ``marker``."""
        self._marker = marker

    def close(self) -> None:
        self._closing.set()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._frozen.is_set():  # a new connection hangs as well
                with self._lock:
                    self._sockets.append(client)
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(
                target=self._pump, args=(client, upstream), name="proxy-pump", daemon=True
            ).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        with selectors.DefaultSelector() as selector:
            for sock in peers:
                selector.register(sock, selectors.EVENT_READ)
            while not self._closing.is_set():
                if self._frozen.is_set():
                    self._closing.wait()  # silent until the test ends; sockets stay open
                    return
                for key, _ in selector.select(timeout=0.1):
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        data = source.recv(_CHUNK)
                    except OSError:
                        data = b""
                    if not data:
                        for sock in peers:
                            with contextlib.suppress(OSError):
                                sock.close()
                        return
                    if self._frozen.is_set():
                        continue  # swallowed: it never arrives
                    marker = self._marker
                    if source is client and marker is not None and marker in data:
                        self._closing.wait()  # this connection is silent from now on
                        return
                    with contextlib.suppress(OSError):
                        peers[source].sendall(data)
