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
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import DDL, Connection, event

from durable_sa.store.models import jobs_table, outbox_table, runs_table

JOBS_CHANNEL: Final = "durable_sa_jobs"
"""Notified (empty payload) when unclaimed jobs are inserted or claims released."""
RUNS_CHANNEL: Final = "durable_sa_runs"
"""Notified (payload: run id) when a run reaches completed, failed or canceled."""
OUTBOX_CHANNEL: Final = "durable_sa_outbox"
"""Notified (empty payload) when jobs are written to the outbox, for relays to publish."""

JOBS_TRIGGER_DDL: Final = f"""
CREATE OR REPLACE FUNCTION durable_sa_notify_jobs() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('{JOBS_CHANNEL}', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS durable_sa_jobs_notify ON {jobs_table.name};
CREATE TRIGGER durable_sa_jobs_notify AFTER INSERT ON {jobs_table.name}
    FOR EACH ROW WHEN (NEW.claimed_by IS NULL) EXECUTE FUNCTION durable_sa_notify_jobs();
DROP TRIGGER IF EXISTS durable_sa_jobs_released ON {jobs_table.name};
CREATE TRIGGER durable_sa_jobs_released AFTER UPDATE OF claimed_until ON {jobs_table.name}
    FOR EACH ROW WHEN (NEW.claimed_until IS NULL AND OLD.claimed_until IS NOT NULL)
    EXECUTE FUNCTION durable_sa_notify_jobs();
"""

RUNS_TRIGGER_DDL: Final = f"""
CREATE OR REPLACE FUNCTION durable_sa_notify_runs() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('{RUNS_CHANNEL}', NEW.id::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS durable_sa_runs_notify ON {runs_table.name};
CREATE TRIGGER durable_sa_runs_notify AFTER UPDATE OF status ON {runs_table.name}
    FOR EACH ROW WHEN (NEW.status IN ('completed', 'failed', 'canceled')
                       AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION durable_sa_notify_runs();
"""

OUTBOX_TRIGGER_DDL: Final = f"""
CREATE OR REPLACE FUNCTION durable_sa_notify_outbox() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('{OUTBOX_CHANNEL}', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS durable_sa_outbox_notify ON {outbox_table.name};
CREATE TRIGGER durable_sa_outbox_notify AFTER INSERT ON {outbox_table.name}
    FOR EACH ROW EXECUTE FUNCTION durable_sa_notify_outbox();
"""
"""The trigger DDL, to copy into an Alembic migration (``op.execute(...)``)."""


def install_triggers(connection: Connection) -> None:
    """Create or replace the triggers (PostgreSQL only; idempotent)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(JOBS_TRIGGER_DDL)
        connection.exec_driver_sql(RUNS_TRIGGER_DDL)
        connection.exec_driver_sql(OUTBOX_TRIGGER_DDL)


_JOBS_DDL = DDL(JOBS_TRIGGER_DDL)  # type: ignore[no-untyped-call]
_RUNS_DDL = DDL(RUNS_TRIGGER_DDL)  # type: ignore[no-untyped-call]
_OUTBOX_DDL = DDL(OUTBOX_TRIGGER_DDL)  # type: ignore[no-untyped-call]
event.listen(jobs_table, "after_create", _JOBS_DDL.execute_if(dialect="postgresql"))
event.listen(runs_table, "after_create", _RUNS_DDL.execute_if(dialect="postgresql"))
event.listen(outbox_table, "after_create", _OUTBOX_DDL.execute_if(dialect="postgresql"))
