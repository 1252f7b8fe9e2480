"""The command line: every command, its arguments and their types.

Usage errors end in one line, like every other error (:class:`~durable_sa.cli.errors.
CliError` with the usage exit code), never argparse's own message and exit. That
includes an argument that is not UTF-8 (Python hands it over with lone surrogates,
which no database driver or output stream accepts): it is refused before parsing,
named by its position and option, never shown, since it may be a password.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, NoReturn

from durable_sa.cli.commands import (
    ENV_DATABASE_URL,
    cancel_command,
    dead_letters_command,
    list_command,
    metrics_command,
    pause_command,
    prune_command,
    recover_command,
    relay_command,
    resume_command,
    schedules_command,
    status_command,
    unpause_command,
    worker_command,
    workers_command,
)
from durable_sa.cli.dashboard import dashboard_arguments
from durable_sa.cli.errors import USAGE, CliError
from durable_sa.cli.metrics import metrics_arguments, metrics_port_arguments
from durable_sa.core.status import RunStatus

if TYPE_CHECKING:
    from collections.abc import Sequence

_AGE = re.compile(r"(?P<amount>[0-9]+)(?P<unit>[smhdw])")
_OPTION = re.compile(r"--[a-z][a-z-]*")
_AGE_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


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


def _since(text: str) -> datetime | timedelta:
    """``--since``: an age (``2h``, ``30d``) or an ISO 8601 time (UTC unless it says)."""
    try:
        return parse_age(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        msg = (
            "expected an age such as 90s, 15m, 12h, 30d or 2w, or an ISO 8601 time such as "
            f"2024-05-01 or 2024-05-01T12:00:00Z, not {text!r}"
        )
        raise argparse.ArgumentTypeError(msg) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


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
_LOG_FORMATS = ["text", "json"]


_RUNS_APP = ("worker", "relay")
"""The commands that use APP's engine, and so its database, not ``--database-url``."""


def _refused_database_url(parser: argparse.ArgumentParser) -> None:
    """A hidden ``--database-url`` after the command, so :func:`parse` refuses it in words."""
    parser.add_argument(
        "--database-url", metavar="URL", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )


