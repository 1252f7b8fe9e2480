"""The ``durable-sa`` command: run a worker, look at runs, resume, cancel, recover, prune.

Rules:
- Only this module prints (tables come from :mod:`durable_sa.cli_format` as lines).
  Results go to stdout; a worker's log records go to stderr through ``logging``.
- A user mistake (no or bad database URL, unknown run, malformed ``--data``, a bad APP,
  an unreachable database) ends in ONE line on stderr starting with ``durable-sa: `` and
  a non-zero exit: 2 for usage errors, 1 otherwise. Never a traceback.
- A database password is never printed: URLs are shown with ``***`` and every error
  message is scrubbed of the password before it is printed.
- Operator commands never change the schema; a database without durable-sa's tables is
  reported, not created.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import re
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final, NoReturn
from urllib.parse import quote

import attrs
import sqlalchemy as sa
from psycopg import errors as pg_errors
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.orm import Session

from durable_sa import demo
from durable_sa.cli_format import (
    render_dead_letters,
    render_prune,
    render_runs,
    render_status,
    render_workers,
    versions,
)
from durable_sa.core.status import RunStatus
from durable_sa.errors import DurableError
from durable_sa.facade import Durable
from durable_sa.store.models import JournalEntry

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

ENV_DATABASE_URL: Final = "DURABLE_SA_DATABASE_URL"
USAGE: Final = 2
FAILURE: Final = 1
_CONNECT_TIMEOUT: Final = 10  # seconds; an unreachable host must not hang a command
_MIN_LITERAL_SECRET: Final = 4  # shorter passwords are scrubbed by the URL patterns only
_AGE = re.compile(r"(?P<amount>[0-9]+)(?P<unit>[smhdw])")
_AGE_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_SECRET_PATTERNS: Final = (
    re.compile(r"(?P<keep>://[^/:@\s]*:)[^@\s]+(?=@)"),  # scheme://user:PASSWORD@host
    re.compile(r"(?P<keep>\bpassword\s*=\s*)('[^']*'|\S+)", re.IGNORECASE),  # conninfo
)


class CliError(Exception):
    """A mistake the user can fix: printed as one line, exit ``code``."""

    def __init__(self, message: str, code: int = FAILURE) -> None:
        super().__init__(message)
        self.code = code


@attrs.define
class Invocation:
    """What an error message needs to know about the command being run."""

    url: str | None = None  # the database URL, password hidden
    secrets: set[str] = attrs.field(factory=set)

    def remember(self, url: sa.URL) -> None:
        """Note ``url`` for messages, and its password for scrubbing."""
        self.url = url.render_as_string(hide_password=True)
        if url.password:
            self.secrets.update({str(url.password), quote(str(url.password), safe="")})

    def scrub(self, text: str) -> str:
        """``text`` without any password: URL and conninfo forms, then known secrets."""
        for pattern in _SECRET_PATTERNS:
            text = pattern.sub(lambda m: f"{m['keep']}***", text)
        for secret in sorted(self.secrets, key=len, reverse=True):
            if len(secret) >= _MIN_LITERAL_SECRET:  # as a whole word: "postgres" ≠ postgresql
                text = re.sub(rf"(?<![^\W_]){re.escape(secret)}(?![^\W_])", "***", text)
        return text


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other error."""

    def error(self, message: str) -> NoReturn:
        msg = f"{message} (see `{self.prog} --help`)"
        raise CliError(msg, USAGE)


# ── argument types ──────────────────────────────────────────────────────────────


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"expected a whole number of at least 1, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        msg = f"expected a number of seconds above 0, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _seconds(text: str) -> timedelta:
    return timedelta(seconds=_positive_float(text))


def parse_age(text: str) -> timedelta:
    """An age such as ``90s``, ``15m``, ``12h``, ``30d`` or ``2w``: a whole number and a unit.

    The unit is required, so ``30`` is refused rather than guessed at.

    Raises:
        argparse.ArgumentTypeError: ``text`` is not such an age (or absurdly large).

    """
    match = _AGE.fullmatch(text.strip())
    if match is None:
        msg = (
            "expected an age as a whole number and a unit (s, m, h, d or w), "
            f"such as 90s, 15m, 12h, 30d or 2w, not {text!r}"
        )
        raise argparse.ArgumentTypeError(msg)
    try:
        return timedelta(**{_AGE_UNITS[match["unit"]]: int(match["amount"])})
    except OverflowError:
        msg = f"the age {text!r} is too large (at most 999999999d)"
        raise argparse.ArgumentTypeError(msg) from None


