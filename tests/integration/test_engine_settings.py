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
    with mapped.begin() as conn:
        # The NOTIFY trigger DDL is raw SQL that the map does not rewrite (an open point of
        # the architecture issue): a search_path puts the triggers beside the tables.
        conn.exec_driver_sql(f"SET LOCAL search_path TO {schema}")
        metadata.create_all(conn)
    engine = Durable(mapped)
    _define()
    drained = engine.start("settings-wf").run_id
    drain(engine)
    with engine.worker(concurrency=2, **FAST):
        worked = engine.start("settings-wf").run_id
        assert engine.wait(worked, timeout=30).status == "completed"
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
    assert in_schema == 2
    assert elsewhere == 0
    plain.dispose()
