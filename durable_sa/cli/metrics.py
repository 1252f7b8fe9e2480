"""``durable-sa metrics`` and ``worker --metrics-port``: their options and servers.

The metrics extra is optional: without prometheus-client these options end in one line
that says what to install. The servers bind loopback unless ``--host`` says otherwise,
and a port that cannot be bound is one line too, never a traceback. Printing stays in
:mod:`~durable_sa.cli.commands`.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
from typing import TYPE_CHECKING, Any, Final

from durable_sa.cli.errors import CliError
from durable_sa.errors import MetricsNotInstalledError
from durable_sa.runtime.addresses import LOOPBACK

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import ModuleType
    from wsgiref.simple_server import WSGIServer

    from durable_sa.facade import Durable

_MAX_PORT: Final = 65535


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= _MAX_PORT:
        msg = f"expected a TCP port from 1 to {_MAX_PORT}, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _cache_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        msg = f"expected a number of seconds, 0 or more, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def metrics_port_arguments(worker: argparse.ArgumentParser) -> None:
    """``worker --metrics-port N [--metrics-host H]``: serve the worker's step metrics."""
    worker.add_argument(
        "--metrics-port",
        type=_port,
        metavar="PORT",
        help="serve this worker's step metrics for Prometheus (needs durable-sa[metrics])",
    )
    worker.add_argument("--metrics-host", default=LOOPBACK, metavar="HOST", help=f"({LOOPBACK})")


def metrics_arguments(metrics: argparse.ArgumentParser, *, run: Callable[..., Any]) -> None:
    """``metrics [APP] [--database-url URL] --port N [--host H] [--cache S]``, done by ``run``."""
    metrics.add_argument(
        "app",
        metavar="APP",
        nargs="?",
        help=(
            "package.module:attribute, a Durable engine whose database to read; "
            "--database-url (or $DURABLE_SA_DATABASE_URL without APP) names one instead"
        ),
    )
    metrics.add_argument("--port", type=_port, default=9100, metavar="PORT", help="(9100)")
    metrics.add_argument("--host", default=LOOPBACK, metavar="HOST", help=f"({LOOPBACK})")
    metrics.add_argument(
        "--cache",
        type=_cache_seconds,
        default=5.0,
        metavar="S",
        help="read the database at most once per S seconds, however many scrape (5)",
    )
    metrics.set_defaults(run=run)


def _metrics() -> ModuleType:
    """``durable_sa.metrics``, or a one-line error naming the extra to install."""
    try:
        import durable_sa.metrics  # noqa: PLC0415 - an optional extra, loaded when asked for
    except (ImportError, MetricsNotInstalledError) as exc:
        raise CliError(str(MetricsNotInstalledError())) from exc
    return durable_sa.metrics


def _bound(host: str, port: int, exc: OSError) -> CliError:
    return CliError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}")


def serve_database_metrics(
    engine: Durable,
    *,
    host: str,
    port: int,
    cache_seconds: float,
    on_database_change: Callable[[Exception | None], None] | None = None,
) -> WSGIServer:
    """Check the database can be read, cheaply (one line if not), then serve its metrics.

    ``on_database_change`` is told when later reads fail, and when they work again.

    Raises:
        CliError: the extra is missing or the port cannot be bound.
        sqlalchemy.exc.DBAPIError: the database cannot be read (told by ``main``).

    """
    metrics = _metrics()
    metrics.DurableCollector(engine).check()
    try:
        server: WSGIServer = metrics.serve_metrics(
            engine,
            port=port,
            host=host,
            cache_seconds=cache_seconds,
            on_database_change=on_database_change,
        )
    except OSError as exc:
        raise _bound(host, port, exc) from None
    return server


def serve_worker_metrics(*, host: str, port: int) -> WSGIServer:
    """Measure this worker's steps and serve them.

    Raises:
        CliError: the extra is missing or the port cannot be bound.

    """
    metrics = _metrics()
    try:
        server: WSGIServer = metrics.serve_worker_metrics(port=port, host=host)
    except OSError as exc:
        raise _bound(host, port, exc) from None
    return server


@contextlib.contextmanager
def until_stopped(server: WSGIServer) -> Iterator[threading.Event]:
    """An event set by SIGTERM or SIGINT (from the main thread); shut ``server`` at exit."""
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.shutdown()
        server.server_close()
