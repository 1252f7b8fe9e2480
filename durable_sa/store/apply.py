"""Applying a :class:`Transition` to the database, inside the caller's transaction.

Rules:
- The run must already be locked in this transaction (:func:`lock_run`); apply writes,
  it never decides. The only decision it triggers is the parent's, when a child settles,
  and that one is made by the core too.
- Order inside the transaction: journal (duplicates ignored), run row (only the columns
  that changed), queued jobs dropped, new jobs, child run, parent settlement. Locks are
  taken child first, then parent, everywhere.
- Nothing here commits: the caller owns the transaction.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import insert, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from durable_sa.core.decide import decide_child_settled
from durable_sa.core.jobs import AdvanceJob, JobSpec
from durable_sa.core.status import RunStatus, is_legal_move
from durable_sa.errors import IllegalTransition
from durable_sa.store.models import journal_table, runs_table
from durable_sa.store.queries import lock_run

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.orm import Session

    from durable_sa.core.snapshot import JournalWrite
    from durable_sa.core.transition import ChildSpawn, Transition
    from durable_sa.queue.protocol import QueueBackend

logger = logging.getLogger(__name__)

runs = runs_table
journal = journal_table

_RUN_FIELDS: Final = (
    "status",
    "current_step",
    "attempt",
    "compensation_cursor",
    "state",
    "result",
    "awaiting_signal",
    "wake_at",
    "error",
)


def apply_transition(
    session: Session,
    transition: Transition,
    *,
    backend: QueueBackend,
    now: datetime,
) -> None:
    """Write ``transition`` in ``session``'s transaction (the run is locked by the caller)."""
    before, after = transition.before, transition.after
    if before.status != after.status and not is_legal_move(before.status, after.status):
        msg = f"run {before.id}: {before.status} → {after.status} is not a legal move"
        raise IllegalTransition(msg)

    write_journal(session, before.id, transition.journal, now=now)

    changes: dict[str, Any] = {
        name: getattr(after, name)
        for name in _RUN_FIELDS
        if getattr(after, name) != getattr(before, name)
    }
    if changes:
        changes["updated_at"] = now
        changes["revision"] = runs.c.revision + 1
        session.execute(update(runs).where(runs.c.id == before.id).values(**changes))

    if transition.drop_jobs:
        backend.discard(session, before.id)
    jobs = list(transition.jobs)
    if transition.spawn is not None:
        jobs.append(spawn_child(session, transition.spawn, now=now))
    backend.enqueue(session, jobs)

    log_transition(transition)

    settled = transition.settle_parent
    if settled is None:
        return
    parent = lock_run(session, settled.parent_run_id)
    if parent is None:
        return
    parent_transition = decide_child_settled(parent, settled, now=now)
    if parent_transition is None:
        return
    apply_transition(session, parent_transition, backend=backend, now=now)


def log_transition(transition: Transition) -> None:
    """Log a applied transition at DEBUG (skipped cheaply when DEBUG is off)."""
    if not logger.isEnabledFor(logging.DEBUG):
        return
    before, after = transition.before, transition.after
    logger.debug(
        "run %s: %s → %s (%s)",
        before.id,
        before.status,
        after.status,
        transition.event,
        extra={"action": str(transition.event), "run_id": before.id},
    )


def write_journal(
    session: Session, run_id: int, writes: tuple[JournalWrite, ...], *, now: datetime
) -> None:
    """INSERT journal rows; a (run_id, step_id) that exists already is left untouched."""
    if not writes:
        return
    rows = [
        {
            "run_id": run_id,
            "step_id": w.step_id,
            "status": str(w.status),
            "result": w.result,
            "error": w.error,
            "attempt": w.attempt,
            "completed_at": now,
        }
        for w in writes
    ]
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        stmt: Any = pg_insert(journal).on_conflict_do_nothing(index_elements=["run_id", "step_id"])
    elif dialect == "sqlite":
        stmt = sqlite_insert(journal).on_conflict_do_nothing(index_elements=["run_id", "step_id"])
    else:  # pragma: no cover - only PostgreSQL and SQLite are supported
        stmt = insert(journal)
    session.execute(stmt, rows)


def spawn_child(session: Session, spawn: ChildSpawn, *, now: datetime) -> JobSpec:
    """INSERT the child run; return its first job (enqueued by the caller)."""
    child_id = session.execute(
        insert(runs)
        .values(
            workflow_name=spawn.workflow_name,
            workflow_version=spawn.workflow_version,
            input=spawn.input,
            status=RunStatus.RUNNING,
            state={},
            current_step=0,
            total_steps=spawn.total_steps,
            attempt=1,
            parent_run_id=spawn.parent_run_id,
            parent_step_id=spawn.parent_step_id,
            created_at=now,
            updated_at=now,
        )
        .returning(runs.c.id)
    ).scalar_one()
    return JobSpec(
        payload=AdvanceJob(run_id=int(child_id), step_index=0),
        available_at=now,
        workflow=spawn.workflow_name,
        version=spawn.workflow_version,
    )
