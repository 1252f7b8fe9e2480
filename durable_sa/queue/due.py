"""Which jobs of the jobs table a worker may run, and when the next one is due.

A worker runs the jobs of its queues, of the workflow versions it defines (a job
pinned to another version waits for a worker that has it), of workflows that are not
paused (a paused workflow's jobs stay due for when it is unpaused). Its idle slots sleep until
the next job becomes claimable (due, or its lease runs out), and its heartbeat looks
for a job whose lease ran out, to take it over alone. The claim itself, which applies
the same filter inside its one statement, is :mod:`durable_sa.queue.claims`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import exists, func, or_, select, tuple_

from durable_sa.queue.defects import taken_by_any_worker
from durable_sa.store.models import jobs_table, paused_table

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from sqlalchemy import ColumnElement, Select, Table
    from sqlalchemy.orm import Session, sessionmaker

jobs = jobs_table


def has_lapsed(
    sessions: sessionmaker[Session],
    *,
    now: datetime,
    queues: Sequence[str] | None,
    workflows: Mapping[str, str] | None,
) -> bool:
    """Whether a job's lease ran out (its worker died or gave up): one to take alone."""
    stmt = runnable(select(jobs.c.id).where(jobs.c.claimed_until < now).limit(1), queues, workflows)
    with sessions() as session:
        return session.execute(stmt).first() is not None


def next_due(
    sessions: sessionmaker[Session],
    *,
    dialect: str,
    now: datetime,
    queues: Sequence[str] | None,
    workflows: Mapping[str, str] | None,
) -> datetime | None:
    """When the next job becomes claimable: due, or its lease runs out."""
    held_until = func.coalesce(jobs.c.claimed_until, jobs.c.available_at)
    later = func.greatest if dialect == "postgresql" else func.max
    stmt = runnable(select(func.min(later(held_until, jobs.c.available_at))), queues, workflows)
    with sessions() as session:
        value = session.execute(stmt).scalar()
    if value is None:
        return None
    if isinstance(value, str):  # SQLite returns the expression as text
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return max(value, now)


def not_paused(table: Table) -> ColumnElement[bool]:
    """Jobs whose workflow is not paused (``engine.pause``): what a worker may claim.

    A cheap anti-join on the small ``durable_paused_workflows`` table (usually empty).
    """
    return ~exists().where(paused_table.c.workflow_name == table.c.workflow_name)


def runnable(
    stmt: Select[Any], queues: Sequence[str] | None, workflows: Mapping[str, str] | None
) -> Select[Any]:
    """``stmt`` limited to the jobs a worker may run (see the module's docstring).

    Jobs of ``queues``, of the ``workflows`` versions it has, of workflows not paused.
    """
    stmt = stmt.where(not_paused(jobs))
    if queues is not None:
        stmt = stmt.where(jobs.c.queue.in_(list(queues)))
    if workflows is not None:
        routed = tuple_(jobs.c.workflow_name, jobs.c.workflow_version).in_(list(workflows.items()))
        stmt = stmt.where(or_(routed, taken_by_any_worker(jobs)))
    return stmt
