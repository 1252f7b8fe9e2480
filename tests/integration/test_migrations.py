"""The changelog's upgrade SQL, run on a database written by the previous release.

Each test builds the old shape (today's tables minus the new columns, rows as the old
release wrote them), runs the SQL exactly as ``CHANGELOG.md`` shows it, and checks that
the runs carry on: a suspended signal step and agent step accept their resume, and a
resume payload still reaches the step that reads it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from durable_sa import durable
from durable_sa.testing import drain

if TYPE_CHECKING:
    from durable_sa import Durable

CHANGELOG = Path(__file__).resolve().parents[2] / "CHANGELOG.md"
NEW_COLUMNS = ("wait_kind", "wait_step", "resume_data")


def changelog_sql(marker: str) -> list[str]:
    """The statements of the ```sql block right after ``<!-- marker -->``."""
    text = CHANGELOG.read_text(encoding="utf-8")
    found = re.search(rf"<!-- {re.escape(marker)} -->\s*```sql\n(.*?)```", text, re.DOTALL)
    assert found, f"no SQL under <!-- {marker} --> in CHANGELOG.md"
    return [part.strip() for part in found.group(1).split(";") if part.strip()]


def _old_run(conn: sa.Connection, name: str, state: dict[str, Any], **columns: Any) -> int:
    values = {
        "workflow_name": name,
        "input": "{}",
        "state": json.dumps(state),
        "current_step": 0,
        "total_steps": 2,
        "attempt": 1,
        "revision": 0,
        "created_at": sa.func.now(),
        "updated_at": sa.func.now(),
        **columns,
    }
    names = ", ".join(values)
    params = {k: v for k, v in values.items() if not isinstance(v, sa.sql.ClauseElement)}
    holders = ", ".join("CURRENT_TIMESTAMP" if k not in params else f":{k}" for k in values)
    row = conn.execute(
        sa.text(f"INSERT INTO durable_runs ({names}) VALUES ({holders}) RETURNING id"),  # noqa: S608 - our own column names
        params,
    )
    return int(row.scalar_one())


def test_the_wait_columns_upgrade_keeps_suspended_runs_going(engine: Durable) -> None:
    durable("mig-signal").wait_for_signal("approve", "go").step(
        "after", lambda ctx: ctx.resume_data()
    )
    durable("mig-agent").step(
        "think", lambda ctx: ctx.resume_data() or {"status": "suspended", "state": {"turn": 1}}
    ).step("after", lambda ctx: ctx.results["think"])
    durable("mig-resumed").step("reads", lambda ctx: ctx.resume_data()).step("done", lambda ctx: 1)
    dialect = engine.sa_engine.dialect.name
    with engine.sa_engine.begin() as conn:
        for column in NEW_COLUMNS:
            conn.exec_driver_sql(f"ALTER TABLE durable_runs DROP COLUMN {column}")
        if dialect == "postgresql":  # the previous release's JSON columns were JSONB
            for column in ("input", "state", "result"):
                conn.exec_driver_sql(
                    f"ALTER TABLE durable_runs ALTER COLUMN {column} TYPE jsonb "
                    f"USING {column}::jsonb"
                )
        signal = _old_run(
            conn,
            "mig-signal",
            {"__durable_wait__": {"kind": "signal", "step": "approve", "signal": "go"}},
            status="suspended",
            awaiting_signal="go",
        )
        agent = _old_run(
            conn,
            "mig-agent",
            {
                "think": {"status": "suspended", "state": {"turn": 1}},
                "__durable_wait__": {"kind": "agent", "step": "think"},
            },
            status="suspended",
            awaiting_signal="think",
        )
        resumed = _old_run(
            conn,
            "mig-resumed",
            {"__durable_resume__": {"approved_by": "ops"}},
            status="running",
        )
        for statement in changelog_sql(f"migration:wait-columns:{dialect}"):
            conn.exec_driver_sql(statement)

    assert engine.status(agent).awaiting_signal == "think"
    assert engine.status(agent).wait_kind == "agent"
    assert engine.status(signal).awaiting_signal == "go"
    assert engine.recover() == 1  # the running run had no job in this made-up database
    assert engine.resume(signal, "go", {"ok": True}).accepted
    assert engine.resume(agent, "think", {"answer": 42}).accepted
    drain(engine)
    assert engine.status(signal).results == {"approve": {"ok": True}, "after": {"ok": True}}
    assert engine.status(agent).results["after"] == {"answer": 42}
    assert engine.status(resumed).results["reads"] == {"approved_by": "ops"}
    with engine.sa_engine.connect() as conn:
        leftovers = conn.execute(
            sa.text("SELECT state FROM durable_runs WHERE id IN (:a, :b, :c)"),
            {"a": signal, "b": agent, "c": resumed},
        ).scalars()
        for state in leftovers:
            loaded = json.loads(state) if isinstance(state, str) else state
            assert not any(key.startswith("__durable") for key in loaded)


def test_the_journal_error_columns_upgrade_records_failures_again(engine: Durable) -> None:
    def broken(ctx: object) -> None:
        key = "missing"
        raise KeyError(key)

    durable("mig-fails").step("a", lambda ctx: 1).step("b", broken, max_retries=1)
    dialect = engine.sa_engine.dialect.name
    with engine.sa_engine.begin() as conn:
        for column in ("error_type", "traceback"):
            conn.exec_driver_sql(f"ALTER TABLE durable_journal DROP COLUMN {column}")
        for statement in changelog_sql(f"migration:journal-errors:{dialect}"):
            conn.exec_driver_sql(statement)
    run = engine.start("mig-fails").run_id
    drain(engine)
    assert engine.status(run).error == "KeyError: 'missing'"
    with engine.sa_engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT error, error_type, traceback FROM durable_journal "
                "WHERE run_id = :run AND step_id = 'b'"
            ),
            {"run": run},
        ).one()
    assert row.error_type == "KeyError"
    assert "KeyError: 'missing'" in row.traceback


def test_the_dead_letter_resolution_columns_upgrade_keeps_old_letters_open(
    engine: Durable,
) -> None:
    durable("mig-letters").step("a", lambda ctx: 1)
    run = engine.start("mig-letters").run_id
    job = engine.admin.claim()
    assert job is not None
    dialect = engine.sa_engine.dialect.name
    with engine.sa_engine.begin() as conn:
        for column in ("resolved_at", "resolved_by"):
            conn.exec_driver_sql(f"ALTER TABLE durable_dead_letters DROP COLUMN {column}")
        conn.execute(  # a letter the previous release wrote
            sa.text(
                "INSERT INTO durable_dead_letters (job_id, queue, kind, run_id, payload, "
                "attempts, error, failed_at) VALUES (:job, 'default', 'advance', :run, "
                ":payload, 5, 'crashed', CURRENT_TIMESTAMP)"
            ),
            {"job": job.id, "run": run, "payload": json.dumps(job.payload)},
        )
        conn.execute(sa.text("DELETE FROM durable_jobs WHERE id = :job"), {"job": job.id})
        for statement in changelog_sql(f"migration:dead-letters-resolved:{dialect}"):
            conn.exec_driver_sql(statement)
    (letter,) = engine.admin.dead_letters()
    assert engine.status(run).stranded == f"dead letter {letter.id}: crashed"
    engine.admin.requeue(letter.id)
    drain(engine)
    assert engine.status(run).status == "completed"
    assert engine.admin.dead_letters(include_resolved=True)[0].resolved_by == "requeue"
