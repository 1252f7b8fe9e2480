"""Who may do what on the dashboard: permissions, the start-up token and CSRF.

- **Permission.** ``auth(request)`` (the host application's own identity) answers
  ``"none"``, ``"read"`` or ``"write"``; ``read_only=True`` caps every answer at
  ``"read"``. Without ``auth`` everyone who reaches the app may write: mount it behind
  the application's own login, or give it a ``token``.
- **Token** (what ``durable-sa dashboard`` uses, as Jupyter does). ``?token=...`` on any
  page sets an HttpOnly cookie and redirects to the same page without it; a request
  without the right cookie is refused (401).
- **CSRF.** Every action is a POST carrying a form field equal to a random cookie
  (double submit); a POST from another origin (its ``Origin`` header) is refused too.
  A page on another site can neither read the cookie nor set the field, so it cannot
  make the operator's browser act.
"""

from __future__ import annotations

import enum
import hashlib
import inspect
import secrets
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from durable_sa.errors import InvalidArgumentError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request

    AuthCallable = Callable[[Request], "str | Permission | Awaitable[str | Permission]"]

CSRF_COOKIE: Final = "durable_sa_csrf"
CSRF_FIELD: Final = "csrf_token"
_CSRF_BYTES: Final = 32
"""A new CSRF value's random bytes; a kept cookie shorter than this many characters is replaced."""


class Permission(enum.StrEnum):
    """What a request may do: nothing, look, or act."""

    NONE = "none"
    READ = "read"
    WRITE = "write"

    @property
    def can_read(self) -> bool:
        """Whether pages may be shown."""
        return self is not Permission.NONE

    @property
    def can_write(self) -> bool:
        """Whether actions may be taken."""
        return self is Permission.WRITE


_VALUES: Final = frozenset(p.value for p in Permission)


def as_permission(answer: object) -> Permission:
    """The permission ``auth`` answered.

    Raises:
        InvalidArgumentError: the answer is none of ``"none"``, ``"read"``, ``"write"``.

    """
    if isinstance(answer, str) and answer in _VALUES:
        return Permission(answer)
    msg = f'the dashboard\'s auth callable must return "none", "read" or "write", not {answer!r}'
    raise InvalidArgumentError(msg)


async def permission_of(
    request: Request, auth: AuthCallable | None, *, read_only: bool
) -> Permission:
    """What ``request`` may do: ``auth``'s answer (awaited if it is a coroutine), capped."""
    if auth is None:
        found = Permission.WRITE
    else:
        answer = auth(request)
        if inspect.isawaitable(answer):
            answer = await answer
        found = as_permission(answer)
    if read_only and found is Permission.WRITE:
        return Permission.READ
    return found


def new_token() -> str:
    """A random token for the URL the CLI prints."""
    return secrets.token_urlsafe(24)


def token_cookie(token: str) -> str:
    """The cookie that keeps ``token``: named after it, since cookies ignore the port.

    Two dashboards served on one host (ports 8080 and 8081) thus never overwrite each
    other's cookie; the name shows a hash of the token, never the token.
    """
    return f"durable_sa_token_{hashlib.sha256(token.encode()).hexdigest()[:12]}"


def token_matches(given: str | None, expected: str) -> bool:
    """Whether ``given`` is the token (compared in constant time)."""
    return given is not None and secrets.compare_digest(given.encode(), expected.encode())


def csrf_value(request: Request) -> str:
    """The request's CSRF value: its cookie's, or a new one when it has none fit for it.

    A new value differs from the request's cookie; the guard sets the cookie then.
    """
    current = request.cookies.get(CSRF_COOKIE)
    if current and len(current) >= _CSRF_BYTES:
        return current
    return secrets.token_urlsafe(_CSRF_BYTES)


def same_origin(request: Request) -> bool:
    """Whether a POST comes from this site: its ``Origin`` (when sent) is this host.

    Behind a proxy that rewrites ``Host``, the host the browser saw is in
    ``X-Forwarded-Host``; either matches.
    """
    origin = request.headers.get("origin")
    if origin is None:
        return True
    hosts = {request.headers.get("host"), request.headers.get("x-forwarded-host")}
    return origin != "null" and urlsplit(origin).netloc in hosts - {None}


def csrf_ok(request: Request, submitted: object) -> bool:
    """Whether a POST's CSRF field matches its cookie, from this site."""
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not isinstance(submitted, str) or not same_origin(request):
        return False
    return secrets.compare_digest(cookie.encode(), submitted.encode())
