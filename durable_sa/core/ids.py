"""Run ids as callers hand them in, checked against the id column's range before a query.

An id outside ``1 .. 2**63 - 1`` cannot name a run, so it gets the same answer as any
other unknown id (:class:`RunNotFoundError`) instead of a driver's overflow error; a
value that is not an integer at all is a mistake in the call (:class:`InvalidArgumentError`).
"""

from __future__ import annotations

from typing import Final

from durable_sa.errors import InvalidArgumentError, RunNotFoundError

MAX_RUN_ID: Final = 2**63 - 1
"""The largest value of a ``BIGINT`` id column (runs, jobs, dead letters)."""


def id_in_range(value: object, what: str = "a run id") -> int | None:
    """``value`` when an id column can hold it; ``None`` when no row can have it.

    Raises:
        InvalidArgumentError: ``value`` is not an integer.

    """
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"{what} is an integer, not {type(value).__name__} {value!r}"
        raise InvalidArgumentError(msg)
    return value if 1 <= value <= MAX_RUN_ID else None


def checked_run_id(value: object) -> int:
    """``value`` as a run id that can exist.

    Raises:
        InvalidArgumentError: ``value`` is not an integer.
        RunNotFoundError: it is outside the id column's range.

    """
    run_id = id_in_range(value)
    if run_id is None:
        raise RunNotFoundError(value)
    return run_id
