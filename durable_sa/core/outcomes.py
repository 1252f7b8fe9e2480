"""What executing one step produced: the step driver's answer, the core's input.

Each outcome is a frozen value and says nothing about *how* it is applied; the pure
functions in :mod:`durable_sa.core.decide` turn it into a transition.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TypeAlias

import attrs

from durable_sa.core.admission import Limits
from durable_sa.core.backoff import Backoff
from durable_sa.core.codec import JSONObject, JSONValue
from durable_sa.core.snapshot import JournalWrite


@attrs.frozen(kw_only=True)
class Advance:
    """The step and all its units completed: journal them and move on."""

    journal: tuple[JournalWrite, ...]
    result_patch: JSONObject


@attrs.frozen(kw_only=True)
class Sleep:
    """A durable timer: journal the step, move on, and wake after ``delay`` or at ``until``."""

    step_name: str
    delay: timedelta | None = None
    until: datetime | None = None


@attrs.frozen(kw_only=True)
class AwaitSignal:
    """Park the run until ``signal`` arrives (or take one already sent, buffered).

    The deadline is ``until`` when given (a timeout decided per run as an instant), else
    ``timeout`` after the decision; none without either.
    """

    step_name: str
    signal: str
    timeout: timedelta | None = None
    until: datetime | None = None


@attrs.frozen(kw_only=True)
class SuspendAgent:
    """A handler returned an agent's suspended run: park until resumed under the step's name."""

    step_name: str
    snapshot: JSONValue


@attrs.frozen(kw_only=True)
class AwaitChild:
    """Start a child run and park until it settles."""

    step_name: str
    child_name: str
    child_version: str | None
    child_total_steps: int
    child_input: JSONObject
    child_on_finish: bool = False
    """The child's workflow has an ``on_finish`` hook."""
    child_limits: Limits | None = None
    """The child's workflow's limits on active runs: the child is counted under them."""


@attrs.frozen(kw_only=True)
class Failed:
    """The step's attempt failed: the units it finished first, and the error.

    Whether the step runs again or the run rolls back is not the driver's call: the core
    decides it (:func:`durable_sa.core.decide.decide_failure`) from the attempt number
    and ``max_attempts``. ``undo_failed_step`` is set when the failed step itself holds
    completed units that can be undone (a parallel step whose other entries finished), so
    a rollback starts there.
    """

    step_name: str
    journal: tuple[JournalWrite, ...]
    failure: str
    """The error as stored on the run and the journal: ``Type: message``."""
    backoff: Backoff
    max_attempts: int
    undo_failed_step: bool = False
    error_type: str | None = None
    """The exception's type, kept apart for queries."""
    traceback: str | None = None
    """Where it was raised (bounded), for the journal row and the worker's log."""


@attrs.frozen(kw_only=True)
class Complete:
    """The run is past its last step."""


StepOutcome: TypeAlias = (
    Advance | Sleep | AwaitSignal | SuspendAgent | AwaitChild | Failed | Complete
)
