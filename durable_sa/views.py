"""Read-only views of runs for people: status snapshots with their children.

Children are loaded level by level (one query per generation), not one query per run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from durable_sa.core.definition import RESERVED_PREFIX
from durable_sa.core.status import RunStatus
from durable_sa.errors import RunNotFoundError
from durable_sa.results import RunStatusSnapshot
from durable_sa.store.models import runs_table

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

runs = runs_table

_COLUMNS = (
    runs.c.id,
    runs.c.workflow_name,
    runs.c.workflow_version,
    runs.c.status,
    runs.c.current_step,
    runs.c.total_steps,
    runs.c.attempt,
    runs.c.compensation_cursor,
    runs.c.state,
    runs.c.result,
    runs.c.parent_run_id,
    runs.c.parent_step_id,
    runs.c.awaiting_signal,
    runs.c.wake_at,
    runs.c.error,
    runs.c.idempotency_key,
    runs.c.created_at,
    runs.c.updated_at,
)


def _snapshot(row: Any) -> RunStatusSnapshot:  # noqa: ANN401 - a result row
    state = row.state or {}
    return RunStatusSnapshot(
        run_id=int(row.id),
        workflow_name=row.workflow_name,
        workflow_version=row.workflow_version,
        status=RunStatus(row.status),
        current_step=int(row.current_step),
        total_steps=int(row.total_steps),
        attempt=int(row.attempt),
        compensation_cursor=row.compensation_cursor,
        awaiting_signal=row.awaiting_signal,
        wake_at=row.wake_at,
        results={k: v for k, v in state.items() if not k.startswith(RESERVED_PREFIX)},
        result=row.result,
        error=row.error,
        parent_run_id=row.parent_run_id,
        parent_step_id=row.parent_step_id,
        idempotency_key=row.idempotency_key,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _attach_children(session: Session, roots: list[RunStatusSnapshot]) -> None:
    level = roots
    while level:
        by_id = {snap.run_id: snap for snap in level}
        rows = session.execute(
            select(*_COLUMNS).where(runs.c.parent_run_id.in_(list(by_id))).order_by(runs.c.id)
        ).all()
        nxt = []
        for row in rows:
            child = _snapshot(row)
            by_id[int(row.parent_run_id)].children.append(child)
            nxt.append(child)
        level = nxt


def run_status(session: Session, run_id: int) -> RunStatusSnapshot:
    """The run ``run_id`` with its descendants.

    Raises:
        RunNotFoundError: no such run.

    """
    row = session.execute(select(*_COLUMNS).where(runs.c.id == run_id)).first()
    if row is None:
        raise RunNotFoundError(run_id)
    snap = _snapshot(row)
    _attach_children(session, [snap])
    return snap


def list_runs(
    session: Session,
    *,
    status: RunStatus | None = None,
    parent_run_id: int | None = None,
    workflow: str | None = None,
    limit: int | None = None,
) -> list[RunStatusSnapshot]:
    """Runs, newest first, with their descendants."""
    stmt = select(*_COLUMNS).order_by(runs.c.id.desc())
    if status is not None:
        stmt = stmt.where(runs.c.status == status)
    if parent_run_id is not None:
        stmt = stmt.where(runs.c.parent_run_id == parent_run_id)
    if workflow is not None:
        stmt = stmt.where(runs.c.workflow_name == workflow)
    if limit is not None:
        stmt = stmt.limit(limit)
    snaps = [_snapshot(row) for row in session.execute(stmt)]
    _attach_children(session, snaps)
    return snaps
