"""The fast lane's statements on SQLite (the standard library's ``sqlite3``).

Rules:
- Every call is one explicit transaction, ``BEGIN IMMEDIATE`` … ``COMMIT``, on a pooled
  connection that :func:`hold` puts in autocommit mode (``isolation_level = None``), so
  the driver never opens a transaction of its own. ``IMMEDIATE`` takes the write lock
  first: two writers never deadlock upgrading a read lock, and a writer that finds the
  lock taken waits out the busy timeout :func:`durable_sa.shell.configure_sqlite` sets.
  Any error rolls the transaction back and is raised again (the lane retries a group's
  writes one by one).
- Values are stored exactly as SQLAlchemy stores them through the engine's column types,
  so the ORM, the general path and users' queries read these rows as their own:
  timestamps as naive UTC text ``YYYY-MM-DD HH:MM:SS.ffffff`` (microseconds always
  written, so comparing the text compares the instants), JSON as ``json.dumps`` text
  with its default separators, and ``None`` in a JSON column as SQL ``NULL``.
- ``synchronous`` asks nothing of SQLite. PostgreSQL lets a claim skip the wait for its
  WAL flush; on SQLite that is already so for every commit: the engine runs WAL mode with
  ``synchronous = NORMAL``, where a commit appends to the WAL without an fsync (the WAL
  is synced at checkpoints). A claim cannot get cheaper, and a step write is as durable
  as any write of the general path on the same file.
- :func:`claim` needs SQLite 3.35 or later (``UPDATE … RETURNING``), the first version
  whose ``RETURNING`` the general path's claim relies on as well.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

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
    import sqlite3
    from collections.abc import Mapping, Sequence

    from durable_sa.core.snapshot import RunSnapshot

RUNS: Final = runs_table.name
JOBS: Final = jobs_table.name
JOURNAL: Final = journal_table.name

_dumps: Final = json.dumps
"""SQLAlchemy's JSON serializer on SQLite unless an engine names another."""
_loads: Final = json.loads


_UPDATE_RUN: Final = f"""
UPDATE {RUNS} SET updated_at = ?, status = ?, current_step = ?, attempt = ?,
    compensation_cursor = ?, state = ?, result = ?, awaiting_signal = ?, wake_at = ?,
    error = ?, revision = revision + 1
WHERE id = ? AND revision = ?
"""  # noqa: S608 - table names come from our metadata; values are bound

_INSERT_JOURNAL: Final = f"""
INSERT INTO {JOURNAL} (run_id, step_id, status, result, error, attempt, completed_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (run_id, step_id) DO NOTHING
"""  # noqa: S608 - table names come from our metadata; values are bound

_DELETE_JOB: Final = f"DELETE FROM {JOBS} WHERE id = ?"  # noqa: S608 - our table's name

_INSERT_JOB: Final = f"""
INSERT INTO {JOBS} (queue, kind, run_id, workflow_name, workflow_version, payload,
    max_attempts, available_at, attempts, claimed_by, claimed_until, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""  # noqa: S608 - table names come from our metadata; values are bound

_START_RUN: Final = f"""
INSERT INTO {RUNS} (workflow_name, workflow_version, input, status, state, current_step,
    total_steps, attempt, created_at, updated_at, revision)
VALUES (?, ?, ?, 'running', '{{}}', 0, ?, 1, ?, ?, 0)
"""  # noqa: S608 - table names come from our metadata; values are bound

_START_JOB: Final = f"""
INSERT INTO {JOBS} (queue, kind, run_id, workflow_name, workflow_version, payload,
    attempts, max_attempts, available_at, created_at)
VALUES (?, 'advance', ?, ?, ?, ?, 0, ?, ?, ?)
"""  # noqa: S608 - table names come from our metadata; values are bound

_previous_isolation: dict[int, Any] = {}
"""Each held connection's isolation level before :func:`hold`, by ``id``.

``sqlite3`` connections take neither attributes nor weak references. An entry left by a
connection thrown away while held is harmless: :func:`hold` overwrites it if the id is
ever reused, before the matching :func:`unhold` can read it.
"""


# ── values as SQLAlchemy stores them ───────────────────────────────────────────


def _stamp(value: datetime) -> str:
    """An aware datetime as :class:`~durable_sa.store.types.UTCDateTime` stores it."""
    if value.tzinfo is None or value.utcoffset() is None:
        msg = f"durable-sa stores aware datetimes only; got naive {value!r}"
        raise ValueError(msg)
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _stamp_or_none(value: datetime | None) -> str | None:
    return None if value is None else _stamp(value)


def _instant(text: str) -> datetime:
    """A stored timestamp back as an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _instant_or_none(text: str | None) -> datetime | None:
    return None if text is None else _instant(text)


def _json_or_null(value: object) -> str | None:
    """A JSON column's value: ``None`` is SQL ``NULL`` (``none_as_null``)."""
    return None if value is None else _dumps(value)


