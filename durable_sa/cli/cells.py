"""Table cells: how one value becomes one short line, and how cells line up.

Rules:
- A cell is one line: newlines and runs of spaces collapse to one space.
- A value too long for its column is cut at a word boundary and ends in ``…``; only a
  single word longer than half the column is cut inside it. A table never cuts silently:
  a :class:`Cells` remembers whether it cut anything, and the table that used it says
  in its footer how to see the whole value (``status ID``, ``dead-letters show ID``,
  ``--json``).
- Times are shown in UTC, to the second, with a ``Z``; a missing value is ``-``.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import attrs

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

NONE: Final = "-"
ELLIPSIS: Final = "…"
CELL_WIDTH: Final = 60
"""The widest a free-text cell (a result, an error, a note) is printed."""

_SPACES = re.compile(r"\s+")


def when(value: datetime | None) -> str:
    """A timestamp as ``2024-05-01 12:00:00Z`` (UTC), or ``-``."""
    if value is None:
        return NONE
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def fit(value: object, width: int = CELL_WIDTH) -> tuple[str, bool]:
    """``value`` on one line in at most ``width`` characters, and whether it was cut.

    Strings are shown as they are, other values as JSON. A cut ends at the last space
    that leaves at least half the width, else inside the word, and adds ``…``.
    """
    if value is None:
        return NONE, False
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = _SPACES.sub(" ", text).strip()
    if len(text) <= width:
        return text, False
    room = width - len(ELLIPSIS)
    head = text[:room]
    if text[room] != " ":  # the cut falls inside a word: go back to the space before it
        space = head.rfind(" ")
        if space >= room // 2:
            head = head[:space]
    return head.rstrip() + ELLIPSIS, True


def short(value: object, width: int = CELL_WIDTH) -> str:
    """``value`` on one line and at most ``width`` characters (see :func:`fit`)."""
    return fit(value, width)[0]


@attrs.define
class Cells:
    """Makes a table's cells and remembers whether any was cut (for its footer)."""

    cut: bool = False

    def __call__(self, value: object, width: int = CELL_WIDTH) -> str:
        """``value`` as a cell (see :func:`fit`)."""
        text, was_cut = fit(value, width)
        self.cut = self.cut or was_cut
        return text


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], indent: str = "") -> list[str]:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    body = [list(row) for row in rows]
    widths = [max(len(cell) for cell in column) for column in zip(headers, *body, strict=True)]
    lines = []
    for row in [list(headers), *body]:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        lines.append(indent + "  ".join([*cells, row[-1]]).rstrip())
    return lines
