"""What the fast lane reads and writes, as plain values shared by both dialects."""

from __future__ import annotations

from datetime import datetime

import attrs

from durable_sa.core.snapshot import RunSnapshot
from durable_sa.core.transition import Transition
from durable_sa.queue.protocol import ClaimedJob


@attrs.frozen
class Claim:
    """A leased job and, for a job of a live run, the run as it was read with it."""

    job: ClaimedJob
    run: RunSnapshot | None


@attrs.frozen
class StepWrite:
    """One decided transition to apply with compare-and-set on the run's revision."""

    transition: Transition
    job_id: int
    """The finished job, deleted when the write applies."""
    now: datetime
    lease_until: datetime | None
    """Set when the run's next job is due now: it is inserted claimed until then."""


@attrs.frozen
class WriteResult:
    """What a :class:`StepWrite` did."""

    applied: bool
    """False when the run had moved on: nothing was written."""
    next_job_id: int | None = None
    """The id of the next job, inserted claimed by this worker (continue in place)."""
    queued: bool = False
    """True when a job was inserted unclaimed (other workers should look)."""
