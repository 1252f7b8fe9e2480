"""Worker heartbeats: a row per live worker in ``durable_workers``.

A worker upserts its row every heartbeat, pushing ``expires_at`` a few heartbeats
ahead, and deletes it when it stops. A row past its ``expires_at`` belongs to a worker
that died; readers ignore it and the next worker that starts sweeps it.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs
from sqlalchemy import delete, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from durable_sa.store.models import workers_table

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

workers = workers_table

MISSED_BEATS_BEFORE_DEAD = 3


@attrs.frozen(kw_only=True)
class WorkerInfo:
    """A worker as its last heartbeat described it."""

    id: str
    hostname: str
    pid: int
    concurrency: int
    queues: list[str] | None
    workflows: dict[str, str]
    in_flight: int
    processed: int
    started_at: datetime
    last_seen: datetime


def beat(session: Session, values: dict[str, Any]) -> None:
    """Insert or refresh the worker's row."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        stmt: Any = pg_insert(workers).values(**values)
    elif dialect == "sqlite":
        stmt = sqlite_insert(workers).values(**values)
    else:  # pragma: no cover - only PostgreSQL and SQLite are supported
        session.execute(delete(workers).where(workers.c.id == values["id"]))
        session.execute(insert(workers).values(**values))
        return
    refreshed = {k: v for k, v in values.items() if k not in {"id", "started_at"}}
    session.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=refreshed))


def leave(session: Session, worker_id: str) -> None:
    """Delete the worker's row (a graceful stop)."""
    session.execute(delete(workers).where(workers.c.id == worker_id))


def sweep(session: Session, *, now: datetime) -> int:
    """Delete rows of workers that expired before ``now``; how many went."""
    result = session.execute(delete(workers).where(workers.c.expires_at < now))
    return int(getattr(result, "rowcount", 0) or 0)


def live_workers(session: Session, *, now: datetime) -> list[WorkerInfo]:
    """Workers whose last heartbeat has not expired, oldest first."""
    rows = session.execute(
        select(workers).where(workers.c.expires_at >= now).order_by(workers.c.started_at)
    ).mappings()
    return [
        WorkerInfo(
            id=row["id"],
            hostname=row["hostname"],
            pid=int(row["pid"]),
            concurrency=int(row["concurrency"]),
            queues=row["queues"],
            workflows=dict(row["workflows"] or {}),
            in_flight=int(row["in_flight"]),
            processed=int(row["processed"]),
            started_at=row["started_at"],
            last_seen=row["last_seen"],
        )
        for row in rows
    ]
