"""The commands: each opens the database (or loads APP), does one thing, prints lines.

Only this module prints (tables come from :mod:`durable_sa.cli.formatting` as lines,
``--json`` from :mod:`durable_sa.cli.json_output`): results to stdout, a worker's log
records to stderr through ``logging``. Operator commands never change the schema; a
database without durable-sa's tables is reported, not created.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from durable_sa.cli.errors import FAILURE, USAGE, CliError, explain
from durable_sa.cli.formatting import (
    render_dead_letter,
    render_dead_letters,
    render_prune,
    render_runs,
    render_schedules,
    render_status,
    render_workers,
    versions,
)
from durable_sa.cli.json_output import (
    dead_letter_json,
    dead_letters_json,
    dismissed_json,
    requeued_json,
    runs_json,
    schedules_json,
    status_json,
    workers_json,
)
from durable_sa.cli.metrics import serve_database_metrics, serve_worker_metrics, until_stopped
from durable_sa.cli.scrubbing import configure_logging
from durable_sa.cli.urls import password_text, read_url
from durable_sa.facade import Durable
from durable_sa.store.models import JournalEntry

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterable, Iterator

    from durable_sa.cli.scrubbing import Invocation

ENV_DATABASE_URL: Final = "DURABLE_SA_DATABASE_URL"
_CONNECT_TIMEOUT: Final = 10  # seconds; an unreachable host must not hang a command


# ── output ──────────────────────────────────────────────────────────────────────


def _out(lines: Iterable[str]) -> None:
    for line in lines:
        print(line)
    sys.stdout.flush()


# ── the database ────────────────────────────────────────────────────────────────


@contextlib.contextmanager
def _database(args: argparse.Namespace, inv: Invocation) -> Iterator[Durable]:
    """The engine on ``--database-url`` (or the environment), disposed at exit."""
    text = getattr(args, "database_url", None) or os.environ.get(ENV_DATABASE_URL)
    if not text:
        msg = f"no database: pass --database-url URL or set {ENV_DATABASE_URL}"
        raise CliError(msg, USAGE)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # the environment's bytes (the option's are checked earlier)
        msg = f"{ENV_DATABASE_URL} is not valid UTF-8; set it to the URL as UTF-8 text"
        raise CliError(msg, USAGE) from None
    url = read_url(text)
    inv.remember(url, password_text(text))
    _check_sqlite_file(url)
    connect_args = (
        {"connect_timeout": _CONNECT_TIMEOUT} if url.get_backend_name() == "postgresql" else {}
    )
    try:
        sa_engine = sa.create_engine(url, connect_args=connect_args)
    except ImportError as exc:
        msg = (
            f"bad database URL {inv.url}: its driver is not installed ({exc}); "
            "for PostgreSQL use postgresql+psycopg://"
        )
        raise CliError(msg, USAGE) from None
    except (TypeError, ValueError) as exc:  # the dialect refused a query option (timeout=abc)
        msg = f"bad database URL {inv.url}: {exc}"
        raise CliError(msg, USAGE) from None
    try:
        yield Durable(sa_engine)
    finally:
        sa_engine.dispose()


def _check_sqlite_file(url: sa.URL) -> None:
    """Refuse a SQLite file that does not exist, rather than create an empty one."""
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return
    if url.database.startswith("file:"):
        return
    if not Path(url.database).is_file():
        msg = f"no SQLite database file at {url.database}"
        raise CliError(msg)


# ── commands ────────────────────────────────────────────────────────────────────


def status_command(args: argparse.Namespace, inv: Invocation) -> int:
    """Print a run: its status, input, steps, journal (with every error) and children."""
    with _database(args, inv) as engine:
        snap = engine.status(args.run_id)
        with Session(engine.sa_engine) as session:
            journal = session.scalars(
                sa.select(JournalEntry)
                .where(JournalEntry.run_id == snap.run_id)
                .order_by(JournalEntry.id)
            ).all()
    if args.json:
        _out(status_json(snap, journal))
        return 0
    _out(render_status(snap, journal, tracebacks=args.traceback))
    return 0


def list_command(args: argparse.Namespace, inv: Invocation) -> int:
    """Print the most recent runs, newest first (children under their parent)."""
    with _database(args, inv) as engine:
        snaps = engine.list(
            status=args.status,
            workflow=args.workflow,
            top_level=args.top_level,
            since=args.since,
            limit=args.limit,
        )
    if args.json:
        _out(runs_json(snaps))
        return 0
    _out(render_runs(snaps))
    if len(snaps) == args.limit:
        _out([f"(the {args.limit} most recent; --limit N shows more)"])
    return 0


def resume_command(args: argparse.Namespace, inv: Invocation) -> int:
    """Send a signal to a suspended run; exit 1 when it does not take it."""
    try:
        data = None if args.data is None else json.loads(args.data)
    except json.JSONDecodeError as exc:
        msg = f"--data is not valid JSON: {exc}"
        raise CliError(msg, USAGE) from None
    with _database(args, inv) as engine:
        result = engine.resume(args.run_id, args.signal, data)
        if result.accepted:
            _out([f"run {args.run_id} accepted signal {args.signal!r}; status: {result.status}"])
            return 0
        snap = engine.status(args.run_id)
    waiting = f", awaiting {snap.awaiting_signal!r}" if snap.awaiting_signal else ""
    refused = f"run {args.run_id} did not accept signal {args.signal!r}"
    _out([f"{refused} (status: {snap.status}{waiting})"])
    return FAILURE


def cancel_command(args: argparse.Namespace, inv: Invocation) -> int:
    """Cancel a run and its descendants."""
    with _database(args, inv) as engine:
        result = engine.cancel(args.run_id)
        if result.canceled:
            _out([f"canceled: {', '.join(str(run_id) for run_id in result.canceled)}"])
        else:
            status = engine.status(args.run_id).status
            _out([f"nothing to cancel: run {args.run_id} is {status}"])
    return 0


def pause_command(args: argparse.Namespace, inv: Invocation) -> int:
    """Pause a workflow: its runs' steps are not claimed until it is unpaused."""
    with _database(args, inv) as engine:
        changed = engine.pause(args.workflow, force=args.force)
    if changed:
        _out([f"paused {args.workflow}: its runs take no new step until `durable-sa unpause`"])
    else:
        _out([f"{args.workflow} was already paused"])
    return 0


