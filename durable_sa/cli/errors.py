"""What ends a command: a user's mistake or a database error, told in one line.

A :class:`CliError` is a mistake the user can fix; :func:`explain` turns it, or a
database error, into the one line ``main`` prints (never a traceback) and its exit code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from durable_sa.errors import DatabaseUnreachableError, first_line

if TYPE_CHECKING:
    from durable_sa.cli.scrubbing import Invocation

USAGE: Final = 2
FAILURE: Final = 1


class CliError(Exception):
    """A mistake the user can fix: printed as one line, exit ``code``."""

    def __init__(self, message: str, code: int = FAILURE) -> None:
        super().__init__(message)
        self.code = code


_UNDEFINED_TABLE: Final = "42P01"
"""PostgreSQL's SQLSTATE for a missing table (any driver reports it)."""


def _missing_tables(exc: DBAPIError) -> bool:
    sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return "no such table" in str(exc.orig) or sqlstate == _UNDEFINED_TABLE


def explain(exc: BaseException, inv: Invocation) -> tuple[str, int]:  # noqa: PLR0911 - a case each
    """The one-line message and exit code for an error that ended a command."""
    where = inv.url or "the database"
    if isinstance(exc, CliError):
        return str(exc), exc.code
    if isinstance(exc, ArgumentError):
        shown = f" {inv.url}" if inv.url else ""
        return f"bad database URL{shown}: {exc}", USAGE
    if isinstance(exc, DBAPIError) and _missing_tables(exc):
        missing = (
            f"{where} has no durable-sa tables ({first_line(exc)}); "
            "create them with Durable(...).create_tables() or your migrations"
        )
        return missing, FAILURE
    if isinstance(exc, DatabaseUnreachableError):
        return (
            f"could not reach the database at {where} within {exc.seconds:g} s ({exc.reason}); "
            "check that it is up and the URL is right, or allow longer with --startup-timeout"
        ), FAILURE
    if isinstance(exc, OperationalError):
        return f"could not reach the database at {where}: {first_line(exc)}", FAILURE
    if isinstance(exc, DBAPIError):
        return f"database error on {where}: {first_line(exc)}", FAILURE
    return str(exc), FAILURE
