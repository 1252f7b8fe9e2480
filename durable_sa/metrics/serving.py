"""Serving ``/metrics``: an ASGI app for a web application, HTTP servers for the CLI.

Rules:
- :func:`metrics_app` answers every GET (or HEAD) with the registry's exposition in the
  format the scraper asks for (Prometheus text or OpenMetrics). The database read runs
  in a thread, never on the event loop of the application that mounts it.
- The standalone servers are prometheus_client's own threaded HTTP server: no web
  framework is needed. They bind loopback (``127.0.0.1``) unless told another host.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.exposition import choose_encoder

from durable_sa.metrics.collector import DEFAULT_CACHE_SECONDS, DatabaseListener, DurableCollector
from durable_sa.metrics.steps import observe_steps, register_step_metrics
from durable_sa.runtime.addresses import LOOPBACK

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping
    from wsgiref.simple_server import WSGIServer

    from durable_sa.facade import Durable

    Scope = MutableMapping[str, Any]
    Message = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[Message]]
    Send = Callable[[Message], Awaitable[None]]


def metrics_registry(
    engine: Durable,
    *,
    cache_seconds: float = DEFAULT_CACHE_SECONDS,
    on_database_change: DatabaseListener | None = None,
) -> CollectorRegistry:
    """A registry of ``engine``'s SQL metrics and this process's step metrics.

    ``on_database_change``: see :class:`DurableCollector` (told when reads start failing
    and when they work again).
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        DurableCollector(engine, cache_seconds=cache_seconds, on_database_change=on_database_change)
    )
    register_step_metrics(registry)
    return registry


class MetricsApp:
    """The ASGI application :func:`metrics_app` returns; ``registry`` is what it serves.

    An object rather than a function, so routers that call plain functions as request
    handlers (Starlette's ``Route``) mount it as an ASGI application.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        """Serve ``registry``."""
        self.registry = registry

    def __repr__(self) -> str:
        return f"<MetricsApp {self.registry!r}>"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one ASGI connection: an HTTP scrape, or a server's lifespan."""
        if scope["type"] == "lifespan":  # served alone: nothing to start or stop
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":  # pragma: no cover - websockets are not served
            return
        if scope["method"] not in {"GET", "HEAD"}:
            await _respond(send, 405, b"text/plain; charset=utf-8", b"GET /metrics\n")
            return
        accept = ",".join(
            value.decode("latin-1") for name, value in scope["headers"] if name == b"accept"
        )
        encoder, content_type = choose_encoder(accept)
        body = await asyncio.to_thread(encoder, self.registry)
        head = scope["method"] == "HEAD"
        await _respond(send, 200, content_type.encode(), b"" if head else body)


def metrics_app(engine: Durable, *, cache_seconds: float = DEFAULT_CACHE_SECONDS) -> MetricsApp:
    """An ASGI application serving ``engine``'s metrics; mount it at ``/metrics``.

    The SQL metrics are read at most once per ``cache_seconds``; the step histogram is
    this process's (it has samples when the process runs steps and called
    ``observe_steps()``). In Starlette: ``Route("/metrics", metrics_app(engine))``; in
    FastAPI: ``app.add_route("/metrics", metrics_app(engine))`` (``app.mount`` works too,
    but answers ``/metrics`` with a redirect to ``/metrics/``).
    """
    return MetricsApp(metrics_registry(engine, cache_seconds=cache_seconds))


async def _respond(send: Send, status: int, content_type: bytes, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


def serve_metrics(
    engine: Durable,
    *,
    port: int,
    host: str = LOOPBACK,
    cache_seconds: float = DEFAULT_CACHE_SECONDS,
    on_database_change: DatabaseListener | None = None,
) -> WSGIServer:
    """Serve ``engine``'s metrics on ``http://host:port/metrics`` from a daemon thread.

    Returns the server: ``shutdown()`` stops it. ``durable-sa metrics APP`` calls this,
    with an ``on_database_change`` that prints one line when the database goes down or
    comes back.

    Raises:
        OSError: the port cannot be bound (in use, or a privileged port).

    """
    registry = metrics_registry(
        engine, cache_seconds=cache_seconds, on_database_change=on_database_change
    )
    server, _ = start_http_server(port, addr=host, registry=registry)
    return server


def serve_worker_metrics(*, port: int, host: str = LOOPBACK) -> WSGIServer:
    """Measure this process's steps and serve them on ``http://host:port/metrics``.

    What ``durable-sa worker --metrics-port N`` does: prometheus_client's default
    registry (the step metrics, and the process's CPU, memory and garbage collector).
    The SQL metrics are served once for all workers, by ``durable-sa metrics``.

    Raises:
        OSError: the port cannot be bound.

    """
    observe_steps(REGISTRY)
    server, _ = start_http_server(port, addr=host, registry=REGISTRY)
    return server