def unpause_command(args: argparse.Namespace, inv: Invocation) -> int:
    """Let a paused workflow's runs go on."""
    with _database(args, inv) as engine:
        changed = engine.unpause(args.workflow)
        still = [] if changed else engine.paused_workflows()
    if changed:
        _out([f"unpaused {args.workflow}"])
    else:
        paused = f" (paused: {', '.join(still)})" if still else ""
        _out([f"{args.workflow} was not paused{paused}"])
    return 0


def recover_command(args: argparse.Namespace, inv: Invocation) -> int:
    """Re-enqueue runs that should progress but have no job."""
    with _database(args, inv) as engine:
        _out([f"recovering on {inv.url}: looking for runs that should progress but have no job..."])
        count = engine.recover()
    _out([f"re-enqueued {count} run(s)"])
    return 0


def prune_command(args: argparse.Namespace, inv: Invocation) -> int:
    """Delete finished runs older than the given age (or count them, dry)."""
    with _database(args, inv) as engine:
        result = engine.admin.prune(
            args.older_than, batch_size=args.batch_size, dry_run=args.dry_run
        )
    _out(render_prune(result, args.older_than))
    return 0


def dead_letters_command(args: argparse.Namespace, inv: Invocation) -> int:
    """List dead letters, show one, requeue or dismiss one."""
    if args.show and args.show_id is None:
        msg = "dead-letters show needs the dead letter's ID (durable-sa dead-letters show 12)"
        raise CliError(msg, USAGE)
    with _database(args, inv) as engine:
        if args.show:
            letter = engine.admin.dead_letter(args.show_id)
            _out(dead_letter_json(letter) if args.json else render_dead_letter(letter))
            return 0
        if args.requeue is not None:
            job_id = engine.admin.requeue(args.requeue)
            requeued = [f"dead letter {args.requeue} requeued as job {job_id}"]
            _out(requeued_json(args.requeue, job_id) if args.json else requeued)
            return 0
        if args.dismiss is not None:
            engine.admin.dismiss_dead_letter(args.dismiss)
            dismissed = [f"dead letter {args.dismiss} dismissed: resolved, not requeued"]
            _out(dismissed_json(args.dismiss) if args.json else dismissed)
            return 0
        letters = engine.admin.dead_letters(limit=args.limit, include_resolved=args.all)
    _out(
        dead_letters_json(letters) if args.json else render_dead_letters(letters, resolved=args.all)
    )
    return 0


