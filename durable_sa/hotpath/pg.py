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

from durable_sa.core.jobs import encode_payload
from durable_sa.core.snapshot import RunSnapshot
from durable_sa.core.status import RunStatus
from durable_sa.hotpath.rows import Claim, StepWrite, WriteResult
from durable_sa.queue.protocol import ClaimedJob
from durable_sa.store.models import jobs_table, journal_table, runs_table

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime, timedelta

    import psycopg

RUNS: Final = runs_table.name
JOBS: Final = jobs_table.name
JOURNAL: Final = journal_table.name

_RUN_FIELDS: Final = (
    "workflow_name",
    "workflow_version",
    "status",
    "current_step",
    "total_steps",
    "attempt",
    "compensation_cursor",
    "input",
    "state",
    "result",
    "parent_run_id",
    "parent_step_id",
    "awaiting_signal",
    "wake_at",
    "error",
    "revision",
)

_WRITE: Final = f"""
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
SELECT (SELECT count(*) FROM r),
    (SELECT min(id) FROM n WHERE claimed_by IS NOT NULL),
    (SELECT count(*) FROM n WHERE claimed_by IS NULL)
"""


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
    run_columns = ", ".join(f"r.{name} AS r_{name}" for name in _RUN_FIELDS)
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
SELECT c.*, r.id AS r_id, {run_columns}
FROM c LEFT JOIN {RUNS} r ON r.id = c.run_id
ORDER BY c.available_at, c.id
"""


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def _claim_from_row(row: Mapping[str, Any]) -> Claim:
    job = ClaimedJob(
        id=int(row["id"]),
        queue=row["queue"],
        kind=row["kind"],
        run_id=row["run_id"],
        payload=row["payload"],
        attempts=int(row["attempts"]),
        max_attempts=int(row["max_attempts"]),
        available_at=row["available_at"].astimezone(UTC),
        claimed_until=_utc(row["claimed_until"]),
    )
    if row["r_id"] is None:
        return Claim(job=job, run=None)
    run = RunSnapshot(
        id=int(row["r_id"]),
        workflow_name=row["r_workflow_name"],
        workflow_version=row["r_workflow_version"],
        status=RunStatus(row["r_status"]),
        current_step=int(row["r_current_step"]),
        total_steps=int(row["r_total_steps"]),
        attempt=int(row["r_attempt"]),
        compensation_cursor=row["r_compensation_cursor"],
        input=dict(row["r_input"] or {}),
        state=dict(row["r_state"] or {}),
        result=row["r_result"],
        parent_run_id=row["r_parent_run_id"],
        parent_step_id=row["r_parent_step_id"],
        awaiting_signal=row["r_awaiting_signal"],
        wake_at=_utc(row["r_wake_at"]),
        error=row["r_error"],
        revision=int(row["r_revision"]),
    )
    return Claim(job=job, run=run)


def claim(  # noqa: PLR0913 - the claim's filters, keyword-only
    conn: psycopg.Connection[Any],
    sql: str,
    *,
    now: datetime,
    worker: str,
    lease: timedelta,
    limit: int,
    queues: Sequence[str] | None,
    workflows: Mapping[str, str] | None,
) -> list[Claim]:
    """Lease up to ``limit`` due jobs (one round trip, committed at once)."""
    params: dict[str, Any] = {"worker": worker, "until": now + lease, "now": now, "limit": limit}
    if queues is not None:
        params["queues"] = list(queues)
    if workflows is not None:
        params["names"] = list(workflows)
        params["versions"] = list(workflows.values())
    cur = conn.execute(sql, params)
    names = [column.name for column in cur.description or ()]
    return [_claim_from_row(dict(zip(names, row, strict=True))) for row in cur.fetchall()]


def write_params(write: StepWrite, *, worker: str, queue: str, max_attempts: int) -> dict[str, Any]:
    """The parameters of the write statement for ``write``."""
    after = write.transition.after
    continuing = write.lease_until is not None
    jobs = [
        {
            "queue": queue,
            "kind": spec.kind,
            "workflow_name": spec.workflow,
            "workflow_version": spec.version,
            "payload": encode_payload(spec.payload),
            "max_attempts": max_attempts,
            "available_at": spec.available_at.isoformat(),
            "claimed": continuing and index == 0,
        }
        for index, spec in enumerate(write.transition.jobs)
    ]
    journal = [
        {
            "step_id": w.step_id,
            "status": str(w.status),
            "result": w.result,
            "error": w.error,
            "attempt": w.attempt,
        }
        for w in write.transition.journal
    ]
    return {
        "run_id": after.id,
        "revision": write.transition.before.revision,
        "status": after.status.value,
        "current_step": after.current_step,
        "attempt": after.attempt,
        "compensation_cursor": after.compensation_cursor,
        "state": Jsonb(after.state),
        "result": None if after.result is None else Jsonb(after.result),
        "awaiting_signal": after.awaiting_signal,
        "wake_at": after.wake_at,
        "error": after.error,
        "now": write.now,
        "journal": Jsonb(journal),
        "job_id": write.job_id,
        "jobs": Jsonb(jobs),
        "worker": worker,
        "lease_until": write.lease_until,
    }


def write_batch(
    conn: psycopg.Connection[Any], params: Sequence[Mapping[str, Any]]
) -> list[WriteResult]:
    """Apply the writes in one transaction (one round trip), in run-id order for locks."""
    order = sorted(range(len(params)), key=lambda i: params[i]["run_id"])
    results: list[WriteResult | None] = [None] * len(params)
    if len(params) == 1:
        rows = [conn.execute(_WRITE, params[0]).fetchone()]
    else:
        cursors = []
        with conn.pipeline(), conn.transaction():
            cursors = [conn.execute(_WRITE, params[i]) for i in order]
        rows = [cur.fetchone() for cur in cursors]
        rows = [rows[order.index(i)] for i in range(len(params))]
    for i, row in enumerate(rows):
        assert row is not None
        applied, next_id, queued = row
        results[i] = WriteResult(
            applied=bool(applied),
            next_job_id=None if next_id is None else int(next_id),
            queued=bool(queued),
        )
    return [r for r in results if r is not None]


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
"""


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
    assert row is not None
    return int(row[0])
