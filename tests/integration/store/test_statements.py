"""The grouped write probes the runs' and jobs' primary keys, whatever the tables hold.

PostgreSQL estimates a JSON array at a hundred rows whatever its length; with that guess
and a few thousand rows in a table it would rather scan the whole table than probe its
index, on every commit. These tests read the plan of the real statement.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from durable_sa import Durable, durable
from durable_sa.testing import drain

_FILL = """
INSERT INTO durable_runs (workflow_name, input, status, state, current_step, total_steps,
    attempt, revision, created_at, updated_at)
SELECT 'filler', '{}', 'completed', '{}', 1, 1, 1, 1, now(), now()
FROM generate_series(1, 5000);
INSERT INTO durable_jobs (queue, kind, run_id, workflow_name, payload, attempts, max_attempts,
    available_at, created_at)
SELECT 'elsewhere', 'advance', id, 'filler', '{}', 0, 5, now() + interval '1 day', now()
FROM durable_runs WHERE workflow_name = 'filler';
"""


def test_the_grouped_write_probes_primary_keys(pg_engine: sa.Engine) -> None:
    engine = Durable(pg_engine)
    engine.create_tables()
    with pg_engine.begin() as conn:
        conn.exec_driver_sql(_FILL)
    plans: list[str] = []

    def explain(
        conn: sa.Connection, cursor: Any, statement: str, parameters: Any, *_: object
    ) -> None:
        if "json_to_recordset" in statement and statement.lstrip().startswith("WITH written"):
            explained = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            explained.execute("EXPLAIN " + statement, parameters)
            plans.append("\n".join(row[0] for row in explained.fetchall()))

    durable("probed").step("a", lambda _ctx: 1).step("b", lambda _ctx: 2)
    run_id = engine.start("probed").run_id
    event.listen(pg_engine, "before_cursor_execute", explain)
    try:
        drain(engine)
    finally:
        event.remove(pg_engine, "before_cursor_execute", explain)
    assert engine.status(run_id).status == "completed"
    assert plans, "the grouped write was not executed"
    for plan in plans:
        assert "Seq Scan on durable_runs" not in plan, plan
        assert "Seq Scan on durable_jobs" not in plan, plan


_BACKLOG_RUNS = """
INSERT INTO durable_runs (workflow_name, input, status, state, current_step, total_steps,
    attempt, revision, created_at, updated_at)
SELECT 'backlog', '{}', 'running', '{}', 0, 1, 1, 0, now(), now()
FROM generate_series(1, 5000)
"""
_BACKLOG_JOBS = """
INSERT INTO durable_jobs (queue, kind, run_id, workflow_name, workflow_version, payload,
    attempts, max_attempts, available_at, created_at)
SELECT 'default', 'advance', id, 'backlog', %(version)s, '{}', 0, 5,
    now() - interval '1 minute', now()
FROM durable_runs WHERE workflow_name = 'backlog'
"""


def test_a_workers_claim_reads_the_due_index_with_stale_statistics(pg_engine: sa.Engine) -> None:
    """Statistics taken while the jobs table was empty, then a backlog of 5,000: the
    worker's claim still walks the due-order index instead of sorting the backlog."""
    engine = Durable(pg_engine)
    engine.create_tables()
    with pg_engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE durable_jobs")
    backlog = durable("backlog").step("a", lambda _ctx: 1)
    with pg_engine.begin() as conn:
        conn.exec_driver_sql(_BACKLOG_RUNS)
        conn.exec_driver_sql(_BACKLOG_JOBS, {"version": backlog.version})
    plans: list[str] = []

    def explain(
        conn: sa.Connection, cursor: Any, statement: str, parameters: Any, *_: object
    ) -> None:
        if "SKIP LOCKED" in statement:
            explained = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            explained.execute("EXPLAIN " + statement, parameters)
            plans.append("\n".join(row[0] for row in explained.fetchall()))

    lane = engine.worker(concurrency=1)._pipeline  # the pipeline, not started: one claim
    assert lane is not None
    event.listen(pg_engine, "before_cursor_execute", explain)
    try:
        claimed = lane.next_work(may_claim=True)
    finally:
        event.remove(pg_engine, "before_cursor_execute", explain)
        lane.close()
    assert claimed is not None
    assert plans, "the claim was not executed"
    assert "Seq Scan on durable_jobs" not in plans[0], plans[0]
    assert "Sort" not in plans[0], plans[0]
