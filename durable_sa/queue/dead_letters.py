"""Dead letters, shared by every backend: jobs that could not run, kept in the database.

Whatever carries the jobs (the jobs table, or a broker behind the outbox), a job that is
dead-lettered lands in ``durable_dead_letters`` with its error, so ``durable-sa
dead-letters`` and ``requeue`` work the same for every backend. Each backend only
decides where a requeued job goes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
from sqlalchemy import delete, insert, select

from durable_sa.errors import InvalidArgumentError
from durable_sa.store.models import dead_letters_table, runs_table

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from durable_sa.queue.protocol import ClaimedJob


@attrs.frozen(kw_only=True)
class Requeued:
    """A dead letter taken back out, with what a fresh job of it needs."""

    queue: str
    kind: str
    run_id: int
    workflow_name: str
    workflow_version: str | None
    payload: Any


def record(session: Session, job: ClaimedJob, *, error: str) -> None:
    """Insert ``job`` into the dead letters with ``error`` (the caller removes the job)."""
    session.execute(
        insert(dead_letters_table).values(
            job_id=job.id,
            queue=job.queue,
            kind=job.kind,
            run_id=job.run_id,
            payload=job.payload,
            attempts=job.attempts,
            error=error,
        )
    )


def take(session: Session, dead_letter_id: int) -> Requeued | None:
    """Delete dead letter ``dead_letter_id`` and return it, ``None`` if it or its run is gone.

    A dead letter whose run was deleted is removed too: there is nothing left to drive.

    Raises:
        InvalidArgumentError: the dead letter names no run (an unreadable broker message):
            it is kept, for the operator to read.

    """
    row = (
        session.execute(select(dead_letters_table).where(dead_letters_table.c.id == dead_letter_id))
        .mappings()
        .first()
    )
    if row is None:
        return None
    if row["run_id"] is None:
        msg = (
            f"dead letter {dead_letter_id} is a {row['kind']} message that names no run, so "
            "it cannot be requeued; read its payload and error, then start the work again"
        )
        raise InvalidArgumentError(msg)
    session.execute(delete(dead_letters_table).where(dead_letters_table.c.id == dead_letter_id))
    run = (
        session.execute(
            select(runs_table.c.workflow_name, runs_table.c.workflow_version).where(
                runs_table.c.id == row["run_id"]
            )
        )
        .mappings()
        .first()
    )
    if run is None:
        return None
    return Requeued(
        queue=row["queue"],
        kind=row["kind"],
        run_id=int(row["run_id"]),
        workflow_name=run["workflow_name"],
        workflow_version=run["workflow_version"],
        payload=row["payload"],
    )
