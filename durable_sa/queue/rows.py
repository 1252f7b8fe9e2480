"""The column values of a queued job, for the jobs table and the outbox alike.

``durable_jobs`` and ``durable_outbox`` hold a job in the same columns (queue, kind,
run, workflow name and version, payload, attempts, limit, due time), so the jobs table
and every relay backend build their rows here and cannot drift apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Table, insert

from durable_sa.core.jobs import encode_payload
from durable_sa.queue import dead_letters

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.orm import Session

    from durable_sa.core.jobs import JobSpec
    from durable_sa.queue.dead_letters import Requeued


def job_row(spec: JobSpec, *, queue: str, max_attempts: int) -> dict[str, Any]:
    """The row of a new job ``spec`` on ``queue``, no attempt used yet."""
    return {
        "queue": queue,
        "kind": spec.kind,
        "run_id": spec.run_id,
        "workflow_name": spec.workflow,
        "workflow_version": spec.version,
        "payload": encode_payload(spec.payload),
        "attempts": 0,
        "max_attempts": max_attempts,
        "available_at": spec.available_at,
    }


def requeued_row(taken: Requeued, *, max_attempts: int, now: datetime) -> dict[str, Any]:
    """The row of a dead letter put back on its queue: a fresh job, due ``now``."""
    return {
        "queue": taken.queue,
        "kind": taken.kind,
        "run_id": taken.run_id,
        "workflow_name": taken.workflow_name,
        "workflow_version": taken.workflow_version,
        "payload": taken.payload,
        "attempts": 0,
        "max_attempts": max_attempts,
        "available_at": now,
    }


def requeue_into(
    session: Session, table: Table, dead_letter_id: int, *, max_attempts: int, now: datetime
) -> int | None:
    """Take dead letter ``dead_letter_id`` back into ``table`` as a fresh job due ``now``.

    The new row's id, or ``None`` when there is no such dead letter (or its run is gone).
    """
    taken = dead_letters.take(session, dead_letter_id, now=now)
    if taken is None:
        return None
    statement = insert(table).values(requeued_row(taken, max_attempts=max_attempts, now=now))
    return int(session.execute(statement.returning(table.c.id)).scalar_one())


PRODUCER_METHODS: Final = ("enqueue", "enqueue_claimed", "ack", "ack_all", "discard")
"""The methods by which a backend writes its rows, which the applier's group statement
replaces when the backend lets it (``applier_writes_rows``)."""


def overrides_producer(cls: type, base: type) -> bool:
    """True when subclass ``cls`` of ``base`` changes how rows are written.

    The applier must then call its methods for every job, instead of writing the rows
    itself in its group statement.
    """
    return any(getattr(cls, name) is not getattr(base, name) for name in PRODUCER_METHODS)
