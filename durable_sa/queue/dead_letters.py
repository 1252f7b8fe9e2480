"""Dead letters, shared by every backend: jobs that could not run, kept in the database.

Whatever carries the jobs (the jobs table, or a broker behind the outbox), a job that is
dead-lettered lands in ``durable_dead_letters`` with its error, so ``durable-sa
dead-letters`` and ``requeue`` work the same for every backend. Each backend only
decides where a requeued job goes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Literal

import attrs
from sqlalchemy import delete, insert, select, update

from durable_sa.errors import InvalidArgumentError
from durable_sa.store.models import dead_letters_table, runs_table

if TYPE_CHECKING:
    from collections.abc import Collection
    from datetime import datetime

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


REQUEUE: Final = "requeue"
RECOVER: Final = "recover"
CANCEL: Final = "cancel"
DISMISS: Final = "dismiss"
"""What resolved a dead letter (``resolved_by``): requeued, its run recovered or
canceled, or dismissed by an operator who dealt with it another way."""


def take(session: Session, dead_letter_id: int, *, now: datetime) -> Requeued | None:
    """Resolve open dead letter ``dead_letter_id`` as requeued and return it.

    ``None`` when there is no such open dead letter, or when its run is gone (the dead
    letter is then deleted: there is nothing left to drive). The row stays, resolved, so
    an operator can still read what happened.

    Raises:
        InvalidArgumentError: the dead letter names no run (an unreadable broker message):
            it is kept, for the operator to read.

    """
    row = (
        session.execute(
            select(dead_letters_table).where(
                dead_letters_table.c.id == dead_letter_id,
                dead_letters_table.c.resolved_at.is_(None),
            )
        )
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
        session.execute(delete(dead_letters_table).where(dead_letters_table.c.id == dead_letter_id))
        return None
    session.execute(
        update(dead_letters_table)
        .where(dead_letters_table.c.id == dead_letter_id)
        .values(resolved_at=now, resolved_by=REQUEUE)
    )
    return Requeued(
        queue=row["queue"],
        kind=row["kind"],
        run_id=int(row["run_id"]),
        workflow_name=run["workflow_name"],
        workflow_version=run["workflow_version"],
        payload=row["payload"],
    )


def resolve_runs(
    session: Session,
    run_ids: Collection[int],
    *,
    by: Literal["recover", "cancel"],
    now: datetime,
) -> None:
    """Resolve the open dead letters of ``run_ids`` as ``by`` (:data:`RECOVER` or :data:`CANCEL`).

    ``recover`` gave each run a job again; a canceled run's work will never be done. Either
    way its dead letters are moot, and the alert on open ones must clear.
    """
    if not run_ids:
        return
    session.execute(
        update(dead_letters_table)
        .where(
            dead_letters_table.c.run_id.in_(list(run_ids)),
            dead_letters_table.c.resolved_at.is_(None),
        )
        .values(resolved_at=now, resolved_by=by)
    )


def dismiss(session: Session, dead_letter_id: int, *, now: datetime) -> bool:
    """Resolve open dead letter ``dead_letter_id`` without requeueing it; whether it was open."""
    result = session.execute(
        update(dead_letters_table)
        .where(
            dead_letters_table.c.id == dead_letter_id,
            dead_letters_table.c.resolved_at.is_(None),
        )
        .values(resolved_at=now, resolved_by=DISMISS)
    )
    return bool(getattr(result, "rowcount", 0))


def open_letters(session: Session, run_ids: Collection[int]) -> dict[int, tuple[int, str]]:
    """The newest open dead letter of each of ``run_ids`` that has one: ``(id, error)``."""
    if not run_ids:
        return {}
    rows = session.execute(
        select(dead_letters_table.c.run_id, dead_letters_table.c.id, dead_letters_table.c.error)
        .where(
            dead_letters_table.c.run_id.in_(list(run_ids)),
            dead_letters_table.c.resolved_at.is_(None),
        )
        .order_by(dead_letters_table.c.id)
    )
    return {int(row.run_id): (int(row.id), row.error) for row in rows}
