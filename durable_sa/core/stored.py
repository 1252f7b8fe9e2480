"""A JSON value as the database will give it back, computed without asking it.

Why: a loop's ``until`` and ``feedback`` see the iteration's result just computed, while
after a crash they see the one read from the journal. Both must be the same value, or a
loop may branch differently on a retry. SQLite stores the serializer's text, so the
value read back is ``deserialize(serialize(value))``, except that a column declared
``JSON`` has NUMERIC affinity: a whole value that is a number is stored as a number,
an integer when it has no fraction (``2.0`` and ``-0.0`` come back as ``2`` and ``0``)
and a float when it does not fit 64 bits; a number inside an object or a list is text
and keeps its form. PostgreSQL's columns are ``json``, which keeps the serializer's text
exactly (:func:`exact_form`); they were JSONB, which keeps no text (``1e16`` came back
an integer, ``-0.0`` as ``0.0``, keys reordered), until the storage type was changed so
that a result reads back as it was written. A test holds each form to the real server.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final, TypeAlias

from durable_sa.core.codec import JSONValue

StoredForm: TypeAlias = Callable[[JSONValue], object]
"""Maps a value to what reading it back from the database gives."""


def as_is(value: JSONValue) -> object:
    """The stored form when nothing is stored (no database: the value itself)."""
    return value


def exact_form(
    serialize: Callable[[object], str], deserialize: Callable[[str], object]
) -> StoredForm:
    """The stored form on a database that keeps the serializer's text as is (PostgreSQL)."""

    def stored(value: JSONValue) -> object:
        return deserialize(serialize(value))

    return stored


def text_form(
    serialize: Callable[[object], str], deserialize: Callable[[str], object]
) -> StoredForm:
    """The stored form on SQLite: the serializer's text, but a bare number is a number."""

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
