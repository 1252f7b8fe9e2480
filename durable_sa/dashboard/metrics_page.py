"""``/metrics`` on the dashboard: the Prometheus exposition behind the dashboard's door.

The same registry as :func:`durable_sa.metrics.metrics_app` (SQL gauges cached a few
seconds, this process's step histogram), read with the ``read`` permission like any
page. A scraper cannot keep the token's cookie, so with ``durable-sa dashboard`` it sends
the token as ``Authorization: Bearer <token>`` (see :mod:`~durable_sa.dashboard.guard`).
Without the ``metrics`` extra the route answers 404 with what to install.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import PlainTextResponse, Response

if TYPE_CHECKING:
    from starlette.requests import Request

    from durable_sa.dashboard.guard import Dashboard, Seen, View
    from durable_sa.facade import Durable

NOT_INSTALLED = (
    "durable-sa dashboard: /metrics needs the metrics extra: pip install 'durable-sa[metrics]'\n"
)


def metrics_view(engine: Durable) -> View:
    """The page that serves ``engine``'s metrics (or says what to install)."""
    try:
        from prometheus_client.exposition import choose_encoder  # noqa: PLC0415 - optional

        from durable_sa.metrics import metrics_registry  # noqa: PLC0415 - optional extra
    except ImportError:

        def missing(_dash: Dashboard, _request: Request, _seen: Seen) -> Response:
            return PlainTextResponse(NOT_INSTALLED, status_code=404)

        return missing
    registry = metrics_registry(engine)

    def scrape(_dash: Dashboard, request: Request, _seen: Seen) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(registry), media_type=content_type)

    return scrape
