"""The one door every dashboard endpoint goes through: token, permission, CSRF, rendering.

A page or an action is a :data:`View`, ``(Dashboard, Request, Seen) -> Response``, run
in a worker thread (the engine's calls are synchronous). ``create_app`` binds each to
the app's :class:`Dashboard` and wraps it with :meth:`Dashboard.guarded`, which first
checks the start-up token, then the request's permission (and for an action the CSRF
field), and sets the CSRF cookie on the way out; ``/metrics`` goes through the same door.
Every cookie the dashboard sets (token, CSRF, flash) is set by :func:`_set_cookie`.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeAlias
from urllib.parse import urlencode

import attrs
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from durable_sa.dashboard.flash import FLASH_COOKIE, FLASH_SECONDS, Flash, decode, encode
from durable_sa.dashboard.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    Permission,
    csrf_ok,
    csrf_value,
    permission_of,
    token_cookie,
    token_matches,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from starlette.requests import Request

    from durable_sa.dashboard.security import AuthCallable
    from durable_sa.facade import Durable

_TEMPLATES: Final = Path(__file__).with_name("templates")
_SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@attrs.frozen
class Seen:
    """What the guard found out about a request, for the endpoint and its template."""

    permission: Permission
    csrf: str

    @property
    def can_write(self) -> bool:
        """Whether to show action buttons (and to accept actions)."""
        return self.permission.can_write


def _duration(value: timedelta | float | None) -> str:
    if value is None:
        return ""
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:  # noqa: PLR2004 - two minutes
        return f"{seconds:.1f} s"
    if seconds < 7200:  # noqa: PLR2004 - two hours
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def typed_json(value: object) -> str:
    """``value`` as JSON the way it was typed: ``Zoë`` and ``東京`` as themselves.

    Not Jinja's ``tojson`` (which writes ``\u00eb`` and ``\u0026``, for a ``<script>``);
    the text is escaped for HTML like any other (``&`` and ``<`` as entities).
    """
    return json.dumps(value, ensure_ascii=False, indent=None, default=str)


def _json_markup(value: object) -> Markup:
    return escape(typed_json(value))


def _when(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


View: TypeAlias = "Callable[[Dashboard, Request, Seen], Response]"
"""A page or an action: the app's state, the request, what the guard found; a response."""


