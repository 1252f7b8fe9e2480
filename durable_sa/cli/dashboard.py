"""``durable-sa dashboard APP``: serve the web dashboard of APP with uvicorn.

Without ``--auth`` the dashboard has no identity to ask, so it is guarded as Jupyter
guards its notebooks: it binds a loopback address only (a non-loopback ``--host`` is
refused, with what to do instead) and every browser must first open the URL printed at
start, whose random ``?token=`` is then kept in a cookie. With ``--auth`` the callable
(``package.module:attribute``, ``request -> "none" | "read" | "write"``) decides, and any
host may be bound. The dashboard and uvicorn come from the ``dashboard`` extra, imported
only by this command.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from durable_sa.cli.commands import import_spec, load_app
from durable_sa.cli.errors import USAGE, CliError
from durable_sa.runtime.addresses import LOOPBACK

if TYPE_CHECKING:
    import argparse

    from durable_sa.cli.scrubbing import Invocation


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _load_auth(spec: str) -> Any:  # noqa: ANN401 - any callable the user names
    found = import_spec(spec, "--auth")
    if not callable(found):
        msg = f'--auth {spec!r} is not a callable request -> "none" | "read" | "write"'
        raise CliError(msg, USAGE)
    return found


def dashboard_command(args: argparse.Namespace, inv: Invocation) -> int:
    """Serve APP's dashboard until stopped (Ctrl-C or SIGTERM)."""
    try:
        import uvicorn  # noqa: PLC0415 - the dashboard extra, for this command only

        from durable_sa.dashboard import create_app  # noqa: PLC0415
        from durable_sa.dashboard.security import new_token  # noqa: PLC0415
    except ImportError as exc:
        msg = (
            f"the dashboard needs the dashboard extra ({exc}): pip install 'durable-sa[dashboard]'"
        )
        raise CliError(msg) from None
    auth = None if args.auth is None else _load_auth(args.auth)
    if auth is None and not is_loopback(args.host):
        msg = (
            f"refusing to serve the dashboard on {args.host} without --auth: anyone who can "
            "reach that address could act on your runs. Bind 127.0.0.1 (and reach it through "
            "an SSH tunnel), pass --auth package.module:callable, or mount create_app() in "
            "your application behind its own login"
        )
        raise CliError(msg, USAGE)
    engine = load_app(args.app)
    inv.remember(engine.sa_engine.url)
    token = None if auth is not None else new_token()
    app = create_app(engine, auth=auth, read_only=args.read_only, token=token)
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host}:{args.port}/" + (f"?token={token}" if token else "")
    mode = " (read-only)" if args.read_only else ""
    print(f"durable-sa dashboard{mode} of {args.app} on {inv.url}: open {url}", flush=True)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning")
    uvicorn.Server(config).run()
    print("durable-sa dashboard stopped", flush=True)
    return 0


def dashboard_arguments(dashboard: argparse.ArgumentParser) -> None:
    """``dashboard APP`` and its options."""
    dashboard.add_argument("app", metavar="APP", help="package.module:attribute, a Durable engine")
    dashboard.add_argument(
        "--host",
        default=LOOPBACK,
        help=f"address to bind (default {LOOPBACK}; only a loopback one without --auth)",
    )
    dashboard.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    dashboard.add_argument(
        "--auth",
        metavar="CALLABLE",
        help='package.module:attribute, request -> "none" | "read" | "write" (no token then)',
    )
    dashboard.add_argument(
        "--read-only", action="store_true", help="show everything, allow no action"
    )
    dashboard.set_defaults(run=dashboard_command)
