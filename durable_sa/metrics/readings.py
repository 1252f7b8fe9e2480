"""What the metrics read from the database at scrape time, as one plain value.

Rules:
- One short read-only transaction on the engine's own sessions, a handful of
  statements, each bounded by an index or by a small table: runs are counted by
  ``(workflow_name, status)`` (its index covers the count), jobs and the outbox are the
  live work (rows leave when done), dead letters are counted open only, and workers,
  limits, schedules and paused workflows are small tables read whole.
- What is read is what the engine itself reads: live workers through
  :func:`~durable_sa.runtime.presence.live_workers`, a job's claimability through the
  jobs-table claim's own filter (:func:`~durable_sa.queue.due.not_paused`), schedules
  through :func:`~durable_sa.store.schedules.load_all`.
- Times are measured against the engine's clock (``engine.now()``), as the workers'.
- :func:`check_tables` proves a read can run, for a server about to start: one statement
  that names every table :func:`read` reads and reads no row.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import attrs
from sqlalchemy import and_, case, false, func, literal, or_, select, union_all

from durable_sa.core.admission import WORKFLOW_KEY
from durable_sa.core.status import RunStatus
from durable_sa.queue.due import not_paused
from durable_sa.runtime.presence import live_workers
from durable_sa.store import schedules as schedule_rows
from durable_sa.store.controls import paused_workflows
from durable_sa.store.models import (
    dead_letters_table,
    jobs_table,
    outbox_table,
    paused_table,
    runs_table,
    schedules_table,
    slots_table,
    workers_table,
)

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement, Table
    from sqlalchemy.orm import Session


@attrs.frozen(kw_only=True)
class QueueReading:
    """One queue's due work: how many jobs can be claimed now, since when, how many run.

    A job whose lease ran out (its worker died) is due again since its lease ran out,
    not since it was first due: a crash does not look like a job waiting for minutes.
    """

    due: int
    oldest_due: datetime | None
    running: int = 0
    lease_expired: int = 0
    """Jobs still claimed whose lease is in the past: a worker died or gave up on them."""


@attrs.frozen(kw_only=True)
class LimitReading:
    """A workflow's ``max_active`` limit and the active runs it counts."""

    active: int
    max_active: int | None


@attrs.frozen(kw_only=True)
class Readings:
    """Everything the SQL metrics show, read in one transaction at ``now``."""

    now: datetime
    runs: dict[tuple[str, RunStatus], int]
    """Runs by ``(workflow, status)``; pairs with no run are absent."""
    jobs: dict[str, QueueReading]
    """The jobs table, by queue (queues with no job row are absent)."""
    outbox: dict[str, QueueReading]
    """A relay backend's unpublished outbox rows, by queue."""
    dead_letters_open: int
    workers_live: int
    workers_busy_slots: int
    workers_slots: int
    worker_queues: frozenset[str] = frozenset()
    """The queues live workers name (a worker of every queue names none)."""
    limits: dict[str, LimitReading]
    paused: frozenset[str]
    schedule_lag: dict[str, float]
    """Seconds each unpaused schedule is behind its next tick (0 when it is not due yet)."""


_READ_TABLES: Final = (
    runs_table,
    jobs_table,
    outbox_table,
    dead_letters_table,
    workers_table,
    slots_table,
    paused_table,
    schedules_table,
)
"""Every table :func:`read` reads, itself or through the engine's readers it calls."""


def check_tables(session: Session) -> None:
    """Prove :func:`read` can run: one statement naming every table it reads, no row read.

    Raises:
        sqlalchemy.exc.DBAPIError: no connection, or a table is missing (the database's
            own error, as :func:`read` would raise it).

    """
    session.execute(
        union_all(*(select(literal(1)).select_from(t).where(false()) for t in _READ_TABLES))
    )


