"""The run-status state machine: every legal move is a row of data.

Rules:
- ``RUN_TRANSITIONS`` maps (status, event) to the next status. A pair that is not in the
  table is illegal, and :func:`next_status` raises :class:`IllegalTransition` for it.
- The engine decides a status change only through :func:`next_status`, so it can never
  write an illegal transition.
- ``completed``, ``failed`` and ``canceled`` are terminal: no event leaves them.
"""

from __future__ import annotations

import enum
from typing import Final

from durable_sa.errors import IllegalTransition


class RunStatus(enum.StrEnum):
    """Where a run is in its life. Members compare equal to their lower-case names."""

    PENDING = "pending"
    RUNNING = "running"
    SUSPENDED = "suspended"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_terminal(self) -> bool:
        """True for statuses no event can leave."""
        return self in TERMINAL_STATUSES


class RunEvent(enum.StrEnum):
    """What happened to a run; together with its status it selects the next status."""

    BEGIN = "begin"  # a pending run starts executing
    PROGRESS = "progress"  # a step finished, slept or is retried; the run keeps running
    SUSPEND = "suspend"  # the run parks on a signal, an agent or a child
    WAKE = "wake"  # a signal, a resume or a child's result arrives
    COMPLETE = "complete"  # past the last step
    ROLLBACK = "rollback"  # a step failed for good and there is something to undo
    UNDO = "undo"  # one compensation unit was recorded; rollback goes on
    FAIL = "fail"  # nothing (more) to undo: the run ends failed
    CANCEL = "cancel"  # someone canceled the run


TERMINAL_STATUSES: Final = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELED})

_S = RunStatus
_E = RunEvent

RUN_TRANSITIONS: Final[dict[tuple[RunStatus, RunEvent], RunStatus]] = {
    (_S.PENDING, _E.BEGIN): _S.RUNNING,
    (_S.RUNNING, _E.PROGRESS): _S.RUNNING,
    (_S.RUNNING, _E.SUSPEND): _S.SUSPENDED,
    (_S.SUSPENDED, _E.WAKE): _S.RUNNING,
    (_S.RUNNING, _E.COMPLETE): _S.COMPLETED,
    (_S.RUNNING, _E.ROLLBACK): _S.COMPENSATING,
    (_S.SUSPENDED, _E.ROLLBACK): _S.COMPENSATING,
    (_S.COMPENSATING, _E.UNDO): _S.COMPENSATING,
    (_S.RUNNING, _E.FAIL): _S.FAILED,
    (_S.SUSPENDED, _E.FAIL): _S.FAILED,
    (_S.COMPENSATING, _E.FAIL): _S.FAILED,
    (_S.PENDING, _E.CANCEL): _S.CANCELED,
    (_S.RUNNING, _E.CANCEL): _S.CANCELED,
    (_S.SUSPENDED, _E.CANCEL): _S.CANCELED,
    (_S.COMPENSATING, _E.CANCEL): _S.CANCELED,
}


def next_status(current: RunStatus | str, event: RunEvent) -> RunStatus:
    """The status a run in ``current`` moves to on ``event``.

    Raises:
        IllegalTransition: the table has no such move.

    """
    status = RunStatus(current)
    try:
        return RUN_TRANSITIONS[status, event]
    except KeyError:
        msg = f"a {status.value} run cannot take the {event.value!r} event"
        raise IllegalTransition(msg) from None


def can_take(current: RunStatus | str, event: RunEvent) -> bool:
    """True when ``event`` is legal for a run in ``current``."""
    return (RunStatus(current), event) in RUN_TRANSITIONS


LEGAL_MOVES: Final = frozenset((src, dst) for (src, _event), dst in RUN_TRANSITIONS.items())
"""Every (before, after) pair some event produces; derived from the table."""


def is_legal_move(before: RunStatus | str, after: RunStatus | str) -> bool:
    """True when some event moves ``before`` to ``after`` (or they are equal and legal)."""
    return (RunStatus(before), RunStatus(after)) in LEGAL_MOVES
