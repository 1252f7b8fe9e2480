"""The ``durable-sa`` command: run a worker, look at runs, resume, cancel, recover, prune.

Rules:
- Only :mod:`~durable_sa.cli.commands` (and :mod:`~durable_sa.cli.dashboard`, the
  ``dashboard`` command, which imports the dashboard extra only when run) prints (tables come from
  :mod:`~durable_sa.cli.formatting` as lines, ``--json`` from
  :mod:`~durable_sa.cli.json_output`). Results go to stdout; a worker's log records go
  to stderr through ``logging``.
- A user mistake (no or bad database URL, unknown run, malformed ``--data``, a bad APP,
  an unreachable database, an argument that is not UTF-8) ends in ONE line on stderr
  starting with ``durable-sa: `` and a non-zero exit: 2 for usage errors, 1 otherwise.
  Never a traceback.
- A database password is never printed: URLs are shown with ``***`` and every error
  message is scrubbed of the password before it is printed. A URL whose password holds
  an unencoded ``@`` is refused before it is parsed (SQLAlchemy would read part of the
  password as the host).
- Operator commands never change the schema; a database without durable-sa's tables is
  reported, not created.

The package: :mod:`~durable_sa.cli.parser` (the command line),
:mod:`~durable_sa.cli.commands` (what each command does),
:mod:`~durable_sa.cli.formatting` (tables as lines) with :mod:`~durable_sa.cli.cells`
(one value, one cell), :mod:`~durable_sa.cli.json_output` (the ``--json`` shapes),
:mod:`~durable_sa.cli.urls` (the database URL as typed), :mod:`~durable_sa.cli.scrubbing`
(no password shown) and :mod:`~durable_sa.cli.errors` (one line per failure).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from sqlalchemy.exc import ArgumentError, DBAPIError

from durable_sa.cli.commands import load_app
from durable_sa.cli.errors import CliError, explain
from durable_sa.cli.parser import parse, parse_age
from durable_sa.cli.scrubbing import Invocation, ScrubbingFormatter
from durable_sa.errors import DurableError

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence

__all__ = ["CliError", "Invocation", "ScrubbingFormatter", "load_app", "main", "parse_age"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    inv = Invocation()
    try:
        args = parse(argv)
        command: Callable[[argparse.Namespace, Invocation], int] = args.run
        return command(args, inv)
    except (CliError, DurableError, ArgumentError, DBAPIError) as exc:
        message, code = explain(exc, inv)
    except KeyboardInterrupt:
        message, code = "interrupted", 130
    print(f"durable-sa: {inv.scrub(message)}", file=sys.stderr)
    return code
