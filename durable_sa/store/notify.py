"""PostgreSQL wake-ups: triggers that NOTIFY when a job is queued or a run ends.

Rules:
- The NOTIFY is sent by a trigger in the transaction that inserts the job (or ends the
  run), so it costs the engine no round trip and reaches listeners only on commit.
- Jobs notify when an unclaimed job is inserted and when a claim is released
  (PostgreSQL folds equal notifications of one transaction into one), never on a claim
  nor on a step a worker hands to itself (inserted already claimed), so neither wakes
  every idle worker for nothing. Runs notify once per row that reaches a terminal
  status, with the run id as payload.
- The outbox notifies on every insert, for the relays (one per transaction).
- Listeners are only an optimisation: workers and waiters poll as well, so a database
  migrated without these triggers still works, only with more latency.
- The DDL follows the tables: under a ``schema_translate_map`` (one schema per tenant),
  the trigger functions and triggers are created in the schema the tables live in.
- What is created can be dropped: :func:`drop_trigger_ddl` removes every trigger and
  function :func:`trigger_ddl` creates (an Alembic migration's ``downgrade()``).
- The DDL helpers also carry the two functions autogenerate cannot see: the rate-limit
  grant function (:mod:`durable_sa.store.grant_function`) and the give-back function of
  limits (:mod:`durable_sa.store.slot_function`); unlike the triggers, rate-limited
  steps and workflows with limits on PostgreSQL need them.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import Connection, Table, event

from durable_sa.store import slot_function
from durable_sa.store.ddl_names import qualified, schema_of
from durable_sa.store.grant_function import (
    drop_function_ddl,
    function_ddl,
    install_function,
)
from durable_sa.store.models import jobs_table, outbox_table, runs_table

JOBS_CHANNEL: Final = "durable_sa_jobs"
"""Notified (empty payload) when unclaimed jobs are inserted or claims released."""
RUNS_CHANNEL: Final = "durable_sa_runs"
"""Notified (payload: run id) when a run reaches completed, failed or canceled."""
OUTBOX_CHANNEL: Final = "durable_sa_outbox"
"""Notified (empty payload) when jobs are written to the outbox, for relays to publish."""


TRIGGERS: Final[dict[str, tuple[str, ...]]] = {
    jobs_table.name: ("durable_sa_jobs_notify", "durable_sa_jobs_released"),
    runs_table.name: ("durable_sa_runs_notify",),
    outbox_table.name: ("durable_sa_outbox_notify",),
}
"""Each table's triggers, by name (the DDL below creates exactly these)."""


def _function(channel: str) -> str:
    """The name of the trigger function that notifies ``channel``."""
    return f"durable_sa_notify_{channel.removeprefix('durable_sa_')}"


FUNCTIONS: Final[dict[str, str]] = {
    jobs_table.name: _function(JOBS_CHANNEL),
    runs_table.name: _function(RUNS_CHANNEL),
    outbox_table.name: _function(OUTBOX_CHANNEL),
}
"""Each table's trigger function, by name."""


def _notify_ddl(schema: str | None, table: str, channel: str, payload: str, triggers: str) -> str:
    """A function that NOTIFYs ``channel`` with ``payload``, and ``table``'s triggers on it.

    ``triggers`` is the trigger DDL with ``{table}`` and ``{fn}`` left to fill in.
    """
    fn = qualified(schema, _function(channel))
    function = f"""
CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('{channel}', {payload});
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
"""
    return function + triggers.format(table=qualified(schema, table), fn=fn)


def _jobs_ddl(schema: str | None) -> str:
    return _notify_ddl(
        schema,
        jobs_table.name,
        JOBS_CHANNEL,
        "''",
        """DROP TRIGGER IF EXISTS durable_sa_jobs_notify ON {table};
CREATE TRIGGER durable_sa_jobs_notify AFTER INSERT ON {table}
    FOR EACH ROW WHEN (NEW.claimed_by IS NULL) EXECUTE FUNCTION {fn}();
DROP TRIGGER IF EXISTS durable_sa_jobs_released ON {table};
CREATE TRIGGER durable_sa_jobs_released AFTER UPDATE OF claimed_until ON {table}
    FOR EACH ROW WHEN (NEW.claimed_until IS NULL AND OLD.claimed_until IS NOT NULL)
    EXECUTE FUNCTION {fn}();
""",
    )