def _parsed(stored: object) -> Any:  # noqa: ANN401 - any JSON value
    """A JSON column's value back in Python (``NULL`` is ``None``).

    The columns are declared ``JSON``, which SQLite gives numeric affinity: a bare JSON
    number is stored as a number, and comes back as one.
    """
    return _loads(stored) if isinstance(stored, str) else stored


# ── holding a connection ───────────────────────────────────────────────────────


def hold(conn: sqlite3.Connection, *, synchronous: bool) -> None:
    """Put a pooled connection in autocommit mode: each call manages its transaction.

    ``synchronous`` needs nothing here (see the module docstring): WAL with
    ``synchronous = NORMAL`` already commits without waiting for the disk.
    """
    del synchronous
    _previous_isolation[id(conn)] = conn.isolation_level
    conn.isolation_level = None


def unhold(conn: sqlite3.Connection, *, synchronous: bool) -> None:
    """Give the connection its own isolation level back, outside any transaction."""
    del synchronous
    if conn.in_transaction:  # pragma: no cover - every call commits or rolls back
        conn.rollback()
    conn.isolation_level = _previous_isolation.pop(id(conn), "")


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back after an error, if SQLite has not already done so."""
    if conn.in_transaction:
        conn.rollback()


# ── claiming ───────────────────────────────────────────────────────────────────

_JOB_COLUMNS: Final = (
    "id, queue, kind, run_id, payload, attempts, max_attempts, available_at, claimed_until"
)
_RUN_COLUMNS: Final = ", ".join(RUN_FIELDS)


def claim_sql(*, queues: bool, workflows: bool, fifo: bool) -> str:
    """The claim statement: lease up to ``:limit`` due jobs, returning them.

    The filters travel as JSON: ``:queues`` a list of names, ``:workflows`` an object of
    name → version, so one statement serves any number of either.
    """
    filters = ""
    if queues:
        filters += " AND queue IN (SELECT value FROM json_each(:queues))"
    if workflows:
        filters += (
            " AND (workflow_name, workflow_version) IN"
            " (SELECT key, value FROM json_each(:workflows))"
        )
    order = "id" if fifo else "available_at, id"
    return f"""
UPDATE {JOBS} SET claimed_by = :worker, claimed_until = :until, attempts = attempts + 1
WHERE id IN (
    SELECT id FROM {JOBS}
    WHERE available_at <= :now
        AND (claimed_until IS NULL OR claimed_until < :now){filters}
    ORDER BY {order} LIMIT :limit)