# ── the parser ──────────────────────────────────────────────────────────────────


_LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]


def _relay_arguments(relay: argparse.ArgumentParser) -> None:
    relay.add_argument("app", metavar="APP", help="package.module:attribute, a Durable engine")
    relay.add_argument("--batch-size", type=_positive_int, default=500, metavar="N")
    relay.add_argument("--poll-interval", type=_positive_float, metavar="S")
    relay.add_argument("--name", help="relay id (default: relay:host:pid:random)")
    relay.add_argument("--once", action="store_true", help="publish what is due, prune, and exit")
    relay.add_argument("--log-level", type=str.upper, default="INFO", choices=_LOG_LEVELS)
    relay.set_defaults(run=_relay)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with one sub-command per operation."""
    database = _Parser(add_help=False)
    database.add_argument(
        "--database-url",
        metavar="URL",
        default=argparse.SUPPRESS,
        help=f"SQLAlchemy URL of the database (default: ${ENV_DATABASE_URL})",
    )
    parser = _Parser(
        prog="durable-sa",
        description="Durable, crash-resumable workflows on SQLAlchemy.",
        parents=[database],
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    worker = commands.add_parser("worker", help="run jobs until SIGTERM/SIGINT")
    worker.add_argument("app", metavar="APP", help="package.module:attribute, a Durable engine")
    worker.add_argument("--concurrency", type=_positive_int, default=1, metavar="N")
    worker.add_argument("--queue", action="append", metavar="Q", help="repeat for several")
    for flag, what in (
        ("--lease", "how long a claim lasts without a heartbeat"),
        ("--heartbeat", "how often leases and presence are renewed"),
        ("--job-timeout", "abandon a job running longer than this"),
        ("--grace", "how long a stop waits for running steps"),
        ("--commit-timeout", "give up held jobs when a commit blocks this long"),
    ):
        worker.add_argument(flag, type=_seconds, metavar="S", help=f"{what} (seconds)")
    worker.add_argument("--poll-interval", type=_positive_float, metavar="S")
    worker.add_argument(
        "--prefetch", type=_positive_int, metavar="N", help="most jobs held at once (jobs table)"
    )
    worker.add_argument("--name", help="worker id (default: host:pid:random)")
    worker.add_argument(
        "--no-relay",
        dest="relay",
        action="store_false",
        help="relay backends: leave publishing the outbox to `durable-sa relay` processes",
    )
    worker.add_argument("--log-level", type=str.upper, default="INFO", choices=_LOG_LEVELS)
    worker.set_defaults(run=_worker)

    _relay_arguments(
        commands.add_parser(
            "relay", help="publish a relay backend's outbox to its broker until SIGTERM/SIGINT"
        )
    )

    status = commands.add_parser("status", parents=[database], help="a run, its journal, children")
    status.add_argument("run_id", type=int, metavar="RUN_ID")
    status.set_defaults(run=_status)

    listing = commands.add_parser("list", parents=[database], help="runs, newest first")
    listing.add_argument("--status", choices=[s.value for s in RunStatus])
    listing.add_argument("--workflow", metavar="W")
    listing.add_argument("--limit", type=_positive_int, default=50, metavar="N")
    listing.set_defaults(run=_list)

    resume = commands.add_parser(
        "resume",
        parents=[database],
        help="deliver a signal to a suspended run",
        description="Deliver SIGNAL to run RUN_ID; exits 1 when the run does not accept it.",
    )
    resume.add_argument("run_id", type=int, metavar="RUN_ID")
    resume.add_argument("signal", metavar="SIGNAL")
    resume.add_argument("--data", metavar="JSON", help="the signal's data, as JSON")
    resume.set_defaults(run=_resume)

    cancel = commands.add_parser("cancel", parents=[database], help="cancel a run and its children")
    cancel.add_argument("run_id", type=int, metavar="RUN_ID")
    cancel.set_defaults(run=_cancel)

    recover = commands.add_parser(
        "recover", parents=[database], help="re-enqueue runs that should progress but have no job"
    )
    recover.set_defaults(run=_recover)

    prune = commands.add_parser(
        "prune",
        parents=[database],
        help="delete runs that finished long ago, with their journal",
        description=(
            "Delete completed, failed and canceled runs that finished more than AGE ago, "
            "with their journal entries, leftover jobs and dead letters. A child run goes "
            "only with its root, and only once the whole tree has finished; live runs are "
            "never touched. Each batch of runs is its own short transaction."
        ),
    )
    prune.add_argument(
        "--older-than",
        type=parse_age,
        required=True,
        metavar="AGE",
        help="how long ago a run must have finished: 90s, 15m, 12h, 30d, 2w",
    )
    prune.add_argument(
        "--batch-size",
        type=_positive_int,
        default=1000,
        metavar="N",
        help="runs deleted per transaction (default: 1000)",
    )
    prune.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    prune.set_defaults(run=_prune)

    dead = commands.add_parser(
        "dead-letters", parents=[database], help="list dead-lettered jobs, or requeue one"
    )
    dead.add_argument("--requeue", type=int, metavar="ID", help="put dead letter ID back")
    dead.add_argument("--limit", type=_positive_int, default=50, metavar="N")
    dead.set_defaults(run=_dead_letters)

    workers = commands.add_parser("workers", parents=[database], help="list live workers")
    workers.set_defaults(run=_workers)

    run_demo = commands.add_parser(
        "demo",
        add_help=False,  # its options, --help included, belong to durable_sa.demo
        help="run an order saga on an embedded SQLite file (durable-sa demo --help)",
    )
    run_demo.set_defaults(run=_demo, demo_args=[])
    return parser


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
    url = sa.make_url(text)  # ArgumentError for a malformed URL
    inv.remember(url)
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


def _status(args: argparse.Namespace, inv: Invocation) -> int:
    with _database(args, inv) as engine:
        snap = engine.status(args.run_id)
        with Session(engine.sa_engine) as session:
            journal = session.scalars(
                sa.select(JournalEntry)
                .where(JournalEntry.run_id == snap.run_id)
                .order_by(JournalEntry.id)
            ).all()
            _out(render_status(snap, journal))
    return 0


def _list(args: argparse.Namespace, inv: Invocation) -> int:
    with _database(args, inv) as engine:
        snaps = engine.list(status=args.status, workflow=args.workflow, limit=args.limit)
    _out(render_runs(snaps))
    if len(snaps) == args.limit:
        _out([f"(the {args.limit} most recent; --limit N shows more)"])
    return 0


def _resume(args: argparse.Namespace, inv: Invocation) -> int:
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


def _cancel(args: argparse.Namespace, inv: Invocation) -> int:
    with _database(args, inv) as engine:
        result = engine.cancel(args.run_id)
        if result.canceled:
            _out([f"canceled: {', '.join(str(run_id) for run_id in result.canceled)}"])
        else:
            status = engine.status(args.run_id).status
            _out([f"nothing to cancel: run {args.run_id} is {status}"])
    return 0


def _recover(args: argparse.Namespace, inv: Invocation) -> int:
    with _database(args, inv) as engine:
        _out([f"recovering on {inv.url}: looking for runs that should progress but have no job..."])
        count = engine.recover()
    _out([f"re-enqueued {count} run(s)"])
    return 0


def _prune(args: argparse.Namespace, inv: Invocation) -> int:
    with _database(args, inv) as engine:
        result = engine.prune(args.older_than, batch_size=args.batch_size, dry_run=args.dry_run)
    _out(render_prune(result, args.older_than))
    return 0


def _dead_letters(args: argparse.Namespace, inv: Invocation) -> int:
    with _database(args, inv) as engine:
        if args.requeue is not None:
            job_id = engine.requeue(args.requeue)
            _out([f"dead letter {args.requeue} requeued as job {job_id}"])
            return 0
        letters = engine.dead_letters(limit=args.limit)
    _out(render_dead_letters(letters))
    return 0


def _workers(args: argparse.Namespace, inv: Invocation) -> int:
    with _database(args, inv) as engine:
        _out(render_workers(engine.workers()))
    return 0


def _demo(args: argparse.Namespace, inv: Invocation) -> int:
    del inv
    return demo.main(args.demo_args)


# ── the worker ──────────────────────────────────────────────────────────────────


def load_app(spec: str) -> Durable:
    """The engine APP (``package.module:attribute``) names; a callable is called.

    The current directory goes on ``sys.path`` first, as ``python -m`` would put it,
    so ``durable-sa worker myapp.workflows:engine`` finds ``./myapp``.

    Raises:
        CliError: APP is malformed, cannot be imported, or is not a ``Durable``.

    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        msg = f"APP must look like package.module:attribute, not {spec!r}"
        raise CliError(msg, USAGE)
    cwd = str(Path.cwd())
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        found: object = importlib.import_module(module_name)
    except ImportError as exc:
        msg = f"cannot import APP module {module_name!r}: {exc}"
        raise CliError(msg, USAGE) from None
    try:
        for part in attribute.split("."):
            found = getattr(found, part)
    except AttributeError:
        msg = f"module {module_name!r} has no attribute {attribute!r}"
        raise CliError(msg, USAGE) from None
    if not isinstance(found, Durable) and callable(found):
        found = found()
    if not isinstance(found, Durable):
        msg = (
            f"APP {spec!r} is not a durable_sa.Durable (nor a function that returns one): "
            f"got {type(found).__name__}"
        )
        raise CliError(msg, USAGE)
    return found


