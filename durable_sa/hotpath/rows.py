"""What the fast lane reads and writes, as plain values shared by both dialects."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import attrs

from durable_sa.core.jobs import AdvanceJob, JobPayload, encode_payload
from durable_sa.core.snapshot import RunSnapshot
from durable_sa.core.transition import Transition
from durable_sa.queue.protocol import ClaimedJob
from durable_sa.store.queries import RUN_COLUMNS, snapshot_from_row


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


@attrs.frozen
class ClaimQuery:
    """A worker's claim: the store's statement and the worker's filters."""

    sql: str
    worker: str
    lease: timedelta
    queues: Sequence[str] | None
    workflows: Mapping[str, str]
    """Workflow name → definition version: only jobs of these are claimed."""


def job_payload(payload: JobPayload) -> dict[str, Any]:
    """The stored JSON of a job payload (the general codec for anything unusual)."""
    if type(payload) is AdvanceJob:
        return {
            "run_id": payload.run_id,
            "step_index": payload.step_index,
            "attempt": payload.attempt,
        }
    return encode_payload(payload)


RUN_FIELDS: Final = tuple(column.name for column in RUN_COLUMNS)
"""The run columns every store reads with a claim, in this order (``id`` first)."""
WAKE_AT: Final = RUN_FIELDS.index("wake_at")


def run_snapshot(values: Sequence[Any]) -> RunSnapshot:
    """A run read as :data:`RUN_FIELDS`, built as the general path's reader builds it.

    The values must already be Python types (parsed JSON, aware datetimes).
    """
    return snapshot_from_row(dict(zip(RUN_FIELDS, values, strict=True)))