class Dashboard:
    """The app's shared state: the engine, who may do what, and the templates."""

    def __init__(
        self, engine: Durable, *, auth: AuthCallable | None, read_only: bool, token: str | None
    ) -> None:
        self.engine = engine
        self.auth = auth
        self.read_only = read_only
        self.token = token
        self.templates = Environment(
            loader=FileSystemLoader(_TEMPLATES),
            autoescape=select_autoescape(default=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["duration"] = _duration
        self.templates.filters["when"] = _when
        self.templates.filters["typed_json"] = _json_markup
        self.flash_key = secrets.token_bytes(32)
        """Signs flash cookies (per app: a restart drops unread messages, nothing else)."""

    # ── rendering ──────────────────────────────────────────────────────────────

    def render(
        self,
        request: Request,
        seen: Seen,
        template: str,
        values: Mapping[str, object],
        *,
        status_code: int = 200,
    ) -> HTMLResponse:
        """``template`` with ``values``, the permission and the URL helpers."""
        root = _root(request)
        whole = request.query_params.get("fragment") != "1"
        flash = decode(request.cookies.get(FLASH_COOKIE), self.flash_key) if whole else None
        page = self.templates.get_template(template).render(
            request=request,
            seen=seen,
            csrf_field=CSRF_FIELD,
            read_only=self.read_only,
            root=root,
            now=self.engine.now,
            flash=flash,
            kept_form=flash.form if flash is not None else {},
            **values,
        )
        response = HTMLResponse(page, status_code=status_code)
        if whole and FLASH_COOKIE in request.cookies:
            _set_cookie(response, request, FLASH_COOKIE, "", max_age=0)  # shown once: gone
        return response

    def back(
        self,
        request: Request,
        path: str,
        *,
        done: str | None = None,
        error: str | None = None,
        keep: Mapping[str, str] | None = None,
    ) -> RedirectResponse:
        """A 303 to ``path`` of the dashboard (after a POST), its message in a flash cookie.

        ``keep``: form values to fill in again (after a refusal of what was typed).
        """
        response = RedirectResponse(f"{_root(request)}{path}", status_code=303)
        if done is not None or error is not None:
            flash = Flash(
                kind="error" if error is not None else "done",
                text=error if error is not None else done or "",
                form=dict(keep or {}),
            )
            flashed = encode(flash, self.flash_key)
            _set_cookie(response, request, FLASH_COOKIE, flashed, max_age=FLASH_SECONDS)
        return response

    # ── the door ───────────────────────────────────────────────────────────────

    async def _admit(self, request: Request, need: Permission) -> Response | Seen:
        """The refusal to send, or what the request may do."""
        if self.token is not None:
            given = request.query_params.get("token")
            if given is not None and token_matches(given, self.token):
                kept = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
                target = request.url.path + (f"?{urlencode(kept)}" if kept else "")
                response: Response = RedirectResponse(target, status_code=303)
                _set_cookie(response, request, token_cookie(self.token), self.token)
                return response
            kept_token = request.cookies.get(token_cookie(self.token)) or _bearer(request)
            if not token_matches(kept_token, self.token):
                return PlainTextResponse(
                    "durable-sa dashboard: open the URL with ?token=... that "
                    "`durable-sa dashboard` printed when it started",
                    status_code=401,
                )
        permission = await permission_of(request, self.auth, read_only=self.read_only)
        if not permission.can_read:
            return PlainTextResponse("durable-sa dashboard: you may not see this", 403)
        if need is Permission.WRITE and not permission.can_write:
            why = "the dashboard is read-only" if self.read_only else "you may only read"
            return PlainTextResponse(f"durable-sa dashboard: {why}; no action taken", 403)
        return Seen(permission, csrf_value(request))

    def guarded(
        self, endpoint: Callable[[Request, Seen], Response], need: Permission = Permission.READ
    ) -> Callable[[Request], Awaitable[Response]]:
        """``endpoint`` behind the door; it runs in a worker thread."""

        async def guarded_endpoint(request: Request) -> Response:
            admitted = await self._admit(request, need)
            if not isinstance(admitted, Seen):
                return _secured(admitted)
            if need is Permission.WRITE:
                form = await request.form()
                if not csrf_ok(request, form.get(CSRF_FIELD)):
                    return _secured(
                        PlainTextResponse(
                            "durable-sa dashboard: this form is stale or came from another "
                            "site (CSRF check failed); reload the page and try again",
                            status_code=403,
                        )
                    )
                request.state.form = form
            response = await run_in_threadpool(endpoint, request, admitted)
            if request.cookies.get(CSRF_COOKIE) != admitted.csrf:  # new: the browser keeps it
                _set_cookie(response, request, CSRF_COOKIE, admitted.csrf)
            return _secured(response)

        return guarded_endpoint


def _root(request: Request) -> str:
    """Where the dashboard is mounted (``""`` when served alone)."""
    root: str = request.scope.get("root_path", "")
    return root


def _set_cookie(
    response: Response, request: Request, name: str, value: str, *, max_age: int | None = None
) -> None:
    """Set (``max_age=0``: delete) one of the dashboard's cookies: HttpOnly, SameSite=Strict.

    No script reads them (the CSRF value reaches forms in the page, not from the
    cookie), no other site's request carries them, and their path is the dashboard's
    own (where it is mounted), not the host application's.
    """
    response.set_cookie(
        name, value, max_age=max_age, httponly=True, samesite="strict", path=_root(request) or "/"
    )


def _bearer(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header, if any.

    How a scraper, which keeps no cookie, shows the token (``/metrics``).
    """
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def _secured(response: Response) -> Response:
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response
