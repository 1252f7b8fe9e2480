"""``/metrics`` served: the ASGI app (alone and in a Starlette app) answers scrapers."""

from __future__ import annotations

import asyncio

from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from durable_sa import durable
from durable_sa.metrics import metrics_app
from tests.integration.metrics.scraping import parse, value


def _call(app, method: str = "GET", accept: str = "") -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": "/metrics",
        "headers": [(b"accept", accept.encode())] if accept else [],
    }
    asyncio.run(app(scope, receive, send))
    start, body = sent
    return start["status"], dict(start["headers"]), body["body"]


def test_the_asgi_app_serves_the_exposition(engine):
    durable("m-served").step("a", lambda ctx: 1)
    engine.start("m-served", {})
    app = metrics_app(engine, cache_seconds=0)
    status, headers, body = _call(app)
    assert status == 200
    assert headers[b"content-type"].startswith(b"text/plain; version=0.0.4")
    samples = parse(body.decode())
    assert value(samples, "durable_sa_runs", workflow="m-served", status="running") == 1
    assert value(samples, "durable_sa_jobs_due", queue="default") == 1


def test_openmetrics_head_and_refused_methods(engine):
    app = metrics_app(engine, cache_seconds=0)
    status, headers, body = _call(app, accept="application/openmetrics-text; version=1.0.0")
    assert status == 200
    assert headers[b"content-type"].decode().startswith(OPENMETRICS.split(";")[0])
    assert body.endswith(b"# EOF\n")
    status, headers, body = _call(app, method="HEAD")
    assert (status, body) == (200, b"")
    status, _, _ = _call(app, method="POST")
    assert status == 405


def test_mounted_in_a_starlette_application(engine):
    durable("m-mounted").step("a", lambda ctx: 1)
    engine.start("m-mounted", {})
    web = Starlette(routes=[Route("/metrics", metrics_app(engine, cache_seconds=0))])
    with TestClient(web) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    samples = parse(response.text)
    assert value(samples, "durable_sa_runs", workflow="m-mounted", status="running") == 1
