"""Statements on ``durable_schedules``: save, read, lock the due rows, advance them.

Rules:
- Due rows are locked ``FOR UPDATE SKIP LOCKED`` on PostgreSQL: each due schedule is
  fired by exactly one worker's transaction at a time and the others pass it by without
  waiting. SQLite has one writer: the firing transaction takes the write lock with its
  read of the due row (``UPDATE ... RETURNING``), so a second firer waits for the
  first's commit and then sees the advanced ``next_fire_at`` (and the run's idempotency
  key refuses a duplicate anyway).
- Only the firing transaction and the facade's schedule verbs write the table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from durable_sa.store.models import runs_table, schedules_table

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence
    from datetime import datetime

    from sqlalchemy import Row
    from sqlalchemy.orm import Session

    from durable_sa.core.status import RunStatus

schedules = schedules_table

_COLUMNS: Final = tuple(schedules.c)


def load(session: Session, name: str, *, lock: bool = False) -> Row[Any] | None:
    """Schedule ``name``'s row (held to the commit with ``lock``), or ``None``."""
    query = select(*_COLUMNS).where(schedules.c.name == name)
    if lock:
        query = query.with_for_update()
    return session.connection().execute(query).first()


def load_all(session: Session) -> Sequence[Row[Any]]:
    """Every schedule's row, by name."""
    return session.connection().execute(select(*_COLUMNS).order_by(schedules.c.name)).all()


def insert_row(session: Session, values: Mapping[str, Any]) -> bool:
    """Insert a new schedule row; False when one of that name exists (a racing insert)."""
    conn = session.connection()
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = dialect_insert(schedules).values(**values).on_conflict_do_nothing()
    return bool(conn.execute(statement).rowcount == 1)


def update_row(session: Session, name: str, values: Mapping[str, Any]) -> int:
    """Update schedule ``name``'s row; how many rows changed (0 or 1)."""
    statement = update(schedules).where(schedules.c.name == name).values(**values)
    return session.connection().execute(statement).rowcount


def delete_row(session: Session, name: str) -> int:
    """Delete schedule ``name``; how many rows went (0 or 1)."""
    return session.connection().execute(delete(schedules).where(schedules.c.name == name)).rowcount


def lock_due(
    session: Session,
    *,
    now: datetime,
    workflows: Collection[str],
    passed: Collection[str] = (),
    limit: int = 1,
) -> Sequence[Row[Any]]:
    """Due, unpaused schedule rows of ``workflows``, locked; others' locked rows skipped.

    Due: ``next_fire_at`` has come, or a ``buffer_one`` tick waits for its run to end.
    ``passed``: names this firer has looked at already and leaves to others.
    """
    if not workflows:
        return []
    due = (
        select(schedules.c.name)
        .where(
            schedules.c.paused.is_(False),
            schedules.c.workflow_name.in_(sorted(workflows)),
            or_(schedules.c.next_fire_at <= now, schedules.c.buffered_at.is_not(None)),
        )
        .order_by(schedules.c.next_fire_at, schedules.c.name)
        .limit(limit)
    )
    if passed:
        due = due.where(schedules.c.name.not_in(sorted(passed)))
    conn = session.connection()
    if conn.dialect.name == "sqlite":
        # One writer: take the write lock with the read (an UPDATE ... RETURNING), so a
        # firer that lost the race reads the schedule advanced. Only when something
        # looks due, so idle polls never take the lock.
        if conn.execute(due).first() is None:
            return []
        lock = (
            update(schedules)
            .where(schedules.c.name.in_(due.scalar_subquery()))
            .values(updated_at=schedules.c.updated_at)
            .returning(*_COLUMNS)
        )
        return conn.execute(lock).all()
    # The lock on the rows themselves, so a row another firer holds is passed over and
    # the next due one taken.
    query = due.with_only_columns(*_COLUMNS).with_for_update(skip_locked=True)
    return conn.execute(query).all()


def earliest_fire(
    session: Session, *, workflows: Collection[str], callables: Collection[str]
) -> datetime | None:
    """The earliest ``next_fire_at`` of the unpaused schedules this process can fire.

    Those of ``workflows`` whose input is stored, or made by one of ``callables``.
    """
    if not workflows:
        return None
    query = select(schedules.c.next_fire_at).where(
        schedules.c.paused.is_(False),
        schedules.c.workflow_name.in_(sorted(workflows)),
        schedules.c.next_fire_at.is_not(None),
        or_(schedules.c.input_callable.is_(False), schedules.c.name.in_(sorted(callables))),
    )
    found: datetime | None = (
        session.connection().execute(query.order_by(schedules.c.next_fire_at).limit(1)).scalar()
    )
    return found


def run_status(session: Session, run_id: int | None) -> RunStatus | None:
    """The status of run ``run_id``; ``None`` when there is no such run (or no id)."""
    if run_id is None:
        return None
    found: RunStatus | None = (
        session.connection()
        .execute(select(runs_table.c.status).where(runs_table.c.id == run_id))
        .scalar()
    )
    return found
