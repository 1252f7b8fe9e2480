"""No password is ever shown: what a command knows of its database, and log records.

An :class:`Invocation` remembers the database URL (password hidden) and the password
itself, and scrubs both the URL and conninfo forms and the literal secret out of any
text before it is printed or logged. A password may also sit in the URL's query
(``?password=...``, as libpq allows): it is hidden and scrubbed the same way.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

import attrs

from durable_sa.telemetry.json_logs import JsonFormatter

if TYPE_CHECKING:
    import sqlalchemy as sa

_QUERY_SECRET: Final = re.compile("pass|secret|token", re.IGNORECASE)
"""A query key whose value is a secret: ``password``, ``sslpassword``, ``secret``..."""
_MIN_LITERAL_SECRET: Final = 4  # shorter passwords are scrubbed by the URL patterns only
_SECRET_PATTERNS: Final = (
    # scheme://user:PASSWORD@host, up to the last @ of the word: p@ss@host is all hidden
    re.compile(r"(?P<keep>://[^/:@\s]*:)\S+(?=@)"),
    # conninfo and URL queries: password=..., sslpassword=... (not one already hidden)
    re.compile(
        r"(?P<keep>\b\w*password\s*=\s*)(?!\*\*\*(?:[\s:;,&]|$))('[^']*'|\S+)", re.IGNORECASE
    ),
)


@attrs.define
class Invocation:
    """What an error message needs to know about the command being run."""

    url: str | None = None  # the database URL, password hidden
    secrets: set[str] = attrs.field(factory=set)

    def remember(self, url: sa.URL, typed: str | None = None) -> None:
        """Note ``url`` for messages, and its passwords for scrubbing.

        ``typed`` is the password as the user typed it (percent-encoded or not), also
        scrubbed; the query's password-like values are hidden from :attr:`url` too.
        """
        secrets = [url.password, typed] + [
            value
            for key, values in url.query.items()
            if _QUERY_SECRET.search(key)
            for value in ([values] if isinstance(values, str) else values)
        ]
        for secret in secrets:
            if secret:
                self.secrets.update({str(secret), quote(str(secret), safe="")})
        hidden = {key: "***" for key in url.query if _QUERY_SECRET.search(key)}
        shown = url.update_query_dict(hidden).render_as_string(hide_password=True)
        self.url = shown.replace("=%2A%2A%2A", "=***")  # the query's *** comes out quoted

    def scrub(self, text: str) -> str:
        """``text`` without any password: URL and conninfo forms, then known secrets."""
        for pattern in _SECRET_PATTERNS:
            text = pattern.sub(lambda m: f"{m['keep']}***", text)
        for secret in sorted(self.secrets, key=len, reverse=True):
            if len(secret) >= _MIN_LITERAL_SECRET:  # as a whole word: "postgres" ≠ postgresql
                text = re.sub(rf"(?<![^\W_]){re.escape(secret)}(?![^\W_])", "***", text)
        return text


class ScrubbingFormatter(logging.Formatter):
    """One line per record (time, level, message), with passwords scrubbed out."""

    def __init__(self, inv: Invocation) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(message)s")
        self._inv = inv

    def format(self, record: logging.LogRecord) -> str:
        """The formatted record (and traceback, if any) without a password."""
        return self._inv.scrub(super().format(record))


def configure_logging(level: str, inv: Invocation, log_format: str = "text") -> None:
    """Log records at ``level`` and above to stderr, unless logging is set up already.

    ``log_format="json"``: one JSON object per line, with the records' structured fields
    (:class:`~durable_sa.telemetry.json_logs.JsonFormatter`), passwords scrubbed the same.
    """
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()  # stderr: stdout is for results
        formatter: logging.Formatter = (
            JsonFormatter(scrub=inv.scrub) if log_format == "json" else ScrubbingFormatter(inv)
        )
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level)