def _worker_arguments(worker: argparse.ArgumentParser) -> None:
    """``worker APP`` and its options."""
    worker.add_argument("app", metavar="APP", help="package.module:attribute, a Durable engine")
    _refused_database_url(worker)
    worker.add_argument("--concurrency", type=_positive_int, default=1, metavar="N")
    worker.add_argument("--queue", action="append", metavar="Q", help="repeat for several")
    for flag, what in (
        ("--lease", "how long a claim lasts without a heartbeat"),
        ("--heartbeat", "how often leases and presence are renewed"),
        ("--job-timeout", "abandon a job running longer than this"),
        ("--grace", "how long a stop waits for running steps"),
        ("--commit-timeout", "give up held jobs when a commit blocks this long"),
        ("--startup-timeout", "how long to keep trying to reach the database (default 60)"),
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
    worker.add_argument(
        "--no-schedules",
        dest="schedules",
        action="store_false",
        help="fire no schedules in this worker (other workers do)",
    )
    worker.add_argument("--log-level", type=str.upper, default="INFO", choices=_LOG_LEVELS)
    metrics_port_arguments(worker)
    worker.add_argument(
        "--log-format",
        choices=_LOG_FORMATS,
        default="text",
        help="json: one JSON object per line, with run_id, workflow, step, attempt fields",
    )
    worker.set_defaults(run=worker_command)


def _relay_arguments(relay: argparse.ArgumentParser) -> None:
    relay.add_argument("app", metavar="APP", help="package.module:attribute, a Durable engine")
    _refused_database_url(relay)
    relay.add_argument("--batch-size", type=_positive_int, default=500, metavar="N")
    relay.add_argument("--poll-interval", type=_positive_float, metavar="S")
    relay.add_argument("--name", help="relay id (default: relay:host:pid:random)")
    relay.add_argument("--once", action="store_true", help="publish what is due, prune, and exit")
    relay.add_argument("--log-level", type=str.upper, default="INFO", choices=_LOG_LEVELS)
    relay.add_argument("--log-format", choices=_LOG_FORMATS, default="text")
    relay.set_defaults(run=relay_command)


def _list_arguments(listing: argparse.ArgumentParser) -> None:
    listing.add_argument("--status", choices=[s.value for s in RunStatus])
    listing.add_argument("--workflow", metavar="W")
    listing.add_argument(
        "--top-level", action="store_true", help="only runs no other run started (no children)"
    )
    listing.add_argument(
        "--since",
        type=_since,
        metavar="WHEN",
        help="only runs created since: an age (2h, 30d) or an ISO 8601 time (UTC if no offset)",
    )
    listing.add_argument(
        "--limit", type=_positive_int, default=50, metavar="N", help="at most N runs (default: 50)"
    )
    listing.set_defaults(run=list_command)


def _pause_parsers(commands: Any, database: argparse.ArgumentParser) -> None:  # noqa: ANN401
    """``pause NAME`` and ``unpause NAME``."""
    for name, run, what, description in (
        (
            "pause",
            pause_command,
            "pause a workflow: no step of its runs is claimed until unpaused",
            (
                "Pause the workflow NAME on every worker: steps already running finish, no "
                "further step of its runs is claimed; starts and signals are still accepted. "
                "NAME must be known to the database (a run, a live worker or a schedule has "
                "it), else pass --force."
            ),
        ),
        ("unpause", unpause_command, "let a paused workflow's runs go on", None),
    ):
        sub = commands.add_parser(name, parents=[database], help=what, description=description)
        sub.add_argument("workflow", metavar="NAME", help="the workflow's name")
        if name == "pause":
            sub.add_argument(
                "--force",
                action="store_true",
                help=(
                    "pause NAME even though no run, live worker or schedule knows it yet "
                    "(a workflow another service defines, before its first run)"
                ),
            )
        sub.set_defaults(run=run)


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

    _worker_arguments(commands.add_parser("worker", help="run jobs until SIGTERM/SIGINT"))

    _relay_arguments(
        commands.add_parser(
            "relay", help="publish a relay backend's outbox to its broker until SIGTERM/SIGINT"
        )
    )

    metrics_arguments(
        commands.add_parser(
            "metrics",
            parents=[database],
            help="serve Prometheus metrics read from the database until SIGTERM/SIGINT",
            description=(
                "Serve APP's metrics at http://HOST:PORT/metrics: runs by workflow and status, "
                "due jobs, dead letters, workers, limits, schedules (needs durable-sa[metrics])."
            ),
        ),
        run=metrics_command,
    )

    reading = _Parser(add_help=False)
    reading.add_argument(
        "--json", action="store_true", help="print JSON (JSON Lines for lists) instead of a table"
    )

    status = commands.add_parser(
        "status", parents=[database, reading], help="a run, its journal, children"
    )
    status.add_argument("run_id", type=int, metavar="RUN_ID")
    status.add_argument(
        "--traceback", action="store_true", help="print where each failed step raised"
    )
    status.set_defaults(run=status_command)

    _list_arguments(
        commands.add_parser(
            "list",
            parents=[database, reading],
            help="runs, newest first",
            description=(
                "The most recent runs, newest first. A child run is shown indented under its "
                "parent, or marked 'child of run N' when its parent is not listed."
            ),
        )
    )

    resume = commands.add_parser(
        "resume",
        parents=[database],
        help="deliver a signal to a suspended run",
        description="Deliver SIGNAL to run RUN_ID; exits 1 when the run does not accept it.",
    )
    resume.add_argument("run_id", type=int, metavar="RUN_ID")
    resume.add_argument("signal", metavar="SIGNAL")
    resume.add_argument("--data", metavar="JSON", help="the signal's data, as JSON")
    resume.set_defaults(run=resume_command)

    cancel = commands.add_parser("cancel", parents=[database], help="cancel a run and its children")
    cancel.add_argument("run_id", type=int, metavar="RUN_ID")
    cancel.set_defaults(run=cancel_command)

    _pause_parsers(commands, database)

    recover = commands.add_parser(
        "recover", parents=[database], help="re-enqueue runs that should progress but have no job"
    )
    recover.set_defaults(run=recover_command)

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
    prune.set_defaults(run=prune_command)

    dead = commands.add_parser(
        "dead-letters",
        parents=[database, reading],
        help="list dead-lettered jobs, show one whole (show ID), requeue or dismiss one",
        description=(
            "Dead letters are jobs that could not run. --requeue ID puts one back on the "
            "queue; --dismiss ID resolves it without running it (the run was fixed by hand, "
            "or its work is not wanted); canceling a run resolves its dead letters itself. "
            "Resolved ones leave durable_sa_dead_letters_open and show with --all."
        ),
    )
    dead.add_argument("show", nargs="?", choices=["show"], help="show one dead letter whole")
    dead.add_argument("show_id", nargs="?", type=int, metavar="ID")
    acting = dead.add_mutually_exclusive_group()
    acting.add_argument("--requeue", type=int, metavar="ID", help="put dead letter ID back")
    acting.add_argument(
        "--dismiss",
        type=int,
        metavar="ID",
        help="mark dead letter ID resolved without requeueing it (dealt with another way)",
    )
    dead.add_argument("--limit", type=_positive_int, default=50, metavar="N")
    dead.add_argument(
        "--all",
        action="store_true",
        help="also resolved ones: requeued, dismissed, or whose run was recovered or canceled",
    )
    dead.set_defaults(run=dead_letters_command)

    workers = commands.add_parser("workers", parents=[database, reading], help="list live workers")
    workers.set_defaults(run=workers_command)
    commands.add_parser(
        "schedules",
        parents=[database, reading],
        help="list schedules: next fire time, last run, paused",
    ).set_defaults(run=schedules_command)
    dashboard_arguments(
        commands.add_parser(
            "dashboard",
            help="serve the web dashboard of APP (loopback and a token, unless --auth)",
        )
    )
    return parser


def _option_of(argv: Sequence[str], index: int) -> str | None:
    """The ``--option`` whose value ``argv[index]`` is, if it says (and is itself UTF-8)."""
    arg = argv[index]
    if arg.startswith("--") and "=" in arg:
        option = arg.partition("=")[0]
    elif index > 0 and argv[index - 1].startswith("--") and "=" not in argv[index - 1]:
        option = argv[index - 1]
    else:
        return None
    return option if _OPTION.fullmatch(option) else None


def check_utf8(argv: Sequence[str]) -> None:
    """Refuse an argument that was not UTF-8, without showing it.

    Raises:
        CliError: (usage) naming the argument's position and, if any, its option.

    """
    for position, arg in enumerate(argv, start=1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            which = f"argument {position}"
            option = _option_of(argv, position - 1)
            if option is not None:
                which += f" (the value of {option})"
            msg = f"{which} is not valid UTF-8; pass names, ids, JSON and URLs as UTF-8 text"
            raise CliError(msg, USAGE) from None


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The parsed arguments; a mistake raises a one-line :class:`CliError` (usage, 2)."""
    args = sys.argv[1:] if argv is None else list(argv)
    check_utf8(args)
    parsed = build_parser().parse_args(args)
    if parsed.command in _RUNS_APP and getattr(parsed, "database_url", None) is not None:
        msg = (
            f"{parsed.command} runs on the database of APP's engine, so --database-url "
            "would be ignored: drop it and make APP's engine from that URL (e.g. read "
            f"${ENV_DATABASE_URL} where APP creates it)"
        )
        raise CliError(msg, USAGE)
    return parsed
