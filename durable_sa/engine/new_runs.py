"""New runs: the run a plan creates (a start, or a child), inserted with its first job.

A start is idempotent by its key: the insert does nothing when a run holds the key
already, and the caller is told that run instead (:func:`existing_run`). On PostgreSQL
the run and, for a backend whose rows the applier writes, its first job are one
statement; otherwise the first job goes through the backend's ``enqueue``.

A run with limits or a priority is inserted by plain statements: a limited run
``pending``, then admitted by :mod:`durable_sa.engine.limits` (which queues its first
job when it begins); the one-statement path is kept for every other start.

Every insert is a run's start for tracing (:mod:`durable_sa.telemetry`): the W3C trace
context of the caller's span (a child: of its parent run's) is stored on the row, in the
same statement, so the run's steps join that trace wherever they run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from durable_sa.core.jobs import BeginJob, JobSpec
from durable_sa.core.status import RunStatus
from durable_sa.engine.limits import start_limited
from durable_sa.engine.plan_rows import columns
from durable_sa.store import statements
from durable_sa.store.models import runs_table, utcnow
from durable_sa.telemetry.tracing import tracing

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.orm import Session

    from durable_sa.core.plan import NewRun
    from durable_sa.queue.protocol import InPlaceProducer, QueueBackend

runs = runs_table


@attrs.frozen
class Inserted:
    """What a start's insert did: the run, its status, and whether it is new."""

    run_id: int
    status: RunStatus
    created: bool = True
    """False: a debounced start collapsed into the pending run of its key."""


def insert_run(
    session: Session,
    new: NewRun,
    *,
    backend: QueueBackend,
    producer: InPlaceProducer | None,
    now: datetime,
) -> Inserted | None:
    """INSERT the run and queue its first job; ``None`` when its key exists already.

    Returns the run's id and status: ``running``, or ``pending`` when a limit (or a
    debounce window) holds it.
    """
    start = tracing.run_start(new.workflow_name, new.trace_context, parent_run_id=new.parent_run_id)
    with start:
        row = {name: getattr(new, name) for name in statements.NEW_RUN_FIELDS}
        row["trace_context"] = start.carrier
        inserted = _insert(session, new, row, backend=backend, producer=producer, now=now)
        start.created(None if inserted is None else inserted.run_id)
    return inserted


def _insert(  # noqa: PLR0913 - insert_run's arguments and the row it made
    session: Session,
    new: NewRun,
    row: dict[str, Any],
    *,
    backend: QueueBackend,
    producer: InPlaceProducer | None,
    now: datetime,
) -> Inserted | None:
    """:func:`insert_run` with the run's new columns made (its trace context among them)."""
    conn = session.connection()
    if not new.plain:
        return _insert_counted(session, new, row, backend=backend, now=now)
    if conn.dialect.name == "postgresql":
        params: dict[str, Any] = {
            **columns("c", [row], statements.NEW_RUN_FIELDS),
            "now": now,
            "job_created_at": utcnow(),
            "new_status": RunStatus.RUNNING,
            "new_state": new.state,
        }
        if producer is not None:
            params |= {"job_queue": producer.queue, "job_max_attempts": producer.max_attempts}
            found = conn.execute(statements.pg_create(producer.queue_rows), params).first()
            if found is not None:
                producer.wake_after_commit(session)
            return None if found is None else Inserted(int(found.id), RunStatus.RUNNING)
        found = conn.execute(statements.PG_CREATE, params).first()
        if found is None:
            return None
        run_id = int(found.id)
    else:
        values = {
            **row,
            "status": RunStatus.RUNNING,
            "state": new.state,
            "current_step": 0,
            "attempt": 1,
            "revision": 0,
            "created_at": now,
            "updated_at": now,
        }
        if new.idempotency_key is None:
            run_id = int(conn.execute(statements.INSERT_RUN, values).scalar_one())
        else:
            key_id = conn.execute(statements.KEYED_RUN_INSERT, values).scalar_one_or_none()
            if key_id is None:
                return None
            run_id = int(key_id)
    backend.enqueue(session, [new.first_job(run_id)])
    return Inserted(run_id, RunStatus.RUNNING)


def _insert_counted(
    session: Session,
    new: NewRun,
    row: dict[str, Any],
    *,
    backend: QueueBackend,
    now: datetime,
) -> Inserted | None:
    """A run with limits (inserted pending, then admitted), a priority or a debounce."""
    conn = session.connection()
    debounced = new.debounce_key is not None
    values = {
        **row,
        "status": RunStatus.PENDING if new.limited or debounced else RunStatus.RUNNING,
        "state": new.state,
        "current_step": 0,
        "attempt": 1,
        "revision": 0,
        "created_at": now,
        "updated_at": now,
        "concurrency_key": new.concurrency_key,
        "priority": new.priority,
        "limited": new.limited,
        "debounce_key": new.debounce_key,
        "begin_at": new.due if debounced else None,
    }
    if debounced:
        return _debounced(session, new, values, backend=backend, now=now)
    stmt = statements.KEYED_RUN_INSERT
    if conn.dialect.name == "postgresql":
        stmt = (
            pg_insert(runs)
            .on_conflict_do_nothing(
                index_elements=["idempotency_key"], index_where=runs.c.idempotency_key.isnot(None)
            )
            .returning(runs.c.id)
        )
    found = conn.execute(stmt, values).scalar_one_or_none()
    if found is None:
        return None
    run_id = int(found)
    if new.limited:
        return Inserted(run_id, start_limited(session, new, run_id, backend=backend, now=now))
    backend.enqueue(session, [new.first_job(run_id)])
    return Inserted(run_id, RunStatus.RUNNING)


def _debounced(
    session: Session,
    new: NewRun,
    values: dict[str, Any],
    *,
    backend: QueueBackend,
    now: datetime,
) -> Inserted:
    """Insert the key's pending run, or move its window on with this start's input.

    One upsert on the partial unique index of pending runs by (workflow, debounce key),
    so concurrent starts of a key make one run. The run's begin job is queued when it is
    created; a later start only moves ``begin_at`` (:mod:`durable_sa.core.begin`).
    """
    conn = session.connection()
    stmt = statements.debounce_upsert(conn.dialect.name)
    found = conn.execute(stmt, values).one()
    run_id, created = int(found.id), int(found.revision) == 0
    if created:
        due = values["begin_at"]
        begin = BeginJob(run_id=run_id, at=due)
        backend.enqueue(
            session,
            [
                JobSpec(
                    payload=begin,
                    available_at=due,
                    workflow=new.workflow_name,
                    version=new.workflow_version,
                    priority=new.priority,
                )
            ],
        )
        if new.limited:  # the counts exist, so a limited run can be admitted later
            start_limited(session, new, run_id, backend=backend, now=now)
    return Inserted(run_id, RunStatus.PENDING, created=created)


def existing_run(session: Session, new: NewRun) -> tuple[int, RunStatus]:
    """The id and status of the run that holds ``new``'s idempotency key already."""
    row = (
        session.connection()
        .execute(
            select(runs.c.id, runs.c.status).where(runs.c.idempotency_key == new.idempotency_key)
        )
        .one()
    )
    return int(row.id), RunStatus(row.status)
