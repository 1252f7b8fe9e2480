"""The jobs table's one claim: lease due jobs and read their runs in the same transaction.

Rules:
- A claim leases up to ``limit`` due jobs that nobody holds (or whose lease ran out),
  oldest due first (``fifo``: oldest enqueued first), counting an attempt on each. On
  PostgreSQL the jobs are picked with ``FOR UPDATE SKIP LOCKED``, so concurrent workers
  never wait on or take the same row. The pick runs once per claim
  (:func:`~durable_sa.store.picks.picked_once` says why that must be said).
- The runs of the claimed jobs come back with them, so a worker decides on them without
  another read. On PostgreSQL this is one statement (the UPDATE as a CTE joined to the
  runs); SQLite, which has no data-modifying CTE, reads the runs right after, in the
  same transaction.
- A claim on PostgreSQL commits without waiting for its WAL flush (the caller sets
  ``synchronous_commit`` off for it): a claim lost in a server crash only makes its job
  claimable again (delivery is at least once).
- Only workflow versions in ``workflows`` are claimed, so a job pinned to a definition
  version waits for a worker that has it; a row that names no workflow is claimed too,
  to be dead-lettered (:mod:`durable_sa.queue.defects`). Jobs of a paused workflow are
  not claimed at all (``engine.pause``): they stay due, unheld, for when it is unpaused.
- A worker's death must not charge the innocent jobs it held. A batch claim
  (:attr:`ClaimKind.BATCH`) takes only jobs nobody holds and marks them claimed in
  company; a job whose lease ran out is taken only by a claim of one job
  (:attr:`ClaimKind.ANY` for ``claim()``, :attr:`ClaimKind.RECOVERED` for a worker whose
  hand is empty), marked claimed alone. Taking over a job that was claimed in company
  gives back the attempt its lost claim used (the death may have been another job's
  doing); taking over one that was claimed alone counts one (it was the only suspect).
  So a job that kills its worker is charged only for deaths it caused alone, and is
  dead-lettered by itself while the jobs that died with it run again.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import (
    Integer,
    bindparam,
    case,
    false,
    or_,
    select,
    true,
    tuple_,
    update,
)

from durable_sa.queue.defects import job_defect, taken_by_any_worker
from durable_sa.queue.due import not_paused
from durable_sa.queue.protocol import Claim, ClaimedJob, ClaimKind
from durable_sa.store.models import jobs_table, runs_table
from durable_sa.store.picks import picked_once
from durable_sa.store.queries import RUN_COLUMNS, snapshot_from_row

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime, timedelta

    from sqlalchemy import Connection
    from sqlalchemy.sql.expression import Executable

    from durable_sa.core.snapshot import RunSnapshot


jobs = jobs_table
runs = runs_table

JOB_COLUMNS: Final = (
    jobs.c.id,
    jobs.c.queue,
    jobs.c.kind,
    jobs.c.run_id,
    jobs.c.payload,
    jobs.c.attempts,
    jobs.c.max_attempts,
    jobs.c.available_at,
    jobs.c.claimed_until,
    jobs.c.workflow_name,
    jobs.c.workflow_version,
)
_RUN_PREFIX: Final = "r_"


def claim_jobs(  # noqa: PLR0913 - every option is keyword-only
    conn: Connection,
    *,
    now: datetime,
    worker: str,
    lease: timedelta,
    limit: int,
    queues: Sequence[str] | None = None,
    workflows: Mapping[str, str] | None = None,
    fifo: bool = False,
    kind: ClaimKind = ClaimKind.BATCH,
) -> list[Claim]:
    """Lease up to ``limit`` due jobs on ``conn`` (in its transaction) with their runs.

    A claim of another ``kind`` than :attr:`ClaimKind.BATCH` takes one job at most.
    """
    params: dict[str, Any] = {
        "now": now,
        "until": now + lease,
        "worker": worker,
        "limit": limit if kind is ClaimKind.BATCH else min(limit, 1),
    }
    if queues is not None:
        params["queues"] = list(queues)
    if workflows is not None:
        params["workflows"] = list(workflows.items())
    statement = _statement(
        conn.dialect.name,
        queues=queues is not None,
        workflows=workflows is not None,
        fifo=fifo,
        kind=kind,
    )
    if conn.dialect.name == "postgresql":
        rows = conn.execute(statement, params).mappings()
        found = [_pair(row, _run(row)) for row in rows]
    else:
        job_rows = conn.execute(statement, params).mappings().all()
        by_id = runs_by_id(conn, [row["run_id"] for row in job_rows])
        found = [_pair(row, by_id.get(row["run_id"])) for row in job_rows]
    found.sort(key=lambda pair: (pair[0].id,) if fifo else (pair[0].available_at, pair[0].id))
    return [Claim(job=job, run=run) for job, run in found]


_RUNS_BY_ID: Final = select(*RUN_COLUMNS).where(runs.c.id.in_(bindparam("ids", expanding=True)))


def runs_by_id(conn: Connection, run_ids: Sequence[int | None]) -> dict[int, RunSnapshot]:
    """The runs of claimed jobs, read in one statement (a run gone or unreadable: absent)."""
    wanted = sorted({run_id for run_id in run_ids if run_id is not None})
    if not wanted:
        return {}
    found = {}
    for row in conn.execute(_RUNS_BY_ID, {"ids": wanted}).mappings():
        snapshot = _snapshot(row)
        if snapshot is not None:
            found[int(row["id"])] = snapshot
    return found


@functools.cache
def _statement(
    dialect: str, *, queues: bool, workflows: bool, fifo: bool, kind: ClaimKind
) -> Executable:
    """The claim for a worker with these filters, built once (values are bound).

    On PostgreSQL the leasing UPDATE is a CTE joined to the runs; elsewhere it is the
    UPDATE alone and the runs are read after it.
    """
    order = (jobs.c.id,) if fifo else (jobs.c.priority, jobs.c.available_at, jobs.c.id)
    now = bindparam("now", type_=jobs.c.available_at.type)
    unheld = jobs.c.claimed_until.is_(None)
    lapsed = jobs.c.claimed_until < now
    takes = {ClaimKind.BATCH: unheld, ClaimKind.ANY: or_(unheld, lapsed)}
    pick = (
        select(jobs.c.id)
        .where(jobs.c.available_at <= now, takes.get(kind, lapsed))
        .order_by(*order)
        .limit(bindparam("limit", type_=Integer()))
        .with_for_update(skip_locked=True)
    )
    pick = pick.where(not_paused(jobs))
    if queues:
        pick = pick.where(jobs.c.queue.in_(bindparam("queues", expanding=True)))
    if workflows:  # and rows that name no workflow: to be dead-lettered, not left
        routed = tuple_(jobs.c.workflow_name, jobs.c.workflow_version).in_(
            bindparam("workflows", expanding=True)
        )
        pick = pick.where(or_(routed, taken_by_any_worker(jobs)))
    if kind is ClaimKind.BATCH:
        attempts = jobs.c.attempts + 1
    else:  # a lost claim in company is given back; one made alone is counted
        charged = or_(unheld, jobs.c.claimed_alone)
        attempts = jobs.c.attempts + case((charged, 1), else_=0)
    picked = picked_once(jobs.c.id, pick, dialect)
    leased = (
        update(jobs)
        .where(picked)
        .values(
            claimed_by=bindparam("worker", type_=jobs.c.claimed_by.type),
            claimed_until=bindparam("until", type_=jobs.c.claimed_until.type),
            claimed_alone=false() if kind is ClaimKind.BATCH else true(),
            attempts=attempts,
        )
        .returning(*JOB_COLUMNS)
    )
    if dialect != "postgresql":
        return leased
    claimed = leased.cte("claimed")
    return select(
        *claimed.c,
        *(c.label(f"{_RUN_PREFIX}{c.name}") for c in RUN_COLUMNS),
    ).select_from(claimed.outerjoin(runs, runs.c.id == claimed.c.run_id))


def _pair(row: Mapping[Any, Any], run: RunSnapshot | None) -> tuple[ClaimedJob, RunSnapshot | None]:
    return _job(row, job_defect(row, run)), run


def _job(row: Mapping[Any, Any], defect: str | None) -> ClaimedJob:
    return ClaimedJob(
        id=int(row["id"]),
        queue=row["queue"],
        kind=row["kind"],
        run_id=row["run_id"],
        payload=row["payload"],
        attempts=int(row["attempts"]),
        max_attempts=int(row["max_attempts"]),
        available_at=row["available_at"],
        claimed_until=row["claimed_until"],
        defect=defect,
    )


def _run(row: Mapping[Any, Any]) -> RunSnapshot | None:
    if row[f"{_RUN_PREFIX}id"] is None:
        return None
    return _snapshot({c.name: row[f"{_RUN_PREFIX}{c.name}"] for c in RUN_COLUMNS})


def _snapshot(row: Mapping[Any, Any] | None) -> RunSnapshot | None:
    """The run read with a claim; ``None`` when it is gone or cannot be read.

    The job's own handling then reads it again and reports what is wrong.
    """
    if row is None:
        return None
    try:
        return snapshot_from_row(row)
    except (TypeError, ValueError):
        return None