def read(session: Session, *, now: datetime) -> Readings:
    """Read every metric's value at ``now`` (the caller's session, no writes)."""
    workers = live_workers(session, now=now)
    return Readings(
        now=now,
        runs=_runs(session),
        jobs=_queues(
            session,
            jobs_table,
            _job_due(now),
            running=_job_running(now),
            lease_expired=_lease_expired(now),
        ),
        outbox=_queues(session, outbox_table, _outbox_due(now)),
        dead_letters_open=_open_dead_letters(session),
        workers_live=len(workers),
        workers_busy_slots=sum(worker.in_flight for worker in workers),
        workers_slots=sum(worker.concurrency for worker in workers),
        worker_queues=frozenset(queue for worker in workers for queue in worker.queues or ()),
        limits=_limits(session),
        paused=frozenset(paused_workflows(session)),
        schedule_lag=_schedule_lag(session, now),
    )


def _runs(session: Session) -> dict[tuple[str, RunStatus], int]:
    runs = runs_table
    rows = session.execute(
        select(runs.c.workflow_name, runs.c.status, func.count()).group_by(
            runs.c.workflow_name, runs.c.status
        )
    )
    return {(name, RunStatus(status)): int(count) for name, status, count in rows}


def _job_due(now: datetime) -> ColumnElement[bool]:
    """A job a worker could claim now: due, not held (or its lease ran out), not paused."""
    jobs = jobs_table
    return and_(
        jobs.c.available_at <= now,
        or_(jobs.c.claimed_until.is_(None), jobs.c.claimed_until < now),
        not_paused(jobs),
    )


def _job_running(now: datetime) -> ColumnElement[bool]:
    """A job a worker holds: its lease has not run out."""
    return jobs_table.c.claimed_until >= now


def _lease_expired(now: datetime) -> ColumnElement[bool]:
    """A job still claimed whose lease is in the past: no worker holds it any more."""
    return jobs_table.c.claimed_until < now


def _due_since(table: Table) -> ColumnElement[Any]:
    """When a due row became due: its ``available_at``, or when its lease ran out if later."""
    lapsed = table.c.claimed_until
    return case(
        (and_(lapsed.is_not(None), lapsed > table.c.available_at), lapsed),
        else_=table.c.available_at,
    )


def _outbox_due(now: datetime) -> ColumnElement[bool]:
    """An outbox row a relay would publish now: due and unpublished, held by no worker."""
    outbox = outbox_table
    return and_(
        outbox.c.published_at.is_(None),
        outbox.c.available_at <= now,
        or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now),
    )


def _queues(
    session: Session,
    table: Table,
    due: ColumnElement[bool],
    *,
    running: ColumnElement[bool] | None = None,
    lease_expired: ColumnElement[bool] | None = None,
) -> dict[str, QueueReading]:
    never = table.c.queue.is_(None)  # a queue is never NULL: counts 0 for the outbox
    columns: list[Any] = [
        table.c.queue,
        func.sum(case((due, 1), else_=0)),
        func.min(case((due, _due_since(table)), else_=None)),
        func.sum(case((never if running is None else running, 1), else_=0)),
        func.sum(case((never if lease_expired is None else lease_expired, 1), else_=0)),
    ]
    stmt = select(*columns).group_by(table.c.queue)
    if table is outbox_table:  # published history waits to be pruned: not work
        stmt = stmt.where(table.c.published_at.is_(None))
    found: dict[str, QueueReading] = {}
    for row in session.execute(stmt):
        found[row[0]] = QueueReading(
            due=int(row[1] or 0),
            oldest_due=row[2],  # UTCDateTime, carried through min() and case()
            running=int(row[3] or 0),
            lease_expired=int(row[4] or 0),
        )
    return found


def _open_dead_letters(session: Session) -> int:
    letters = dead_letters_table
    stmt = select(func.count()).select_from(letters).where(letters.c.resolved_at.is_(None))
    return int(session.execute(stmt).scalar_one())


def _limits(session: Session) -> dict[str, LimitReading]:
    slots = slots_table
    rows = session.execute(
        select(slots.c.workflow_name, slots.c.active, slots.c.max_active).where(
            slots.c.concurrency_key == WORKFLOW_KEY
        )
    )
    return {
        name: LimitReading(active=int(active), max_active=max_active)
        for name, active, max_active in rows
    }


def _schedule_lag(session: Session, now: datetime) -> dict[str, float]:
    lag: dict[str, float] = {}
    for row in schedule_rows.load_all(session):
        if row.paused or row.next_fire_at is None:
            continue
        lag[row.name] = max(0.0, (now - row.next_fire_at).total_seconds())
    return lag
