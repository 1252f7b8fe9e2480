"""The database URL as the user typed it: read it, or refuse it without showing its password.

Rules:
- SQLAlchemy's :func:`~sqlalchemy.make_url` ends a password at its FIRST ``@``. In
  ``postgresql://u:p@ss@db.example/app`` the password is read as ``p`` and ``ss`` becomes
  part of the host, so every message about that host (ours, or the driver's "cannot
  resolve host") would print a piece of the real password. A URL with a password and
  more than one ``@`` after it is therefore refused before it is parsed: only
  percent-encoding (``@`` as ``%40``) makes it mean one thing.
- A URL that cannot be parsed (a port that is not a number, such as ``:abc``) is a
  usage error in one line, not the ``ValueError`` SQLAlchemy raises.
- Every message here shows the URL through :func:`masked`: everything between
  ``user:`` and the last ``@`` is hidden, which covers the password however it was
  typed (``:`` and ``/`` included). A URL that cannot be parsed at all is not shown.
"""

from __future__ import annotations

import re
from typing import Final

import sqlalchemy as sa
from sqlalchemy.exc import ArgumentError

from durable_sa.cli.errors import USAGE, CliError

_WITH_PASSWORD: Final = re.compile(r"(?P<keep>[\w+]+://[^:/]*:)(?P<rest>.*)", re.DOTALL)
"""``scheme://user:`` and what follows, as SQLAlchemy reads a URL that has a password."""

ENCODING_HINT: Final = "percent-encode it (@ as %40, : as %3A, / as %2F)"


def password_text(text: str) -> str | None:
    """The password part of ``text`` as typed, between ``user:`` and the last ``@``."""
    match = _WITH_PASSWORD.fullmatch(text)
    if match is None or "@" not in match["rest"]:
        return None
    return match["rest"].rpartition("@")[0]


def masked(text: str) -> str:
    """``text`` for an error message, hiding anything that may be a password.

    With ``user:`` and an ``@``, everything up to the last ``@`` is ``***``. With a
    ``:`` but no ``@`` (``postgresql://u:secret/db``, a forgotten ``@``), everything
    after the scheme is, since SQLAlchemy cannot tell the password from a port.
    """
    match = _WITH_PASSWORD.fullmatch(text)
    if match is None:
        return text
    if "@" in match["rest"]:
        return f"{match['keep']}***@{match['rest'].rpartition('@')[2]}"
    return f"{text.partition('://')[0]}://***"


def read_url(text: str) -> sa.URL:
    """``text`` as a SQLAlchemy URL, or a one-line usage error that shows no password.

    Raises:
        CliError: the password holds an unencoded ``@``, or the URL cannot be parsed.

    """
    match = _WITH_PASSWORD.fullmatch(text)
    if match is not None and match["rest"].count("@") > 1:
        msg = (
            f"bad database URL {masked(text)}: it has more than one '@' after the user name, "
            f"so where the password ends is unclear; {ENCODING_HINT}"
        )
        raise CliError(msg, USAGE)
    try:
        return sa.make_url(text)
    except ArgumentError:  # not shown: an unparsable URL may be a password with a typo
        msg = (
            "bad database URL: expected dialect+driver://user:password@host:port/database "
            "(such as postgresql+psycopg://app@127.0.0.1:5432/app or sqlite:///app.db)"
        )
        raise CliError(msg, USAGE) from None
    except ValueError:  # SQLAlchemy's int(port)
        msg = (
            f"bad database URL {masked(text)}: the port must be a number (such as 5432); "
            f"if the password holds '@', ':' or '/', {ENCODING_HINT}"
        )
        raise CliError(msg, USAGE) from None
