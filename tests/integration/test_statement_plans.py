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
        if "jsonb_to_recordset" in statement and statement.lstrip().startswith("WITH written"):
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
