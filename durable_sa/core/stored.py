"""A JSON value as the database will give it back, computed without asking it.

Why: a loop's ``until`` and ``feedback`` see the iteration's result just computed, while
after a crash they see the one read from the journal. Both must be the same value, or a
loop may branch differently on a retry. SQLite stores the serializer's text, so the
value read back is ``deserialize(serialize(value))``, except that a column declared
``JSON`` has NUMERIC affinity: a whole value that is a number is stored as a number,
an integer when it has no fraction (``2.0`` and ``-0.0`` come back as ``2`` and ``0``)
and a float when it does not fit 64 bits. PostgreSQL's JSONB keeps no text:
it orders object keys by their length in bytes, then bytewise; keeps the last of
duplicate keys; and stores numbers as ``numeric``, printed with the scale of their
literal (``1e16`` comes back as ``10000000000000000``, an integer, ``1.50`` as ``1.50``,
``-0.0`` as ``0.0``). :func:`jsonb_form` rebuilds the text JSONB prints and hands it
to the same deserializer a read uses. A test holds it to the real server.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from decimal import Decimal
from typing import Final, TypeAlias

from durable_sa.core.codec import JSONValue

StoredForm: TypeAlias = Callable[[JSONValue], object]
"""Maps a value to what reading it back from the database gives."""


def as_is(value: JSONValue) -> object:
    """The stored form when nothing is stored (no database: the value itself)."""
    return value


def text_form(
    serialize: Callable[[object], str], deserialize: Callable[[str], object]
) -> StoredForm:
    """The stored form on a database that keeps the serializer's text (SQLite)."""

    def stored(value: JSONValue) -> object:
        text = serialize(value)
        number = _sqlite_number(text)
        return deserialize(text) if number is None else number

    return stored


_INT64: Final = range(-(2**63), 2**63)


def _sqlite_number(text: str) -> int | float | None:
    """What a NUMERIC-affinity column makes of ``text``: a number, or ``None`` (text)."""
    literal = text.strip()
    try:
        whole = int(literal)
    except ValueError:
        pass
    else:
        return whole if whole in _INT64 else float(whole)
    try:
        number = float(literal)
    except ValueError:
        return None
    if not math.isfinite(number) or literal.lower().lstrip("+-").startswith(("inf", "nan")):
        return None
    if number.is_integer() and -(2.0**63) <= number < 2.0**63:
        return int(number)
    return number


def jsonb_form(
    serialize: Callable[[object], str], deserialize: Callable[[str], object]
) -> StoredForm:
    """The stored form in a PostgreSQL ``jsonb`` column."""

    def stored(value: JSONValue) -> object:
        parsed = json.loads(
            serialize(value),
            parse_int=_Number,
            parse_float=_Number,
            object_pairs_hook=dict,  # the last of duplicate keys wins, as in JSONB
        )
        return deserialize(_jsonb_text(parsed))

    return stored


class _Number(str):
    """A number's literal, kept as the server parses it (``numeric``), not as a float."""

    __slots__ = ()


def _jsonb_text(value: object) -> str:
    if isinstance(value, dict):
        keys = sorted(value, key=lambda key: (len(key.encode()), key.encode()))
        return "{" + ", ".join(f"{json.dumps(k)}: {_jsonb_text(value[k])}" for k in keys) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_jsonb_text(item) for item in value) + "]"
    if isinstance(value, _Number):
        return _numeric(value)
    return json.dumps(value)


def _numeric(literal: str) -> str:
    """How PostgreSQL's ``numeric`` prints a JSON number literal.

    Fixed point, with the literal's scale (digits after the point, less the exponent),
    and no negative zero.
    """
    number = Decimal(literal)
    scale = max(0, -int(number.as_tuple().exponent))
    text = f"{number:.{scale}f}"
    return text.removeprefix("-") if number.is_zero() else text
