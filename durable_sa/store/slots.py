"""The statements that count active runs of workflows with limits (``durable_slots``).

Rules:
- Every statement that reads a count for a decision also locks its row (an upsert or an
  UPDATE ... RETURNING), so two transactions never decide on the same count: at READ
  COMMITTED the second waits for the first to commit and then reads its result. On
  SQLite the first write of a transaction takes the database's write lock, which
  serializes them the same way.
- Rows are locked in one order: the workflow's row (key ``''``) first, then a key's.
  Every transaction that changes a key's count holds its workflow's row, so the
  workflow row alone serializes a workflow's admissions. A transaction that gives back
  places under several workflows (a worker's group commit) takes their workflow rows in
  name order, so two such transactions never wait on each other in a cycle.
- A key's row lives while a run is counted or pending under the key: the statement
  that brings it to zero deletes it instead, under its workflow's row; a start under
  the key creates it again by the upsert that locks it.
- The next pending run is picked ``ORDER BY priority, id`` among the runs whose key has
  room, skipping rows another transaction holds (``FOR UPDATE SKIP LOCKED``: a run
  being canceled).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import (
    and_,
    bindparam,
    case,
    delete,
    exists,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from durable_sa.core.admission import WORKFLOW_KEY, Count
from durable_sa.core.status import RunStatus
from durable_sa.store.models import runs_table, slots_table

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from sqlalchemy import Connection

slots = slots_table
runs = runs_table


def _upsert(dialect: str) -> Any:  # noqa: ANN401 - an INSERT ... ON CONFLICT construct
    make = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = make(slots).values(
        workflow_name=bindparam("workflow"),
        concurrency_key=bindparam("key"),
        active=0,
        max_active=bindparam("limit"),
    )
    return stmt.on_conflict_do_update(
        index_elements=[slots.c.workflow_name, slots.c.concurrency_key],
        set_={"max_active": stmt.excluded.max_active},
    ).returning(slots.c.active, slots.c.max_active)


_UPSERT: Final = {"postgresql": _upsert("postgresql"), "sqlite": _upsert("sqlite")}

_ROW: Final = and_(
    slots.c.workflow_name == bindparam("workflow"), slots.c.concurrency_key == bindparam("key")
)
_FEWER: Final = case((slots.c.active > bindparam("n"), slots.c.active - bindparam("n")), else_=0)
_GIVE_BACK: Final = (
    update(slots).where(_ROW).values(active=_FEWER).returning(slots.c.active, slots.c.max_active)
)
_GIVE_BACK_KEY: Final = update(slots).where(_ROW).values(active=_FEWER)

_WAITING: Final = (
    select(runs.c.id)
    .where(
        runs.c.workflow_name == bindparam("workflow"),
        runs.c.status == RunStatus.PENDING,
        runs.c.limited.is_(True),
        or_(
            runs.c.begin_at.is_(None),
            runs.c.begin_at <= bindparam("now", type_=runs.c.begin_at.type),
        ),
    )
    .limit(1)
    .scalar_subquery()
)
"""A pending run of the workflow that may begin now (whatever its key's count)."""
_ANY_WAITING: Final = select(_WAITING)


def _key_waits(key: Any) -> Any:  # noqa: ANN401 - a SQL expression
    """A pending run of the workflow under ``key`` exists (debouncing ones too)."""
    return exists().where(
        runs.c.workflow_name == bindparam("workflow"),
        runs.c.concurrency_key == key,
        runs.c.status == RunStatus.PENDING,
        runs.c.limited.is_(True),
    )


_DROP_EMPTIED: Final = delete(slots).where(_ROW, slots.c.active == 0, ~_key_waits(bindparam("key")))
_TAKE: Final = update(slots).where(_ROW).values(active=slots.c.active + 1)
_LOCK: Final = (
    update(slots)
    .where(_ROW)
    .values(active=slots.c.active)
    .returning(slots.c.active, slots.c.max_active)
)

_NEXT_PENDING: Final = (
    select(runs.c.id, runs.c.concurrency_key)
    .select_from(
        runs.outerjoin(
            slots,
            and_(
                slots.c.workflow_name == runs.c.workflow_name,
                slots.c.concurrency_key == runs.c.concurrency_key,
            ),
        )
    )
    .where(
        runs.c.workflow_name == bindparam("workflow"),
        runs.c.status == RunStatus.PENDING,
        runs.c.limited.is_(True),
        or_(
            runs.c.begin_at.is_(None),
            runs.c.begin_at <= bindparam("now", type_=runs.c.begin_at.type),
        ),
        or_(
            runs.c.concurrency_key.is_(None),
            slots.c.max_active.is_(None),
            slots.c.active < slots.c.max_active,
        ),
    )
    .order_by(runs.c.priority, runs.c.id)
    .limit(1)
    .with_for_update(of=runs, skip_locked=True)
)


def lock_count(conn: Connection, workflow: str, key: str, limit: int | None) -> Count:
    """Create or lock the count of ``workflow`` (under ``key``), setting its limit."""
    stmt = _UPSERT["postgresql" if conn.dialect.name == "postgresql" else "sqlite"]
    row = conn.execute(stmt, {"workflow": workflow, "key": key, "limit": limit}).one()
    return Count(active=int(row.active), limit=row.max_active)


def lock_as_is(conn: Connection, workflow: str, key: str) -> Count | None:
    """Lock the count of ``workflow`` (``key``) and read it; ``None`` if it has none."""
    row = conn.execute(_LOCK, {"workflow": workflow, "key": key}).first()
    return None if row is None else Count(active=int(row.active), limit=row.max_active)


def give_back(conn: Connection, workflow: str, n: int) -> Count | None:
    """``n`` runs fewer under ``workflow``: its row, locked; ``None`` if it has none."""
    row = conn.execute(_GIVE_BACK, {"workflow": workflow, "key": WORKFLOW_KEY, "n": n}).first()
    return None if row is None else Count(active=int(row.active), limit=row.max_active)


def give_back_keys(
    conn: Connection, workflow: str, freed: Mapping[str, int], now: datetime
) -> bool:
    """Fewer runs under keys of ``workflow`` (``freed``: how many per key); whether any waits.

    The caller holds the workflow's row (so no other transaction changes these keys'
    counts, and what this reads was committed before that lock was taken). A key's row
    that drops to zero with no pending run under it is deleted: the next start under
    the key creates it again (its upsert, under the workflow's row). Returns
    whether a pending run of ``workflow`` that may begin by ``now`` exists: if none
    does, admitting is skipped (a pending run inserted later locks the workflow's row
    after this transaction and admits itself). SQLite's way: on PostgreSQL the function
    of :mod:`durable_sa.store.slot_function` does the same inside a group's statement.
    """
    params = {"workflow": workflow, "now": now}
    if freed:
        rows = [{"workflow": workflow, "key": key, "n": n} for key, n in sorted(freed.items())]
        conn.execute(_GIVE_BACK_KEY, rows)
        conn.execute(_DROP_EMPTIED, rows)
    return conn.execute(_ANY_WAITING, params).scalar_one() is not None


def take(conn: Connection, workflow: str, key: str | None) -> None:
    """One run more under ``workflow``, and under ``key`` if it is counted."""
    conn.execute(_TAKE, {"workflow": workflow, "key": WORKFLOW_KEY})
    if key is not None:
        conn.execute(_TAKE, {"workflow": workflow, "key": key})


def next_pending(conn: Connection, workflow: str, now: datetime) -> tuple[int, str | None] | None:
    """The pending run of ``workflow`` to admit next whose key has room, locked.

    A debounced run whose window ends after ``now`` is not a candidate.
    """
    row = conn.execute(_NEXT_PENDING, {"workflow": workflow, "now": now}).first()
    return None if row is None else (int(row.id), row.concurrency_key)


def read_count(conn: Connection, workflow: str, key: str) -> Count | None:
    """A count as it is (no lock): for ``list`` and ``status``."""
    row = conn.execute(
        select(slots.c.active, slots.c.max_active).where(_ROW), {"workflow": workflow, "key": key}
    ).first()
    return None if row is None else Count(active=int(row.active), limit=row.max_active)
