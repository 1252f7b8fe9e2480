"""The fast lane's statements on PostgreSQL (psycopg 3, one round trip each).

Claims run on their own connection with ``synchronous_commit = off``: a claim lost in a
server crash only makes the job claimable again, which at-least-once delivery allows
(the run's revision check keeps a duplicate from applying twice). Step writes run on a
connection with the server's own durability: they are the checkpoints.
"""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING, Any, Final

from psycopg.types.json import Jsonb

from durable_sa.hotpath.rows import (
    RUN_FIELDS,
    WAKE_AT,
    Claim,
    ClaimQuery,
    StepWrite,
    WriteResult,
    job_payload,
    run_snapshot,
)
from durable_sa.queue.protocol import ClaimedJob
from durable_sa.store.models import jobs_table, journal_table, runs_table

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    import psycopg

RUNS: Final = runs_table.name
JOBS: Final = jobs_table.name
JOURNAL: Final = journal_table.name


_WRITE: Final = f"""
WITH w AS (
    SELECT * FROM jsonb_to_recordset(%(writes)s) AS w(run_id bigint, revision int,
        status text, current_step int, attempt int, compensation_cursor int, state jsonb,
        result jsonb, awaiting_signal text, wake_at timestamptz, error text, job_id bigint,
        journal jsonb, jobs jsonb, lease_until timestamptz)
), r AS (
    UPDATE {RUNS} AS t SET status = w.status, current_step = w.current_step,
        attempt = w.attempt, compensation_cursor = w.compensation_cursor, state = w.state,
        result = w.result, awaiting_signal = w.awaiting_signal, wake_at = w.wake_at,
        error = w.error, updated_at = %(now)s, revision = t.revision + 1
    FROM w WHERE t.id = w.run_id AND t.revision = w.revision
    RETURNING t.id
), j AS (
    INSERT INTO {JOURNAL} (run_id, step_id, status, result, error, attempt, completed_at)
    SELECT r.id, x.step_id, x.status, x.result, x.error, x.attempt, %(now)s
    FROM w JOIN r ON r.id = w.run_id CROSS JOIN LATERAL jsonb_to_recordset(w.journal)
        AS x(step_id text, status text, result jsonb, error text, attempt int)
    ON CONFLICT (run_id, step_id) DO NOTHING
), d AS (
    DELETE FROM {JOBS} AS k USING w JOIN r ON r.id = w.run_id WHERE k.id = w.job_id
), n AS (
    INSERT INTO {JOBS} (queue, kind, run_id, workflow_name, workflow_version, payload,
        attempts, max_attempts, available_at, claimed_by, claimed_until, created_at)
    SELECT x.queue, x.kind, r.id, x.workflow_name, x.workflow_version, x.payload,
        CASE WHEN x.claimed THEN 1 ELSE 0 END, x.max_attempts, x.available_at,
        CASE WHEN x.claimed THEN %(worker)s END,
        CASE WHEN x.claimed THEN w.lease_until END, %(now)s
    FROM w JOIN r ON r.id = w.run_id CROSS JOIN LATERAL jsonb_to_recordset(w.jobs)
        AS x(queue text, kind text, workflow_name text, workflow_version text,
            payload jsonb, max_attempts int, available_at timestamptz, claimed boolean)
    RETURNING id, run_id, claimed_by
)
SELECT w.run_id, r.id IS NOT NULL,
    (SELECT min(n.id) FROM n WHERE n.run_id = w.run_id AND n.claimed_by IS NOT NULL),
    (SELECT count(*) FROM n WHERE n.run_id = w.run_id AND n.claimed_by IS NULL)
FROM w LEFT JOIN r ON r.id = w.run_id
"""  # noqa: S608 - table names come from our metadata; values are bound
"""Applies the steps of several runs, each only if its run still has the revision it was
read at, in one statement: one round trip and one commit for the whole group.

Every write travels as one JSON object of ``writes`` (its run's new columns, journal rows
and jobs), so a group costs one JSON encoding. A run appears at most once per group.
"""

