"""The generated parts of ``docs/performance.md``: their markers, and rewriting them.

The page is written by hand but for three parts, each between a pair of markers: the
main table (:data:`TABLE_START`), the relay table (:data:`RELAY_START`) and the mixed
table (:data:`MIXED_START`). A run rewrites only the parts it measured something for;
the rest of the page is left as it is. This is the report's one function with an effect
(:func:`update_docs`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from pathlib import Path

TABLE_START: Final = "<!-- bench:table:start -->"
TABLE_END: Final = "<!-- bench:table:end -->"
RELAY_START: Final = "<!-- bench:relay:start -->"
RELAY_END: Final = "<!-- bench:relay:end -->"
MIXED_START: Final = "<!-- bench:mixed:start -->"
MIXED_END: Final = "<!-- bench:mixed:end -->"


def replace_marked(text: str, block: str, start: str = TABLE_START, end: str = TABLE_END) -> str:
    """``text`` with what lies between the markers ``start`` and ``end`` replaced by ``block``.

    Raises:
        ValueError: if the markers are missing, repeated or out of order.
    """
    if text.count(start) != 1 or text.count(end) != 1:
        msg = f"expected one {start} and one {end}"
        raise ValueError(msg)
    head, rest = text.split(start)
    if end not in rest:
        msg = f"{end} comes before {start}"
        raise ValueError(msg)
    tail = rest.split(end)[1]
    return f"{head}{start}\n{block.strip()}\n{end}{tail}"


def update_docs(page: Path, block: str, start: str = TABLE_START, end: str = TABLE_END) -> None:
    """Rewrite the marked part of ``page``; the rest of the page is left as it is."""
    text = replace_marked(page.read_text(encoding="utf-8"), block, start, end)
    page.write_text(text, encoding="utf-8")
