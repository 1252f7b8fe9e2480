"""Whether the database's history knows a workflow name: half of the check ``engine.pause`` makes.

A name is stored when a run of it exists or a schedule starts it. Each is one indexed
lookup that stops at the first row (the runs table's ``(workflow_name, status)`` index,
the schedules' small table), so the check costs an operator's ``pause`` two short reads,
whatever the history's size. The other half, the names live workers define, is read
where worker liveness is decided (:func:`durable_sa.runtime.presence.live_workers`).

:func:`stored_workflow_names` lists the names, for the refusal's message only (a name
was not found, so a typo is likely): a process without the definitions, such as the
CLI, has no other names to suggest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from durable_sa.store.models import runs_table, schedules_table

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def stored_workflow(session: Session, name: str) -> bool:
    """Whether a run of ``name`` exists or a schedule starts it."""
    for table in (runs_table, schedules_table):
        found = session.execute(
            select(table.c.workflow_name).where(table.c.workflow_name == name).limit(1)
        ).first()
        if found is not None:
            return True
    return False


STORED_NAMES_SHOWN = 100
"""The most names :func:`stored_workflow_names` reads from each table."""


def stored_workflow_names(session: Session) -> list[str]:
    """The names runs have and schedules start, sorted (at most 100 from each table)."""
    names: set[str] = set()
    for table in (runs_table, schedules_table):
        names.update(
            session.scalars(select(table.c.workflow_name).distinct().limit(STORED_NAMES_SHOWN))
        )
    return sorted(names)
