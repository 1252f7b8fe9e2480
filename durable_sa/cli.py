"""The ``durable-sa`` command.

Only ``cli.py`` prints. A user mistake ends in one readable line on stderr and a non-zero
exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from durable_sa import demo
from durable_sa.errors import DurableError

if TYPE_CHECKING:
    from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with one sub-command per operation."""
    parser = argparse.ArgumentParser(
        prog="durable-sa",
        description="Durable, crash-resumable workflows on SQLAlchemy.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run_demo = commands.add_parser("demo", help="run an order saga on an embedded SQLite file")
    run_demo.add_argument("--db", help="SQLite file to use (default: a temporary file)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            return demo.main(["--db", args.db] if args.db else [])
    except DurableError as exc:
        print(f"durable-sa: {exc}", file=sys.stderr)
        return 1
    return 2  # pragma: no cover - argparse rejects unknown commands first


if __name__ == "__main__":
    raise SystemExit(main())