class ScrubbingFormatter(logging.Formatter):
    """One line per record (time, level, message), with passwords scrubbed out."""

    def __init__(self, inv: Invocation) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(message)s")
        self._inv = inv

    def format(self, record: logging.LogRecord) -> str:
        """The formatted record (and traceback, if any) without a password."""
        return self._inv.scrub(super().format(record))


def configure_logging(level: str, inv: Invocation) -> None:
    """Log records at ``level`` and above to stderr, unless logging is set up already."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()  # stderr: stdout is for results
        handler.setFormatter(ScrubbingFormatter(inv))
        root.addHandler(handler)
    root.setLevel(level)


def _worker(args: argparse.Namespace, inv: Invocation) -> int:
    configure_logging(args.log_level, inv)
    engine = load_app(args.app)
    inv.remember(engine.sa_engine.url)
    options = {
        "lease": args.lease,
        "heartbeat": args.heartbeat,
        "job_timeout": args.job_timeout,
        "grace_period": args.grace,
        "commit_timeout": args.commit_timeout,
        "prefetch": args.prefetch,
        "poll_interval": args.poll_interval,
        "name": args.name,
        "relay": None if args.relay else False,
    }
    try:
        worker = engine.worker(
            concurrency=args.concurrency,
            queues=args.queue,
            **{key: value for key, value in options.items() if value is not None},
        )
    except ValueError as exc:
        raise CliError(str(exc), USAGE) from None
    engine.workers()  # fail now, in one line, if the database cannot be reached
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
    worker.run()
    stats = worker.stats
    _out([f"durable-sa worker {worker.id} stopped: {stats.applied + stats.stale} job(s) done"])
    return 0


def _relay(args: argparse.Namespace, inv: Invocation) -> int:
    configure_logging(args.log_level, inv)
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


# ── entry point ─────────────────────────────────────────────────────────────────


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return lines[0] if lines else type(orig).__name__


def _missing_tables(exc: DBAPIError) -> bool:
    return "no such table" in str(exc.orig) or isinstance(exc.orig, pg_errors.UndefinedTable)


def _explain(exc: BaseException, inv: Invocation) -> tuple[str, int]:
    """The one-line message and exit code for an error that ended a command."""
    where = inv.url or "the database"
    if isinstance(exc, CliError):
        return str(exc), exc.code
    if isinstance(exc, ArgumentError):
        shown = f" {inv.url}" if inv.url else ""
        return f"bad database URL{shown}: {exc}", USAGE
    if isinstance(exc, DBAPIError) and _missing_tables(exc):
        missing = (
            f"{where} has no durable-sa tables ({_first_line(exc)}); "
            "create them with Durable(...).create_tables() or your migrations"
        )
        return missing, FAILURE
    if isinstance(exc, OperationalError):
        return f"could not reach the database at {where}: {_first_line(exc)}", FAILURE
    if isinstance(exc, DBAPIError):
        return f"database error on {where}: {_first_line(exc)}", FAILURE
    return str(exc), FAILURE


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The arguments; ``demo`` hands whatever follows it to :func:`durable_sa.demo.main`."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "demo":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.demo_args = extra
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    inv = Invocation()
    try:
        args = _parse(argv)
        command: Callable[[argparse.Namespace, Invocation], int] = args.run
        return command(args, inv)
    except (CliError, DurableError, ArgumentError, DBAPIError) as exc:
        message, code = _explain(exc, inv)
    except KeyboardInterrupt:
        message, code = "interrupted", 130
    print(f"durable-sa: {inv.scrub(message)}", file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
