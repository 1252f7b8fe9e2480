"""A web dashboard for durable-sa, mounted in the application or served by the CLI.

``create_app(engine, auth=..., read_only=...)`` returns an ASGI application (Starlette,
Jinja2 templates and a vendored htmx; no JavaScript build): runs, a run's journal, its
compensations and children, workflows, workers, dead letters, limits and schedules, and
the operator's actions behind a permission. It needs the ``dashboard`` extra
(``pip install 'durable-sa[dashboard]'``); the engine itself never imports it.

The package: :mod:`~durable_sa.dashboard.app` (``create_app``, the routes),
:mod:`~durable_sa.dashboard.guard` (the token, permission and CSRF door, rendering),
:mod:`~durable_sa.dashboard.security` (permissions, tokens, CSRF checks),
:mod:`~durable_sa.dashboard.queries` (bounded read models),
:mod:`~durable_sa.dashboard.pages` and :mod:`~durable_sa.dashboard.actions`.
"""

from __future__ import annotations

try:
    import jinja2  # noqa: F401
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - the extra is installed in the suite
    msg = (
        f"durable_sa.dashboard needs the dashboard extra ({exc.name} is missing): "
        "pip install 'durable-sa[dashboard]'"
    )
    raise ImportError(msg) from exc

from durable_sa.dashboard.app import create_app
from durable_sa.dashboard.security import Permission

__all__ = ["Permission", "create_app"]