_WRITE_ONE: Final = f"""
WITH r AS (
    UPDATE {RUNS} SET status = %(status)s, current_step = %(current_step)s,
        attempt = %(attempt)s, compensation_cursor = %(compensation_cursor)s,
        state = %(state)s, result = %(result)s, awaiting_signal = %(awaiting_signal)s,
        wake_at = %(wake_at)s, error = %(error)s, updated_at = %(now)s,
        revision = revision + 1
    WHERE id = %(run_id)s AND revision = %(revision)s
    RETURNING id
), j AS (
    INSERT INTO {JOURNAL} (run_id, step_id, status, result, error, attempt, completed_at)
    SELECT r.id, x.step_id, x.status, x.result, x.error, x.attempt, %(now)s
    FROM r, jsonb_to_recordset(%(journal)s)
        AS x(step_id text, status text, result jsonb, error text, attempt int)
    ON CONFLICT (run_id, step_id) DO NOTHING
), d AS (
    DELETE FROM {JOBS} WHERE id = %(job_id)s AND EXISTS (SELECT 1 FROM r)
), n AS (
    INSERT INTO {JOBS} (queue, kind, run_id, workflow_name, workflow_version, payload,
        attempts, max_attempts, available_at, claimed_by, claimed_until, created_at)
    SELECT x.queue, x.kind, r.id, x.workflow_name, x.workflow_version, x.payload,
        CASE WHEN x.claimed THEN 1 ELSE 0 END, x.max_attempts, x.available_at,
        CASE WHEN x.claimed THEN %(worker)s END,
        CASE WHEN x.claimed THEN %(lease_until)s::timestamptz END, %(now)s
    FROM r, jsonb_to_recordset(%(jobs)s) AS x(queue text, kind text, workflow_name text,
        workflow_version text, payload jsonb, max_attempts int,
        available_at timestamptz, claimed boolean)
    RETURNING id, claimed_by
)
SELECT %(run_id)s, (SELECT count(*) FROM r) > 0,
    (SELECT min(id) FROM n WHERE claimed_by IS NOT NULL),
    (SELECT count(*) FROM n WHERE claimed_by IS NULL)
"""  # noqa: S608 - table names come from our metadata; values are bound
"""The same for a group of one: plain parameters plan and run faster than a JSON group
(an idle worker commits each step alone, so this is the latency path)."""

_JOB_COLUMNS: Final = (
    "id, queue, kind, run_id, payload, attempts, max_attempts, available_at, claimed_until"
)


def claim_sql(*, queues: bool, workflows: bool, fifo: bool) -> str:
    """The claim statement: lease up to ``%(limit)s`` due jobs and read their runs."""
    filters = ""
    if queues:
        filters += " AND queue = ANY(%(queues)s)"
    if workflows:
        filters += (
            " AND (workflow_name, workflow_version) IN"
            " (SELECT * FROM unnest(%(names)s::text[], %(versions)s::text[]))"
        )
    order = "id" if fifo else "available_at, id"
    run_columns = ", ".join(f"r.{name}" for name in RUN_FIELDS)
    job_columns = ", ".join(f"c.{name.strip()}" for name in _JOB_COLUMNS.split(","))
    return f"""
WITH c AS (
    UPDATE {JOBS} AS j SET claimed_by = %(worker)s, claimed_until = %(until)s,
        attempts = j.attempts + 1
    WHERE j.id IN (
        SELECT id FROM {JOBS}
        WHERE available_at <= %(now)s
            AND (claimed_until IS NULL OR claimed_until < %(now)s){filters}
        ORDER BY {order} LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
    RETURNING j.id, j.queue, j.kind, j.run_id, j.payload, j.attempts, j.max_attempts,
        j.available_at, j.claimed_until
)
SELECT {job_columns}, {run_columns}
FROM c LEFT JOIN LATERAL (SELECT * FROM {RUNS} WHERE id = c.run_id) r ON true
ORDER BY c.available_at, c.id
"""  # noqa: S608 - table and column names come from our metadata; values are bound


def hold(conn: psycopg.Connection[Any], *, synchronous: bool) -> None:
    """Prepare a pooled connection for the lane: autocommit, and for claims no WAL wait."""
    conn.autocommit = True
    if not synchronous:
        conn.execute("SET synchronous_commit = off")


def unhold(conn: psycopg.Connection[Any], *, synchronous: bool) -> None:
    """Put a held connection back as the pool expects it."""
    if not synchronous:
        conn.execute("RESET synchronous_commit")
    conn.autocommit = False


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def _claim_from_row(row: Sequence[Any]) -> Claim:
    """A :class:`Claim` from a row of :func:`claim_sql` (job columns, then the run's)."""
    job = ClaimedJob(
        id=int(row[0]),
        queue=row[1],
        kind=row[2],
        run_id=row[3],
        payload=row[4],
        attempts=int(row[5]),
        max_attempts=int(row[6]),
        available_at=row[7].astimezone(UTC),
        claimed_until=_utc(row[8]),
    )
    if row[9] is None:
        return Claim(job=job, run=None)
    values = list(row[9:])
    values[WAKE_AT] = _utc(values[WAKE_AT])
    run = run_snapshot(values)
    return Claim(job=job, run=run)


