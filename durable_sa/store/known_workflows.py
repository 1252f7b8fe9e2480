"""Whether the database knows a workflow name: the check ``engine.pause`` makes.

A name is known when a run of it exists, a live worker's heartbeat lists it, or a
schedule starts it. Each is one indexed lookup that stops at the first row (the runs
table's ``(workflow_name, status)`` index, the schedules' and workers' small tables), so
the check costs an operator's ``pause`` three short reads, whatever the history's size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from durable_sa.store.models import runs_table, schedules_table, workers_table

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.orm import Session


def worker_workflows(session: Session, *, now: datetime) -> set[str]:
    """The workflow names the live workers define (heartbeats not yet expired)."""
    rows = session.execute(
        select(workers_table.c.workflows).where(workers_table.c.expires_at >= now)
    ).scalars()
    return {name for workflows in rows for name in workflows or {}}


def known_workflow(session: Session, name: str, *, now: datetime) -> bool:
    """Whether a run of ``name`` exists, a live worker defines it, or a schedule starts it."""
    for table in (runs_table, schedules_table):
        found = session.execute(
            select(table.c.workflow_name).where(table.c.workflow_name == name).limit(1)
        ).first()
        if found is not None:
            return True
    return name in worker_workflows(session, now=now)
