"""How a failure is told: the exception's type and message, and where it was raised.

An operator reading a failed step needs more than ``str(exc)`` (a ``KeyError`` says only
``'missing'``): the stored error names the type, ``KeyError: 'missing'``, and the journal
row keeps the type apart and a traceback, bounded so that a deep recursion cannot bloat
the table. The engine's own step failures (a result that is not JSON) are told by their
message alone, with the type of the error that caused them.
"""

from __future__ import annotations

import builtins
import traceback
from typing import Final

import attrs

TRACEBACK_LIMIT: Final = 8000
"""Characters kept of a traceback: its end, where the exception was raised."""


class StepFailedError(Exception):
    """Internal: a unit of the step failed; carries the message to record."""


@attrs.frozen(kw_only=True)
class FailureInfo:
    """A failure as it is stored and logged."""

    message: str
    """``Type: text`` (the engine's own failures: their text)."""
    error_type: str
    """The exception's type: its name for a builtin, else ``module.QualName``."""
    traceback: str | None = None


def type_name(exc: BaseException) -> str:
    """``KeyError`` for a builtin, ``myapp.billing.CardDeclined`` for anything else."""
    cls = type(exc)
    if cls.__module__ == builtins.__name__:
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def describe(exc: BaseException) -> str:
    """A one-line failure message: ``Type: text`` (``Type`` alone when there is no text)."""
    text = str(exc).strip()
    if isinstance(exc, StepFailedError):
        return text
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def bounded_traceback(exc: BaseException) -> str:
    """``exc``'s traceback (with its causes), cut to its last :data:`TRACEBACK_LIMIT` chars."""
    text = "".join(traceback.format_exception(exc))
    if len(text) <= TRACEBACK_LIMIT:
        return text
    return "...\n" + text[-TRACEBACK_LIMIT:]


def failure_info(exc: BaseException) -> FailureInfo:
    """Everything stored about ``exc``; an engine failure is typed by what caused it."""
    cause = exc.__cause__ if isinstance(exc, StepFailedError) else None
    return FailureInfo(
        message=describe(exc),
        error_type=type_name(cause if cause is not None else exc),
        traceback=bounded_traceback(exc),
    )