def _runs_ddl(schema: str | None) -> str:
    return _notify_ddl(
        schema,
        runs_table.name,
        RUNS_CHANNEL,
        "NEW.id::text",
        """DROP TRIGGER IF EXISTS durable_sa_runs_notify ON {table};
CREATE TRIGGER durable_sa_runs_notify AFTER UPDATE OF status ON {table}
    FOR EACH ROW WHEN (NEW.status IN ('completed', 'failed', 'canceled')
                       AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION {fn}();
""",
    )


def _outbox_ddl(schema: str | None) -> str:
    return _notify_ddl(
        schema,
        outbox_table.name,
        OUTBOX_CHANNEL,
        "''",
        """DROP TRIGGER IF EXISTS durable_sa_outbox_notify ON {table};
CREATE TRIGGER durable_sa_outbox_notify AFTER INSERT ON {table}
    FOR EACH ROW EXECUTE FUNCTION {fn}();
""",
    )


_DDL_BY_TABLE: Final = {
    jobs_table.name: _jobs_ddl,
    runs_table.name: _runs_ddl,
    outbox_table.name: _outbox_ddl,
}

JOBS_TRIGGER_DDL: Final = _jobs_ddl(None)
RUNS_TRIGGER_DDL: Final = _runs_ddl(None)
OUTBOX_TRIGGER_DDL: Final = _outbox_ddl(None)
"""The trigger DDL for tables on the search path, to copy into an Alembic migration
(``op.execute(...)``); :func:`trigger_ddl` gives it for another schema."""


def trigger_ddl(schema: str | None = None) -> str:
    """All three triggers' DDL for tables in ``schema`` (``None``: the search path).

    ``schema`` is quoted as PostgreSQL needs; a migration for one tenant's schema runs
    ``op.execute(trigger_ddl("tenant_42"))``.
    """
    quoted = _quoted(schema)
    triggers = "".join(make(quoted) for make in _DDL_BY_TABLE.values())
    return triggers + function_ddl(quoted) + slot_function.function_ddl(quoted)


def _quoted(schema: str | None) -> str | None:
    """``schema`` quoted as PostgreSQL needs, or ``None`` for the search path."""
    from sqlalchemy.dialects import postgresql  # noqa: PLC0415 - only to quote a name

    preparer = postgresql.dialect().identifier_preparer  # type: ignore[no-untyped-call]
    return None if schema is None else preparer.quote(schema)


def drop_trigger_ddl(schema: str | None = None) -> str:
    """DDL that drops the triggers and functions :func:`trigger_ddl` creates in ``schema``.

    Tolerant (``IF EXISTS``), so it also runs on a database migrated without them; the
    tables must still exist, so a migration's ``downgrade()`` runs it before dropping them.
    """
    quoted = _quoted(schema)
    drops = []
    for table, names in TRIGGERS.items():
        drops += [f"DROP TRIGGER IF EXISTS {name} ON {qualified(quoted, table)};" for name in names]
        drops.append(f"DROP FUNCTION IF EXISTS {qualified(quoted, FUNCTIONS[table])}();")
    functions = drop_function_ddl(quoted) + slot_function.drop_function_ddl(quoted)
    return "\n".join(drops) + "\n" + functions


def install_triggers(connection: Connection) -> None:
    """Create or replace the triggers (PostgreSQL only; idempotent)."""
    if connection.dialect.name == "postgresql":
        for table in (jobs_table, runs_table, outbox_table):
            connection.exec_driver_sql(_DDL_BY_TABLE[table.name](schema_of(connection, table)))
        install_function(connection)
        slot_function.install_function(connection)


def _after_create(table: Table, connection: Connection, **_: Any) -> None:  # noqa: ANN401
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(_DDL_BY_TABLE[table.name](schema_of(connection, table)))


for _table in (jobs_table, runs_table, outbox_table):
    event.listen(_table, "after_create", _after_create)