def _claim_params(query: ClaimQuery, now: datetime, limit: int) -> dict[str, Any]:
    params: dict[str, Any] = {
        "worker": query.worker,
        "until": now + query.lease,
        "now": now,
        "limit": limit,
        "names": list(query.workflows),
        "versions": list(query.workflows.values()),
    }
    if query.queues is not None:
        params["queues"] = list(query.queues)
    return params


def claim(
    conn: psycopg.Connection[Any], query: ClaimQuery, *, now: datetime, limit: int
) -> list[Claim]:
    """Lease up to ``limit`` due jobs (one round trip, committed at once)."""
    rows = conn.execute(query.sql, _claim_params(query, now, limit)).fetchall()
    return [_claim_from_row(row) for row in rows]


def write_row(write: StepWrite, *, queue: str, max_attempts: int) -> dict[str, Any]:
    """The JSON object that stands for ``write`` in the group statement."""
    transition = write.transition
    after = transition.after
    continuing = write.lease_until is not None
    return {
        "run_id": after.id,
        "revision": transition.before.revision,
        "status": after.status.value,
        "current_step": after.current_step,
        "attempt": after.attempt,
        "compensation_cursor": after.compensation_cursor,
        "state": after.state,
        "result": after.result,
        "awaiting_signal": after.awaiting_signal,
        "wake_at": None if after.wake_at is None else after.wake_at.isoformat(),
        "error": after.error,
        "job_id": write.job_id,
        "lease_until": None if write.lease_until is None else write.lease_until.isoformat(),
        "journal": [
            {
                "step_id": w.step_id,
                "status": w.status.value,
                "result": w.result,
                "error": w.error,
                "attempt": w.attempt,
            }
            for w in transition.journal
        ],
        "jobs": [
            {
                "queue": queue,
                "kind": spec.payload.kind,
                "workflow_name": spec.workflow,
                "workflow_version": spec.version,
                "payload": job_payload(spec.payload),
                "max_attempts": max_attempts,
                "available_at": spec.available_at.isoformat(),
                "claimed": continuing and index == 0,
            }
            for index, spec in enumerate(transition.jobs)
        ],
    }


def write_group(
    conn: psycopg.Connection[Any],
    rows: Sequence[Mapping[str, Any]],
    *,
    worker: str,
    now: datetime,
) -> list[WriteResult]:
    """Apply a group of writes (distinct runs) in one statement; results in input order."""
    if len(rows) == 1:
        row = rows[0]
        params = {
            **row,
            "state": Jsonb(row["state"]),
            "result": None if row["result"] is None else Jsonb(row["result"]),
            "journal": Jsonb(row["journal"]),
            "jobs": Jsonb(row["jobs"]),
            "now": now,
            "worker": worker,
        }
        cur = conn.execute(_WRITE_ONE, params)
    else:
        cur = conn.execute(_WRITE, {"writes": Jsonb(list(rows)), "now": now, "worker": worker})
    by_run = {
        int(run_id): WriteResult(
            applied=bool(applied),
            next_job_id=None if next_id is None else int(next_id),
            queued=bool(queued),
        )
        for run_id, applied, next_id, queued in cur.fetchall()
    }
    return [by_run[int(row["run_id"])] for row in rows]


_START: Final = f"""
WITH r AS (
    INSERT INTO {RUNS} (workflow_name, workflow_version, input, status, state,
        current_step, total_steps, attempt, created_at, updated_at, revision)
    VALUES (%(name)s, %(version)s, %(input)s, 'running', '{{}}'::jsonb, 0, %(total)s, 1,
        %(now)s, %(now)s, 0)
    RETURNING id
)
INSERT INTO {JOBS} (queue, kind, run_id, workflow_name, workflow_version, payload,
    attempts, max_attempts, available_at, created_at)
SELECT %(queue)s, 'advance', r.id, %(name)s, %(version)s,
    jsonb_build_object('run_id', r.id, 'step_index', 0, 'attempt', 1),
    0, %(max_attempts)s, %(now)s, %(now)s
FROM r
RETURNING run_id
"""  # noqa: S608 - table names come from our metadata; values are bound


def start_run(  # noqa: PLR0913 - the run's columns, keyword-only
    conn: psycopg.Connection[Any],
    *,
    name: str,
    version: str,
    input_data: Mapping[str, Any],
    total_steps: int,
    now: datetime,
    queue: str,
    max_attempts: int,
) -> int:
    """Insert a running run and its first job in one statement (autocommit); its id."""
    row = conn.execute(
        _START,
        {
            "name": name,
            "version": version,
            "input": Jsonb(input_data),
            "total": total_steps,
            "now": now,
            "queue": queue,
            "max_attempts": max_attempts,
        },
    ).fetchone()
    if row is None:  # pragma: no cover - INSERT ... RETURNING always returns the row
        msg = "starting a run returned no id"
        raise RuntimeError(msg)
    return int(row[0])
