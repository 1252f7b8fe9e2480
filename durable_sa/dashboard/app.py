"""``create_app``: the dashboard as an ASGI application (Starlette), mounted or served alone."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Final

from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from durable_sa.dashboard import actions, pages
from durable_sa.dashboard.guard import Dashboard
from durable_sa.dashboard.metrics_page import metrics_view
from durable_sa.dashboard.security import Permission
from durable_sa.errors import InvalidArgumentError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request
    from starlette.responses import Response

    from durable_sa.dashboard.guard import View
    from durable_sa.dashboard.security import AuthCallable
    from durable_sa.facade import Durable

_STATIC: Final = Path(__file__).with_name("static")


async def _favicon(_request: Request) -> Response:
    return FileResponse(_STATIC / "favicon.svg", media_type="image/svg+xml")


def create_app(
    engine: Durable,
    *,
    auth: AuthCallable | None = None,
    read_only: bool = False,
    token: str | None = None,
) -> Starlette:
    """The dashboard of ``engine``, an ASGI application to mount or to serve.

    ``auth(request)`` answers what the request may do, from the host application's own
    identity: ``"none"`` (403), ``"read"`` (pages only) or ``"write"`` (pages and
    actions); it may be a coroutine function. Without ``auth`` every request may
    write: mount the app behind the application's login. ``read_only=True`` refuses every
    action (403) and hides their buttons, whatever ``auth`` says. ``token`` (what
    ``durable-sa dashboard`` passes) requires that token first: ``?token=...`` once,
    kept in a cookie.

    Raises:
        InvalidArgumentError: ``engine`` is not a ``Durable``, ``auth`` not callable, or
            ``token`` an empty string.

    """
    from durable_sa.facade import Durable  # noqa: PLC0415 - for the check only

    if not isinstance(engine, Durable):
        msg = f"create_app takes a durable_sa.Durable, not {type(engine).__name__}"
        raise InvalidArgumentError(msg)
    if auth is not None and not callable(auth):
        msg = f'auth is a callable request -> "none" | "read" | "write", not {auth!r}'
        raise InvalidArgumentError(msg)
    if token is not None and (not isinstance(token, str) or not token):
        msg = "token must be a non-empty string (or None for no token)"
        raise InvalidArgumentError(msg)
    dash = Dashboard(engine=engine, auth=auth, read_only=read_only, token=token)

    def page(view: View) -> Callable[[Request], Awaitable[Response]]:
        return dash.guarded(partial(view, dash), Permission.READ)

    def act(action: View) -> Callable[[Request], Awaitable[Response]]:
        return dash.guarded(partial(action, dash), Permission.WRITE)

    routes = [
        Route("/", page(pages.runs_page), name="runs"),
        Route("/runs/{run_id:int}", page(pages.run_page), name="run"),
        Route("/workflows", page(pages.workflows_page), name="workflows"),
        Route("/workers", page(pages.workers_page), name="workers"),
        Route("/dead-letters", page(pages.dead_letters_page), name="dead_letters"),
        Route("/limits", page(pages.limits_page), name="limits"),
        Route("/schedules", page(pages.schedules_page), name="schedules"),
        # Actions: POST only, write permission and the CSRF field (see guard.py).
        Route("/runs/{run_id:int}/signal", act(actions.signal_action), methods=["POST"]),
        Route("/runs/{run_id:int}/cancel", act(actions.cancel_action), methods=["POST"]),
        Route("/recover", act(actions.recover_action), methods=["POST"]),
        Route(
            "/dead-letters/{letter_id:int}/requeue",
            act(actions.requeue_action),
            methods=["POST"],
        ),
        Route("/workflows/{workflow:path}/pause", act(actions.pause_action), methods=["POST"]),
        # Prometheus scrapes it like a page (read permission; the token as a bearer).
        Route("/metrics", page(metrics_view(engine)), name="metrics"),
        Mount("/static", app=StaticFiles(directory=_STATIC), name="static"),
        # Browsers ask for it even on a refusal (a plain-text 401): no 404 in their console.
        Route("/favicon.ico", _favicon),
    ]
    app = Starlette(routes=routes)
    app.state.dashboard = dash
    return app