RETURNING {_JOB_COLUMNS}
"""  # noqa: S608 - table and column names come from our metadata; values are bound


@lru_cache(maxsize=128)
def _runs_sql(count: int) -> str:
    """Read ``count`` runs by id (one statement per group size, cached by the driver)."""
    marks = ", ".join("?" * count)
    return f"SELECT {_RUN_COLUMNS} FROM {RUNS} WHERE id IN ({marks})"  # noqa: S608 - ours


def _job_from_row(row: Sequence[Any]) -> ClaimedJob:
    """A claimed job; a payload that is not JSON is handed on raw (and dead-lettered)."""
    payload: Any = row[4]
    with contextlib.suppress(ValueError):
        payload = _parsed(payload)
    return ClaimedJob(
        id=row[0],
        queue=row[1],
        kind=row[2],
        run_id=row[3],
        payload=payload,
        attempts=row[5],
        max_attempts=row[6],
        available_at=_instant(row[7]),
        claimed_until=_instant_or_none(row[8]),
    )


_JSON_FIELDS: Final = tuple(RUN_FIELDS.index(name) for name in ("input", "state", "result"))


def _run_from_row(row: Sequence[Any]) -> RunSnapshot:
    """A run as SQLite stores it: JSON as text and instants as naive UTC text."""
    values = list(row)
    for index in _JSON_FIELDS:
        values[index] = _parsed(values[index])
    values[WAKE_AT] = _instant_or_none(values[WAKE_AT])
    return run_snapshot(values)


def _claim_params(query: ClaimQuery, now: datetime, limit: int) -> dict[str, Any]:
    stamp = _stamp(now)
    params: dict[str, Any] = {
        "worker": query.worker,
        "until": _stamp(now + query.lease),
        "now": stamp,
        "limit": limit,
        "workflows": _dumps(dict(query.workflows)),
    }
    if query.queues is not None:
        params["queues"] = _dumps(list(query.queues))
    return params


def claim(conn: sqlite3.Connection, query: ClaimQuery, *, now: datetime, limit: int) -> list[Claim]:
    """Lease up to ``limit`` due jobs and read their runs, in one transaction.

    A run that cannot be read back (unparseable JSON) comes without its snapshot, which
    sends its job to the general path; a payload that is not JSON is handed on raw.
    """
    if limit <= 0:  # SQLite reads a negative LIMIT as none at all
        return []
    params = _claim_params(query, now, limit)
    conn.execute("BEGIN IMMEDIATE")
    try:
        jobs = conn.execute(query.sql, params).fetchall()
        run_ids = sorted({row[3] for row in jobs if row[3] is not None})
        runs = conn.execute(_runs_sql(len(run_ids)), run_ids).fetchall() if run_ids else []
        conn.commit()
    except BaseException:
        _rollback(conn)
        raise
    by_id = {row[0]: row for row in runs}
    jobs.sort(key=lambda row: (row[7], row[0]))  # RETURNING has no order
    claims: list[Claim] = []
    for row in jobs:
        run_row = by_id.get(row[3])
        run: RunSnapshot | None = None
        if run_row is not None:
            try:
                run = _run_from_row(run_row)
            except (TypeError, ValueError):  # the general path reads it again, reports it
                run = None
        claims.append(Claim(job=_job_from_row(row), run=run))
    return claims


# ── writing steps ──────────────────────────────────────────────────────────────


def write_row(write: StepWrite, *, queue: str, max_attempts: int) -> dict[str, Any]:
    """The parameters of ``write``'s statements, encoded on the calling slot.

    ``run`` holds the run's new columns then its id and the revision it was read at;
    ``journal`` and ``jobs`` are rows lacking only what the group supplies (the time,
    and for the claimed first job, the worker).
    """
    transition = write.transition
    after = transition.after
    run_id = after.id
    return {
        "run_id": run_id,
        "run": (
            after.status.value,
            after.current_step,
            after.attempt,
            after.compensation_cursor,
            _dumps(after.state),
            _json_or_null(after.result),
            after.awaiting_signal,
            _stamp_or_none(after.wake_at),
            after.error,
            run_id,
            transition.before.revision,
        ),
        "job_id": write.job_id,
        "lease_until": _stamp_or_none(write.lease_until),
        "journal": [
            (run_id, w.step_id, w.status.value, _json_or_null(w.result), w.error, w.attempt)
            for w in transition.journal
        ],
        "jobs": [
            (
                queue,
                spec.payload.kind,
                run_id,
                spec.workflow,
                spec.version,
                _dumps(job_payload(spec.payload)),
                max_attempts,
                _stamp(spec.available_at),
            )
            for spec in transition.jobs
        ],
    }


def write_group(
    conn: sqlite3.Connection,
    rows: Sequence[Mapping[str, Any]],
    *,
    worker: str,
    now: datetime,
) -> list[WriteResult]:
    """Apply writes of distinct runs in one transaction; results in input order.

    Each run's row is updated only if it still has the revision the write was decided
    on; only then are its journal rows, its finished job and its next jobs written.
    """
    stamp = _stamp(now)
    results: list[WriteResult] = []
    journal: list[tuple[Any, ...]] = []
    finished: list[tuple[int]] = []
    queued: list[tuple[Any, ...]] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for row in rows:
            if conn.execute(_UPDATE_RUN, (stamp, *row["run"])).rowcount != 1:
                results.append(WriteResult(applied=False))
                continue
            journal.extend((*entry, stamp) for entry in row["journal"])
            finished.append((row["job_id"],))
            jobs, lease_until = row["jobs"], row["lease_until"]
            next_job_id = None
            if jobs and lease_until is not None:  # the first is claimed: continue in place
                next_job_id = conn.execute(
                    _INSERT_JOB, (*jobs[0], 1, worker, lease_until, stamp)
                ).lastrowid
                jobs = jobs[1:]
            queued.extend((*job, 0, None, None, stamp) for job in jobs)
            results.append(WriteResult(applied=True, next_job_id=next_job_id, queued=bool(jobs)))
        if journal:
            conn.executemany(_INSERT_JOURNAL, journal)
        if finished:
            conn.executemany(_DELETE_JOB, finished)
        if queued:
            conn.executemany(_INSERT_JOB, queued)
        conn.commit()
    except BaseException:
        _rollback(conn)
        raise
    return results


# ── starting runs ──────────────────────────────────────────────────────────────


def _inserted(cursor: sqlite3.Cursor) -> int:
    """The rowid an INSERT just made."""
    if cursor.lastrowid is None:  # pragma: no cover - an INSERT always sets it
        msg = "starting a run returned no id"
        raise RuntimeError(msg)
    return cursor.lastrowid


def start_run(  # noqa: PLR0913 - the run's columns, keyword-only
    conn: sqlite3.Connection,
    *,
    name: str,
    version: str,
    input_data: Mapping[str, Any],
    total_steps: int,
    now: datetime,
    queue: str,
    max_attempts: int,
) -> int:
    """Insert a running run and its first job in one transaction; the run's id."""
    stamp = _stamp(now)
    conn.execute("BEGIN IMMEDIATE")
    try:
        run_id = _inserted(
            conn.execute(_START_RUN, (name, version, _dumps(input_data), total_steps, stamp, stamp))
        )
        payload = _dumps({"run_id": run_id, "step_index": 0, "attempt": 1})
        conn.execute(
            _START_JOB, (queue, run_id, name, version, payload, max_attempts, stamp, stamp)
        )
        conn.commit()
    except BaseException:
        _rollback(conn)
        raise
    return run_id