def workers_command(args: argparse.Namespace, inv: Invocation) -> int:
    """Print the live workers, from their heartbeats."""
    with _database(args, inv) as engine:
        workers = engine.admin.workers()
    _out(workers_json(workers) if args.json else render_workers(workers))
    return 0


def schedules_command(args: argparse.Namespace, inv: Invocation) -> int:
    """Print the schedules: next fire time, last run, paused."""
    with _database(args, inv) as engine:
        found = engine.schedules()
    _out(schedules_json(found) if args.json else render_schedules(found))
    return 0


# ── the worker ──────────────────────────────────────────────────────────────────


def import_spec(spec: str, what: str) -> object:
    """The object ``package.module:attribute`` names; ``what`` says which option it is.

    The current directory goes on ``sys.path`` first, as ``python -m`` would put it,
    so ``durable-sa worker myapp.workflows:engine`` finds ``./myapp``.

    Raises:
        CliError: the spec is malformed, or its module or attribute cannot be found.

    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        msg = f"{what} must look like package.module:attribute, not {spec!r}"
        raise CliError(msg, USAGE)
    cwd = str(Path.cwd())
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        found: object = importlib.import_module(module_name)
    except ImportError as exc:
        msg = f"cannot import {what} module {module_name!r}: {exc}"
        raise CliError(msg, USAGE) from None
    try:
        for part in attribute.split("."):
            found = getattr(found, part)
    except AttributeError:
        msg = f"module {module_name!r} has no attribute {attribute!r} ({what})"
        raise CliError(msg, USAGE) from None
    return found


def load_app(spec: str) -> Durable:
    """The engine APP (``package.module:attribute``) names; a callable is called.

    Raises:
        CliError: APP is malformed, cannot be imported, or is not a ``Durable``.

    """
    found = import_spec(spec, "APP")
    if not isinstance(found, Durable) and callable(found):
        _check_no_arguments(spec, found)
        found = found()
    if not isinstance(found, Durable):
        msg = (
            f"APP {spec!r} is not a durable_sa.Durable (nor a function that returns one): "
            f"got {type(found).__name__}"
        )
        raise CliError(msg, USAGE)
    return found


def _check_no_arguments(spec: str, factory: Callable[..., object]) -> None:
    """Refuse an APP that names a function needing arguments (a step, say), in one line.

    Raises:
        CliError: (usage) naming the parameters it needs.

    """
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # no signature to read (a builtin): just call it
        return
    try:
        signature.bind()
    except TypeError:
        needed = ", ".join(
            name
            for name, parameter in signature.parameters.items()
            if parameter.default is inspect.Parameter.empty
            and parameter.kind not in {parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD}
        )
        msg = (
            f"APP {spec!r} is a function that needs arguments ({needed}); name the "
            "durable_sa.Durable engine (such as myapp.workflows:engine) or a function "
            "that takes none and returns one"
        )
        raise CliError(msg, USAGE) from None


def worker_command(args: argparse.Namespace, inv: Invocation) -> int:
    """Run a worker for APP until stopped."""
    configure_logging(args.log_level, inv, args.log_format)
    engine = load_app(args.app)
    inv.remember(engine.sa_engine.url)
    options = {
        "lease": args.lease,
        "heartbeat": args.heartbeat,
        "job_timeout": args.job_timeout,
        "grace_period": args.grace,
        "commit_timeout": args.commit_timeout,
        "startup_timeout": args.startup_timeout,
        "prefetch": args.prefetch,
        "poll_interval": args.poll_interval,
        "name": args.name,
        "relay": None if args.relay else False,
        "schedules": args.schedules,
    }
    try:
        worker = engine.worker(
            concurrency=args.concurrency,
            queues=args.queue,
            **{key: value for key, value in options.items() if value is not None},
        )
    except ValueError as exc:
        raise CliError(str(exc), USAGE) from None
    # ── worker metrics (--metrics-port): bound before the start line, so a port in use
    # (or a missing extra) is the only line printed, not a start line and then a failure ──
    served = None
    if args.metrics_port is not None:
        served = serve_worker_metrics(host=args.metrics_host, port=args.metrics_port)
    try:
        queues = ", ".join(worker.queues) if worker.queues else "all"
        started = (
            f"durable-sa worker {worker.id}: concurrency {worker.concurrency}, queues {queues}, "
            f"workflows {versions(worker.workflows)}, database {inv.url}"
        )
        _out([started])
        if not worker.workflows:
            print(
                f"durable-sa: warning: {args.app} registered no workflows; this worker will "
                "claim nothing (import the modules that call durable(...) from APP)",
                file=sys.stderr,
            )
        if served is not None:
            _out([f"step metrics: http://{args.metrics_host}:{args.metrics_port}/metrics"])
        worker.run()
    finally:
        if served is not None:
            served.shutdown()
            served.server_close()
    stats = worker.stats
    _out([f"durable-sa worker {worker.id} stopped: {stats.applied + stats.stale} job(s) done"])
    return 0


def relay_command(args: argparse.Namespace, inv: Invocation) -> int:
    """Run a relay for APP until stopped, or publish once."""
    configure_logging(args.log_level, inv, args.log_format)
    engine = load_app(args.app)
    inv.remember(engine.sa_engine.url)
    options = {"batch_size": args.batch_size, "poll_interval": args.poll_interval}
    relay = engine.relay(
        name=args.name, **{key: value for key, value in options.items() if value is not None}
    )
    backlog = relay.backlog()  # fail now, in one line, if the database cannot be reached
    if args.once:
        try:
            published, pruned = relay.drain(), relay.prune()
        except DBAPIError:  # explained by main(), like every database error
            raise
        except Exception as exc:  # noqa: BLE001 - the broker refused: one line, not a traceback
            msg = f"could not publish to {engine.backend!r}: {type(exc).__name__}: {exc}"
            raise CliError(msg) from None
        _out([f"durable-sa relay {relay.id}: published {published}, pruned {pruned}"])
        return 0
    started = (
        f"durable-sa relay {relay.id}: {engine.backend.name} backend, {backlog} row(s) due, "
        f"database {inv.url}"
    )
    _out([started])
    relay.run()
    stats = relay.stats
    _out([f"durable-sa relay {relay.id} stopped: {stats.published} message(s) published"])
    return 0


def metrics_command(args: argparse.Namespace, inv: Invocation) -> int:
    """Serve a database's metrics for Prometheus until SIGTERM/SIGINT.

    The database is ``--database-url`` when given (before or after ``metrics``, as for
    every command), else APP's engine's, else ``$DURABLE_SA_DATABASE_URL``.
    """
    with contextlib.ExitStack() as stack:
        if getattr(args, "database_url", None) or args.app is None:
            engine = stack.enter_context(_database(args, inv))
        else:
            engine = load_app(args.app)
            inv.remember(engine.sa_engine.url)
            _check_sqlite_file(engine.sa_engine.url)
        server = serve_database_metrics(
            engine,
            host=args.host,
            port=args.port,
            cache_seconds=args.cache,
            on_database_change=_database_change_teller(inv),
        )
        with until_stopped(server) as stop:
            where = f"http://{args.host}:{args.port}/metrics"
            _out([f"durable-sa metrics: {where}, database {inv.url}"])
            stop.wait()
    _out(["durable-sa metrics stopped"])
    return 0


def _database_change_teller(inv: Invocation) -> Callable[[Exception | None], None]:
    """One line on stderr when the served database cannot be read, and when it can again.

    The same words as a failed start (``explain``: "has no durable-sa tables; create
    them with ..."), scrubbed of any password, never the SQL.
    """

    def tell(error: Exception | None) -> None:
        if error is None:
            line = f"database back up: reading {inv.url or 'the database'} again"
        else:
            reason = explain(error, inv)[0].strip().splitlines()
            line = f"database down, durable_sa_database_up is 0: {reason[0] if reason else ''}"
        print(f"durable-sa metrics: {inv.scrub(line)}", file=sys.stderr, flush=True)

    return tell
