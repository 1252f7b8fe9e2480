"""Every write goes through the application's engine: its serializer, events and schemas.

The one applier builds its statements from the ORM's tables and runs them on the
engine, so what the application configured applies to the engine's writes too, whether
a run is started, drained or run by a worker.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from durable_sa import Durable, durable, metadata
from durable_sa.store.notify import trigger_ddl
from durable_sa.testing import drain

FAST = {"heartbeat": timedelta(seconds=0.2), "lease": timedelta(seconds=2), "poll_interval": 0.05}


def _define() -> None:
    durable("settings-wf").step("a", lambda ctx: {"b": 2, "a": 1}).parallel(
        "p", [("x", lambda ctx: 1), ("y", lambda ctx: 2)]
    ).step("c", lambda ctx: ctx.results["a"])


def test_the_engines_json_serializer_and_events_see_every_write(
    durable_each_database_url: str,
) -> None:
    serialized: list[str] = []

    def serializer(value: Any) -> str:
        text = json.dumps(value, sort_keys=True)
        serialized.append(text)
        return text

    sa_engine = sa.create_engine(durable_each_database_url, json_serializer=serializer)
    statements: list[str] = []
    sa.event.listen(
        sa_engine,
        "before_cursor_execute",
        lambda _c, _cur, statement, *_rest: statements.append(statement),
    )
    engine = Durable(sa_engine)
    engine.create_tables()
    _define()
    drained = engine.start("settings-wf").run_id
    drain(engine)
    with engine.worker(concurrency=2, **FAST):
        worked = engine.start("settings-wf").run_id
        assert engine.wait(worked, timeout=30).status == "completed"
    assert engine.status(drained).results == engine.status(worked).results
    assert any('"a": 1, "b": 2' in text for text in serialized)  # the run's state
    written = [s for s in statements if "durable_runs" in s and "UPDATE" in s]
    assert written, "the engine's events saw no write of a run"
    sa_engine.dispose()


def test_a_schema_translate_map_puts_every_row_in_the_mapped_schema(
    durable_postgres_url: str,
) -> None:
    schema = f"tenant_{uuid.uuid4().hex[:8]}"
    plain = sa.create_engine(durable_postgres_url)
    with plain.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    mapped = plain.execution_options(schema_translate_map={None: schema})
    engine = Durable(mapped)
    engine.create_tables()  # the tables and their NOTIFY triggers, all in the schema
    _define()
    drained = engine.start("settings-wf").run_id
    drain(engine)
    # A limit's places go back by the function in the schema, even while runs wait.
    durable("settings-limited", max_active=1).step("only", lambda ctx: 1)
    with engine.worker(concurrency=2, **FAST):
        worked = engine.start("settings-wf").run_id
        assert engine.wait(worked, timeout=30).status == "completed"
        limited = [engine.start("settings-limited").run_id for _ in range(3)]
        assert [engine.wait(r, timeout=30).status for r in limited] == ["completed"] * 3
    assert engine.status(drained).status == "completed"
    with plain.connect() as conn:
        in_schema = conn.execute(
            sa.text(f"SELECT count(*) FROM {schema}.durable_runs WHERE status = 'completed'")  # noqa: S608 - our own schema name
        ).scalar_one()
        elsewhere = conn.execute(
            sa.text(
                "SELECT count(*) FROM information_schema.tables "
                "WHERE table_name = 'durable_runs' AND table_schema <> :schema"
            ),
            {"schema": schema},
        ).scalar_one()
        triggers = conn.execute(
            sa.text(
                "SELECT n.nspname, count(*) FROM pg_trigger t "
                "JOIN pg_class c ON c.oid = t.tgrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE t.tgname LIKE 'durable_sa_%' GROUP BY n.nspname"
            )
        ).all()
        functions = conn.execute(
            sa.text(
                "SELECT n.nspname, count(*) FROM pg_proc p "
                "JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE p.proname LIKE 'durable_sa_notify_%' GROUP BY n.nspname"
            )
        ).all()
    assert in_schema == 5
    assert elsewhere == 0
    assert triggers == [(schema, 4)]  # jobs: inserted and released; runs; outbox
    assert functions == [(schema, 3)]
    plain.dispose()


def test_the_trigger_ddl_for_a_schema_installs_into_that_schema(durable_postgres_url: str) -> None:
    schema = f"Tenant_{uuid.uuid4().hex[:8]}"  # mixed case: it must be quoted
    plain = sa.create_engine(durable_postgres_url)
    mapped = plain.execution_options(schema_translate_map={None: schema})
    with plain.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    with mapped.begin() as conn:
        for table in metadata.sorted_tables:
            table.create(conn)  # each table's own after_create event adds its trigger
        conn.exec_driver_sql(trigger_ddl(schema))  # and the migration recipe: idempotent
        count = conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE t.tgname LIKE 'durable_sa_%' AND n.nspname = :schema"
            ),
            {"schema": schema},
        ).scalar_one()
    assert count == 4
    plain.dispose()


def _creator_engine(url: str, opened: list[int]) -> sa.Engine:
    """An engine whose URL names no server: only its ``creator`` knows how to connect."""
    import psycopg  # noqa: PLC0415 - PostgreSQL tests only

    conninfo = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)

    def connect() -> psycopg.Connection[Any]:
        opened.append(1)
        return psycopg.connect(conninfo)

    return sa.create_engine("postgresql+psycopg://", creator=connect)


def test_listening_and_waiting_use_the_engines_own_connections(durable_postgres_url: str) -> None:
    opened: list[int] = []
    sa_engine = _creator_engine(durable_postgres_url, opened)
    engine = Durable(sa_engine)
    engine.create_tables()
    _define()
    slow = {**FAST, "poll_interval": 30.0}  # only a NOTIFY can wake this worker in time
    with engine.worker(concurrency=1, **slow) as worker:
        assert worker._listener.connected.wait(10), "the worker never listened"
        before = len(opened)
        run = engine.start("settings-wf").run_id
        final = engine.wait(run, timeout=10)  # woken by NOTIFY on the creator's connection
    assert final.status == "completed"
    assert len(opened) > before  # wait() opened its own connection through creator=
    sa_engine.dispose()


async def _wait_async(engine: Durable, run_id: int) -> str:
    return (await engine.wait_async(run_id, timeout=10)).status


def test_wait_async_uses_the_engines_own_connection(durable_postgres_url: str) -> None:
    import asyncio  # noqa: PLC0415

    opened: list[int] = []
    sa_engine = _creator_engine(durable_postgres_url, opened)
    engine = Durable(sa_engine)
    engine.create_tables()
    _define()
    with engine.worker(concurrency=1, **FAST):
        run = engine.start("settings-wf").run_id
        assert asyncio.run(_wait_async(engine, run)) == "completed"
    sa_engine.dispose()
