"""Reading runs and journals into core values; locking a run for a decision.

Rules:
- :func:`lock_run` is the first statement of every decision's transaction. On PostgreSQL
  it is ``SELECT ... FOR UPDATE``; on SQLite, which locks the whole database, it is an
  ``UPDATE ... RETURNING`` so the write lock is taken at once (waiting out the busy
  timeout) instead of failing later on a lock upgrade.
- Reads outside a decision (Phase A) hold no lock, so a handler can write to the same
  database through its own connection while it runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import bindparam, select, update

from durable_sa.core.snapshot import JournalRecord, JournalStatus, RunSnapshot, WaitKind
from durable_sa.core.status import RunStatus
from durable_sa.store.models import journal_table, runs_table

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from sqlalchemy.orm import Session

runs = runs_table
journal = journal_table

RUN_COLUMNS = (
    runs.c.id,
    runs.c.workflow_name,
    runs.c.workflow_version,
    runs.c.status,
    runs.c.current_step,
    runs.c.total_steps,
    runs.c.attempt,
    runs.c.compensation_cursor,
    runs.c.input,
    runs.c.state,
    runs.c.result,
    runs.c.parent_run_id,
    runs.c.parent_step_id,
    runs.c.awaiting_signal,
    runs.c.wait_kind,
    runs.c.wait_step,
    runs.c.resume_data,
    runs.c.wake_at,
    runs.c.error,
    runs.c.revision,
    runs.c.concurrency_key,
    runs.c.priority,
    runs.c.limited,
    runs.c.begin_at,
    runs.c.trace_context,
)


def snapshot_from_row(m: Mapping[Any, Any]) -> RunSnapshot:
    """Build a :class:`RunSnapshot` from a row mapping holding :data:`RUN_COLUMNS`."""
    return RunSnapshot(
        id=int(m["id"]),
        workflow_name=m["workflow_name"],
        workflow_version=m["workflow_version"],
        status=RunStatus(m["status"]),
        current_step=int(m["current_step"]),
        total_steps=int(m["total_steps"]),
        attempt=int(m["attempt"]),
        compensation_cursor=m["compensation_cursor"],
        input=dict(m["input"] or {}),
        state=dict(m["state"] or {}),
        result=m["result"],
        parent_run_id=m["parent_run_id"],
        parent_step_id=m["parent_step_id"],
        awaiting_signal=m["awaiting_signal"],
        wait_kind=None if m["wait_kind"] is None else WaitKind(m["wait_kind"]),
        wait_step=m["wait_step"],
        resume_data=m["resume_data"],
        wake_at=m["wake_at"],
        error=m["error"],
        revision=int(m["revision"]),
        concurrency_key=m.get("concurrency_key"),
        priority=int(m.get("priority") or 0),
        limited=bool(m.get("limited")),
        begin_at=m.get("begin_at"),
        trace_context=m.get("trace_context"),
    )


_RUN_BY_ID: Final = select(*RUN_COLUMNS).where(runs.c.id == bindparam("run_id"))
_LOCK_RUN: Final = _RUN_BY_ID.with_for_update()
_LOCK_RUN_SQLITE: Final = (
    update(runs)
    .where(runs.c.id == bindparam("run_id"))
    .values(updated_at=runs.c.updated_at)
    .returning(*RUN_COLUMNS)
)
_JOURNAL_OF_RUN: Final = select(
    journal.c.step_id, journal.c.status, journal.c.result, journal.c.error, journal.c.attempt
).where(journal.c.run_id == bindparam("run_id"))


def load_run(session: Session, run_id: int) -> RunSnapshot | None:
    """The run as it is now, without a lock (``None`` if there is no such run)."""
    row = session.connection().execute(_RUN_BY_ID, {"run_id": run_id}).mappings().first()
    return None if row is None else snapshot_from_row(row)


def lock_run(session: Session, run_id: int) -> RunSnapshot | None:
    """Lock the run row for the rest of the transaction and read it."""
    conn = session.connection()
    stmt = _LOCK_RUN_SQLITE if conn.dialect.name == "sqlite" else _LOCK_RUN
    row = conn.execute(stmt, {"run_id": run_id}).mappings().first()
    return None if row is None else snapshot_from_row(row)


def load_runs(session: Session, run_ids: Sequence[int]) -> list[RunSnapshot]:
    """Several runs, by id order (missing ids are skipped)."""
    if not run_ids:
        return []
    rows = (
        session.connection()
        .execute(select(*RUN_COLUMNS).where(runs.c.id.in_(list(run_ids))).order_by(runs.c.id))
        .mappings()
    )
    return [snapshot_from_row(row) for row in rows]


def child_ids(session: Session, parent_ids: Sequence[int]) -> list[int]:
    """Ids of the direct children of ``parent_ids``, oldest first."""
    if not parent_ids:
        return []
    rows = session.connection().execute(
        select(runs.c.id).where(runs.c.parent_run_id.in_(list(parent_ids))).order_by(runs.c.id)
    )
    return [int(r) for r in rows.scalars()]


def descendants_by_depth(session: Session, run_id: int) -> list[list[int]]:
    """``run_id`` and its descendants, one list per generation (root first), unlocked."""
    tree = [[run_id]]
    seen = {run_id}
    while True:
        nxt = [c for c in child_ids(session, tree[-1]) if c not in seen]
        if not nxt:
            return tree
        seen.update(nxt)
        tree.append(nxt)


def lock_tree(session: Session, run_id: int) -> list[RunSnapshot]:
    """Lock ``run_id`` and all its descendants; return them root first.

    Locks are taken deepest first, so the order is child before parent, as everywhere
    else. A child started by a parent's step while the tree was being locked is found by
    a second look and locked too.
    """
    tree = descendants_by_depth(session, run_id)
    locked: dict[int, RunSnapshot] = {}
    for generation in reversed(tree):
        for member in generation:
            snapshot = lock_run(session, member)
            if snapshot is not None:
                locked[member] = snapshot
    order = [member for generation in tree for member in generation]
    for child in child_ids(session, order):
        if child not in locked:
            snapshot = lock_run(session, child)
            if snapshot is not None:
                locked[child] = snapshot
                order.append(child)
    return [locked[member] for member in order if member in locked]


def load_journal(session: Session, run_id: int) -> dict[str, JournalRecord]:
    """Every journaled unit of the run, keyed by ``step_id``."""
    rows = session.connection().execute(_JOURNAL_OF_RUN, {"run_id": run_id})
    return {
        row.step_id: JournalRecord(
            step_id=row.step_id,
            status=JournalStatus(row.status),
            result=row.result,
            error=row.error,
            attempt=int(row.attempt),
        )
        for row in rows
    }
