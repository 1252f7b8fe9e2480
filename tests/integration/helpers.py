"""Helpers shared by the engine tests: reading rows back, a far-away clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from durable_sa import Durable, JournalEntry, WorkflowRun


def far_future() -> datetime:
    """An hour from now: carries every backoff, sleep and timeout to its end."""
    return datetime.now(UTC) + timedelta(hours=1)


def get_run(engine: Durable, run_id: int) -> WorkflowRun:
    """The run row, read through the ORM."""
    with Session(engine.sa_engine) as session:
        run = session.get(WorkflowRun, run_id)
        assert run is not None
        session.expunge(run)
        return run


def get_journal(engine: Durable, run_id: int) -> list[JournalEntry]:
    """The run's journal rows in insertion order."""
    with Session(engine.sa_engine) as session:
        rows = list(
            session.scalars(
                sa.select(JournalEntry)
                .where(JournalEntry.run_id == run_id)
                .order_by(JournalEntry.id)
            )
        )
        session.expunge_all()
        return rows


def step_ids(engine: Durable, run_id: int) -> list[str]:
    """The run's journaled step ids, sorted."""
    return sorted(row.step_id for row in get_journal(engine, run_id))


def count(engine: Durable, table: Any) -> int:
    """Rows in ``table``."""
    with Session(engine.sa_engine) as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(table)) or 0)
