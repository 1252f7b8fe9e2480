"""What a worker counts: job outcomes, and how well its pipeline groups commits.

Counters, updated by the worker's threads and read freely from any other (a monitoring
thread, a test, the worker's presence row).
"""

from __future__ import annotations

import collections

import attrs

from durable_sa.results import JobOutcome


@attrs.define
class PipelineStats:
    """How well grouping works (read freely from other threads)."""

    claims: int = 0
    claimed: int = 0
    commits: int = 0
    writes: int = 0
    claim_seconds: collections.deque[float] = attrs.field(
        factory=lambda: collections.deque(maxlen=1000)
    )
    """How long the latest claims took (the statement's round trip and commit)."""


@attrs.define
class WorkerStats:
    """Counts since the worker started (read them from another thread freely)."""

    claimed: int = 0
    """Jobs claimed from the queue (a run's next step handed on in place is not one)."""
    applied: int = 0
    stale: int = 0
    dead_lettered: int = 0
    released: int = 0
    deferred: int = 0
    """Jobs given back unrun: their run's definition version is not in this process."""
    abandoned: int = 0
    errors: int = 0

    def count(self, outcome: JobOutcome) -> None:
        """Count one finished job by its outcome."""
        if outcome is JobOutcome.APPLIED:
            self.applied += 1
        elif outcome is JobOutcome.STALE:
            self.stale += 1
        elif outcome is JobOutcome.DEAD_LETTERED:
            self.dead_lettered += 1
        elif outcome is JobOutcome.DEFERRED:
            self.deferred += 1
        else:
            self.released += 1

    def count_claimed(self, count: int) -> None:
        """Count ``count`` jobs claimed from the queue."""
        self.claimed += count
