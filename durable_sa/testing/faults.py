"""The faults a schedule can inject, each a frozen value with a sentence for people.

A schedule is a list of events played in order against one run. Job faults apply to the
next due job (and do nothing when none is due); the others act from outside.

- :class:`Deliver`: the next job runs normally.
- :class:`CrashAfterPhaseA`: the job's handlers run, then the process dies before its
  transaction commits: nothing it decided is kept, and the job is delivered again.
- :class:`CrashAfterCommit`: the job commits, then its acknowledgement is lost, so the
  same job is delivered again later.
- :class:`DuplicateDelivery`: the job is delivered twice, one after the other.
- :class:`ConcurrentDuplicate`: the job is delivered twice at the same time.
- :class:`ClockJump`: time moves forward (past sleeps, backoffs and signal deadlines).
- :class:`Signal`: someone calls ``resume(run_id, name, data)`` now; early, late,
  twice or never, depending on where (and whether) it sits in the schedule.
"""

from __future__ import annotations

import json
from typing import TypeAlias

import attrs

from durable_sa.core.codec import JSONValue


@attrs.frozen
class Deliver:
    """The next job runs normally."""

    def describe(self) -> str:
        """A sentence for people."""
        return "delivered normally"


@attrs.frozen
class CrashAfterPhaseA:
    """Handlers run, then the process dies before the job's transaction commits."""

    def describe(self) -> str:
        """A sentence for people."""
        return "crashed after its handlers ran, before committing (delivered again later)"


@attrs.frozen
class CrashAfterCommit:
    """The job commits, then its acknowledgement is lost: it is delivered again."""

    def describe(self) -> str:
        """A sentence for people."""
        return "committed, then its acknowledgement was lost (delivered again)"


@attrs.frozen
class DuplicateDelivery:
    """The job is delivered twice in a row."""

    def describe(self) -> str:
        """A sentence for people."""
        return "delivered twice, one after the other"


@attrs.frozen
class ConcurrentDuplicate:
    """The job is delivered twice at the same time."""

    def describe(self) -> str:
        """A sentence for people."""
        return "delivered twice at the same time"


@attrs.frozen
class ClockJump:
    """Time jumps forward by ``seconds``."""

    seconds: float

    def describe(self) -> str:
        """A sentence for people."""
        return f"the clock jumped forward {_duration(self.seconds)}"


@attrs.frozen
class Signal:
    """``resume(run_id, name, data)`` is called now."""

    name: str
    data: JSONValue = None

    def describe(self) -> str:
        """A sentence for people."""
        return f"signal {self.name!r} was sent with {json.dumps(self.data)}"


JobFault: TypeAlias = (
    Deliver | CrashAfterPhaseA | CrashAfterCommit | DuplicateDelivery | ConcurrentDuplicate
)
Event: TypeAlias = JobFault | ClockJump | Signal


_UNITS = ((86_400, "day(s)"), (3_600, "hour(s)"), (60, "minute(s)"))


def _duration(seconds: float) -> str:
    for size, name in _UNITS:
        if seconds >= size:
            return f"{seconds / size:g} {name}"
    return f"{seconds:g} s"
