"""No password is ever shown: what a command knows of its database, and log records.

An :class:`Invocation` remembers the database URL (password hidden) and the password
itself, and scrubs both the URL and conninfo forms and the literal secret out of any
text before it is printed or logged.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

import attrs

if TYPE_CHECKING:
    import sqlalchemy as sa

_MIN_LITERAL_SECRET: Final = 4  # shorter passwords are scrubbed by the URL patterns only
_SECRET_PATTERNS: Final = (
    re.compile(r"(?P<keep>://[^/:@\s]*:)[^@\s]+(?=@)"),  # scheme://user:PASSWORD@host
    re.compile(r"(?P<keep>\bpassword\s*=\s*)('[^']*'|\S+)", re.IGNORECASE),  # conninfo
)


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
