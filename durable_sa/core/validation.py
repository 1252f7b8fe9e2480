"""The checks a workflow definition passes while it is declared, before it can run.

Every mistake that can be seen while a workflow is being declared raises
:class:`DefinitionError` there and then, with a message naming the step and the
argument, never later inside a worker. The builder methods of
:class:`~durable_sa.core.workflow.DurableWorkflow` call these.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Final

from durable_sa.core.backoff import BACKOFF_STRATEGIES
from durable_sa.core.codec import JSONValue, to_json
from durable_sa.core.keys import RESERVED_PREFIX
from durable_sa.core.steps import ParallelEntry
from durable_sa.core.units import RESERVED_ENTRY_NAME, attempt_unit, compensate_unit
from durable_sa.errors import DefinitionError, PayloadError

NAME_LIMIT: Final = 255
"""Characters in a workflow or signal name (the ``workflow_name`` and ``awaiting_signal``
columns)."""
UNIT_ID_LIMIT: Final = 512
"""Characters in a journal unit id (``step``, ``step#entry``, ``step#iter<i>``,
``step#compensate``, ``step#attempt<n>``), which is also the room for a step name
elsewhere."""
STEP_NAME_LIMIT: Final = UNIT_ID_LIMIT - len(compensate_unit(""))
"""A step's name leaves room for the ``#compensate`` row of its rollback."""
MAX_DURATION: Final = timedelta(days=365 * 1000)
"""The longest sleep or signal timeout: a deadline must stay a date every database and
Python itself can hold, whenever the step is reached."""


def check_text(value: str, what: str, *, limit: int) -> None:
    """Text the database can store: at most ``limit`` characters, no NUL, valid UTF-8.

    Raises:
        DefinitionError: ``value`` is too long, holds NUL or a lone surrogate.

    """
    if len(value) > limit:
        msg = f"{what} is {len(value)} characters long; at most {limit} fit in its column"
        raise DefinitionError(msg)
    if "\x00" in value:
        msg = f"{what} must not contain the NUL character (PostgreSQL cannot store it)"
        raise DefinitionError(msg)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        msg = f"{what} {value!r} holds a lone surrogate, which is not valid UTF-8"
        raise DefinitionError(msg) from None


def check_name(name: object, what: str, *, limit: int = NAME_LIMIT) -> None:
    """A step, entry, signal or workflow name: non-empty, storable, no ``#``, not reserved."""
    if not isinstance(name, str) or not name.strip():
        msg = f"{what} must be a non-empty string, not {name!r}"
        raise DefinitionError(msg)
    check_text(name, f"{what} {name[:40]!r}", limit=limit)
    if "#" in name:
        msg = f"{what} {name!r} must not contain '#': the journal uses it for sub-units"
        raise DefinitionError(msg)
    if name.startswith(RESERVED_PREFIX):
        msg = f"{what} {name!r} must not start with {RESERVED_PREFIX!r} (reserved)"
        raise DefinitionError(msg)


def check_callable(value: object, what: str) -> None:
    """A handler, resolver or hook: something that can be called."""
    if not callable(value):
        msg = f"{what} must be callable, not {type(value).__name__}"
        raise DefinitionError(msg)


def check_optional_callable(value: object, what: str) -> None:
    """:func:`check_callable`, unless ``value`` is ``None``."""
    if value is not None:
        check_callable(value, what)


def check_retries(name: str, max_retries: object, retry_backoff: object) -> None:
    """A step's retry options: a total of attempts >= 1 and a known backoff."""
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 1:
        msg = (
            f"step {name!r}: max_retries counts total attempts and must be an integer "
            f">= 1, not {max_retries!r}"
        )
        raise DefinitionError(msg)
    if retry_backoff not in BACKOFF_STRATEGIES:
        msg = (
            f"step {name!r}: retry_backoff must be 'exponential' or 'linear', not {retry_backoff!r}"
        )
        raise DefinitionError(msg)
    last_attempt = attempt_unit(name, max_retries - 1)  # the last retried one has a row
    if len(last_attempt) > UNIT_ID_LIMIT:
        msg = (
            f"step {name[:40]!r}: with max_retries={max_retries}, the id of its failed attempt "
            f"{last_attempt[-20:]!r} is {len(last_attempt)} characters, over the "
            f"{UNIT_ID_LIMIT} its journal column holds; shorten the name or allow fewer"
        )
        raise DefinitionError(msg)


def check_duration(value: object, what: str, *, allow_zero: bool = False) -> timedelta:
    """A ``timedelta`` or a finite number of seconds, positive: as a ``timedelta``."""
    if isinstance(value, timedelta):
        delta = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            msg = f"{what} must be finite, not {value!r}"
            raise DefinitionError(msg)
        try:
            delta = timedelta(seconds=value)
        except OverflowError:
            msg = f"{what} must be at most {MAX_DURATION.days // 365} years, not {value!r} seconds"
            raise DefinitionError(msg) from None
    else:
        msg = f"{what} must be a timedelta or a number of seconds, not {type(value).__name__}"
        raise DefinitionError(msg)
    zero = timedelta(0)
    if delta < zero or (delta == zero and not allow_zero):
        sign = "zero or more" if allow_zero else "positive"
        msg = f"{what} must be {sign}, not {delta.total_seconds():g} seconds"
        raise DefinitionError(msg)
    if delta > MAX_DURATION:
        msg = f"{what} must be at most {MAX_DURATION.days // 365} years, not {delta}"
        raise DefinitionError(msg)
    return delta


def check_default(value: object, what: str) -> JSONValue:
    """A value stored as a step's result: JSON (``None`` included), checked now, not later.

    Raises:
        DefinitionError: ``value`` is not JSON-serializable.

    """
    try:
        return to_json(value, what=what)
    except PayloadError as exc:
        raise DefinitionError(str(exc)) from None


def check_entries(value: object, what: str) -> list[object]:
    """A parallel step's entries: a list (not a string or a mapping)."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        msg = f"{what}: entries must be a list of ParallelEntry or (name, handler) tuples"
        raise DefinitionError(msg)
    return list(value)


def check_entry(step_name: str, raw: object) -> ParallelEntry:
    """One parallel entry, from a :class:`ParallelEntry` or a tuple, checked."""
    what = f"parallel {step_name!r}"
    if isinstance(raw, ParallelEntry):
        entry = raw
    elif isinstance(raw, tuple) and len(raw) in (2, 3):
        entry = ParallelEntry(*raw)
    else:
        msg = f"{what}: each entry must be a ParallelEntry or a (name, handler) tuple, not {raw!r}"
        raise DefinitionError(msg)
    check_name(entry.name, f"{what}: entry name", limit=UNIT_ID_LIMIT - len(step_name) - 1)
    if RESERVED_ENTRY_NAME.fullmatch(entry.name):
        msg = (
            f"{what}: entry name {entry.name!r} is the name of one of the step's own journal "
            "units (compensate, route, iter<n>, attempt<n>); choose another"
        )
        raise DefinitionError(msg)
    check_callable(entry.handler, f"{what}: entry {entry.name!r} handler")
    check_optional_callable(entry.compensate, f"{what}: entry {entry.name!r} compensate")
    return entry
