"""PostgreSQL: a rate-limit grant in one round trip, by a function in the database.

Why a function: a grant must count the grants in the window *after* the limit's row is
locked, or two workers that waited on the same lock would decide on the same count. In
one plain statement the count would read the snapshot taken before the lock was
granted; inside a PL/pgSQL function each statement reads a fresh snapshot at READ
COMMITTED, so the function locks, reads the clock, counts and records in the order a
transaction of several statements would, in one call on an autocommit connection
(a worker holds one for it: no ``BEGIN``, no ``COMMIT``, one round trip).

Rules:
- :func:`durable_sa_take_grants` locks the limits named in name order, reads
  ``clock_timestamp()`` once they are held, deletes each limit's grants that left the
  window, counts the others, and records the grants only if *every* limit has room
  (``in_window + wanted <= limit``: the rule of :func:`durable_sa.core.rates.
  must_leave`); it returns what it read, and the caller's pure decision
  (:func:`durable_sa.core.rates.decide_grant`) says how long a refused step waits. The
  two agree by construction of the rule and are checked against each other on every
  call (:mod:`durable_sa.store.controls`). With ``p_ahead`` (a worker's batch), grants
  are recorded their limit's :func:`~durable_sa.core.grant_batches.horizon` ahead of
  ``clock_timestamp()``, in the same integer microseconds as the Python side computes,
  so a worker can name them to give back the ones it did not use.
- The DDL follows the tables like the NOTIFY triggers' (:mod:`durable_sa.store.notify`):
  created with the grants table by ``create_tables()``, by ``create_triggers(op)`` in
  an Alembic migration, in the schema the tables live in, and dropped by
  ``drop_triggers(op)``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Final

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    DateTime,
    Integer,
    String,
    bindparam,
    column,
    text,
)

from durable_sa.core.grant_batches import HORIZON_SHARE, MAX_HORIZON
from durable_sa.store.ddl_names import made_with, qualified, schema_of
from durable_sa.store.models import rate_grants_table, rate_limits_table

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.sql.selectable import TextualSelect

FUNCTION: Final = "durable_sa_take_grants"
"""The function's name (in the tables' schema)."""


def function_ddl(schema: str | None = None) -> str:
    """``CREATE OR REPLACE`` the grant function for tables in ``schema`` (quoted, or None)."""
    limits = qualified(schema, rate_limits_table.name)
    grants = qualified(schema, rate_grants_table.name)
    max_horizon_us = MAX_HORIZON // timedelta(microseconds=1)
    return f"""
DROP FUNCTION IF EXISTS {qualified(schema, FUNCTION)}(text[], integer[]);
CREATE OR REPLACE FUNCTION {qualified(schema, FUNCTION)}(
    p_names text[], p_wanted integer[], p_ahead boolean
)
RETURNS TABLE(g_name text, g_found boolean, g_limit integer, g_per_ms bigint,
              g_now timestamptz, g_in_window bigint, g_oldest timestamptz[])
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    t timestamptz;
    i integer;
    lim record;
    per interval;
    fits boolean := true;
    over bigint;
    recorded timestamptz[] := '{{}}';
BEGIN
    PERFORM 1 FROM {limits} l WHERE l.name = ANY(p_names) ORDER BY l.name FOR UPDATE;
    t := clock_timestamp();
    FOR i IN 1 .. coalesce(array_length(p_names, 1), 0) LOOP
        SELECT l."limit", l.per_ms INTO lim FROM {limits} l WHERE l.name = p_names[i];
        g_name := p_names[i];
        g_now := t;
        g_oldest := '{{}}';
        IF NOT FOUND THEN
            fits := false;
            g_found := false; g_limit := NULL; g_per_ms := NULL; g_in_window := 0;
        ELSE
            per := lim.per_ms * interval '1 millisecond';
            DELETE FROM {grants} g WHERE g.name = p_names[i] AND g.granted_at <= t - per;
            SELECT count(*) INTO g_in_window FROM {grants} g
             WHERE g.name = p_names[i] AND g.granted_at > t - per;
            over := g_in_window + p_wanted[i] - lim."limit";
            IF over > 0 THEN
                fits := false;
                IF over <= g_in_window THEN
                    g_oldest := ARRAY(SELECT g.granted_at FROM {grants} g
                                       WHERE g.name = p_names[i] AND g.granted_at > t - per
                                       ORDER BY g.granted_at LIMIT over);
                END IF;
            END IF;
            g_found := true; g_limit := lim."limit"; g_per_ms := lim.per_ms;
            recorded[i] := t;
            IF p_ahead THEN
                recorded[i] := t + least(lim.per_ms * 1000 / {HORIZON_SHARE}, {max_horizon_us})
                                   * interval '1 microsecond';
            END IF;
        END IF;
        RETURN NEXT;
    END LOOP;
    IF fits THEN
        INSERT INTO {grants} (name, granted_at)
        SELECT p_names[s.k], recorded[s.k]
          FROM generate_subscripts(p_names, 1) AS s(k), generate_series(1, p_wanted[s.k]);
    END IF;
    RETURN;
END
$$;
"""  # noqa: S608 - DDL of quoted schema and table names, no value


def drop_function_ddl(schema: str | None = None) -> str:
    """Drop the grant function (tolerant: ``IF EXISTS``)."""
    name = qualified(schema, FUNCTION)
    return (  # and the two-argument version of earlier development builds
        f"DROP FUNCTION IF EXISTS {name}(text[], integer[], boolean);\n"
        f"DROP FUNCTION IF EXISTS {name}(text[], integer[]);\n"
    )


_CALLS: dict[str | None, TextualSelect] = {}


def take_grants_call(connection: Connection) -> TextualSelect:
    """The call of the function in the schema of the grants table on ``connection``.

    Built once per schema, with its result columns typed, so SQLAlchemy caches its
    compiled form and its result metadata (a grant is on every rate-limited step).
    """
    schema = schema_of(connection, rate_grants_table)
    call = _CALLS.get(schema)
    if call is None:
        sql = f"SELECT * FROM {qualified(schema, FUNCTION)}(:names, :wanted, :ahead)"  # noqa: S608 - a quoted schema name
        call = (
            text(sql)
            .bindparams(
                bindparam("names", type_=ARRAY(String())),
                bindparam("wanted", type_=ARRAY(Integer())),
                bindparam("ahead", type_=Boolean()),
            )
            .columns(
                column("g_name", String()),
                column("g_found", Boolean()),
                column("g_limit", Integer()),
                column("g_per_ms", BigInteger()),
                column("g_now", DateTime(timezone=True)),
                column("g_in_window", BigInteger()),
                column("g_oldest", ARRAY(DateTime(timezone=True))),
            )
        )
        _CALLS[schema] = call
    return call


install_function = made_with(rate_grants_table, function_ddl)
"""Create or replace the function (PostgreSQL only; idempotent); also run by ``create_tables``."""
