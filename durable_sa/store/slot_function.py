"""PostgreSQL: places under limits given back inside a group's statement, by a function.

Why a function: giving back places must lock a workflow's count *before* it reads its
keys' counts and its pending runs (see :mod:`durable_sa.store.slots` for the rules), and
in one plain statement every read sees the snapshot taken before that lock was granted.
Inside a PL/pgSQL function each statement reads a fresh snapshot at READ COMMITTED, so
:func:`durable_sa_give_back` locks and reads in the order a transaction of several
statements would, and the applier calls it from the statement that writes the runs that
ended (:func:`durable_sa.store.statements.pg_write`): a worker's group commit with runs
that end under limits stays one statement, one round trip.

Rules:
- For each workflow in name order: its count (key ``''``) is locked and lowered, then
  its keys' counts are lowered, a key's row left at zero with no pending run under it is
  deleted, and the function reads whether a pending run may begin now (its key, if
  counted, has room too) while the count has room.
- Such a run must begin in the same transaction (:func:`durable_sa.engine.limits.admit`,
  which queues its first job through the backend). The function returns those workflows
  (JSON: ``workflow``, ``active``, ``limit``) and the caller admits; with ``p_strict`` (a
  statement that is its own transaction, on an autocommit connection) it raises
  :data:`ADMISSION_NEEDED` instead, which aborts the whole statement, and the caller
  applies the group again in a transaction. Nothing is written twice: an aborted
  statement wrote nothing.
- The DDL follows the tables like the grant function's
  (:mod:`durable_sa.store.grant_function`): created with the counts table by
  ``create_tables()``, by ``create_triggers(op)`` in an Alembic migration, in the schema
  the tables live in, and dropped by ``drop_triggers(op)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Text, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal

from durable_sa.core.admission import WORKFLOW_KEY
from durable_sa.core.status import RunStatus
from durable_sa.store.ddl_names import made_with, qualified, schema_of, translated_schema
from durable_sa.store.models import runs_table, slots_table

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.sql.compiler import SQLCompiler
    from sqlalchemy.sql.elements import ColumnElement
    from sqlalchemy.sql.visitors import _TraverseInternalsType

FUNCTION: Final = "durable_sa_give_back"
"""The function's name (in the tables' schema)."""
ADMISSION_NEEDED: Final = "DSA01"
"""The SQLSTATE the function raises in strict mode when a pending run may begin."""
_UNDEFINED_FUNCTION: Final = "42883"
_SIGNATURE: Final = "text[], text[], bigint[], timestamptz, boolean"


def function_ddl(schema: str | None = None) -> str:
    """``CREATE OR REPLACE`` the function for tables in ``schema`` (quoted, or None)."""
    slots = qualified(schema, slots_table.name)
    runs = qualified(schema, runs_table.name)
    pending = RunStatus.PENDING.value
    return f"""
CREATE OR REPLACE FUNCTION {qualified(schema, FUNCTION)}(
    p_workflows text[], p_keys text[], p_ns bigint[], p_now timestamptz, p_strict boolean
)
RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_workflow text;
    v_total bigint;
    v_count record;
    v_admit jsonb := '[]';
BEGIN
    FOR v_workflow, v_total IN
        SELECT f.w, sum(f.n)::bigint FROM unnest(p_workflows, p_ns) AS f(w, n)
         GROUP BY f.w ORDER BY f.w
    LOOP
        UPDATE {slots} s
           SET active = CASE WHEN s.active > v_total THEN s.active - v_total ELSE 0 END
         WHERE s.workflow_name = v_workflow AND s.concurrency_key = '{WORKFLOW_KEY}'
        RETURNING s.active, s.max_active INTO v_count;
        CONTINUE WHEN NOT FOUND;
        UPDATE {slots} s
           SET active = CASE WHEN s.active > f.n THEN s.active - f.n ELSE 0 END
          FROM unnest(p_workflows, p_keys, p_ns) AS f(w, k, n)
         WHERE f.w = v_workflow AND f.k IS NOT NULL
           AND s.workflow_name = v_workflow AND s.concurrency_key = f.k;
        DELETE FROM {slots} s
         USING unnest(p_workflows, p_keys) AS f(w, k)
         WHERE f.w = v_workflow AND f.k IS NOT NULL
           AND s.workflow_name = v_workflow AND s.concurrency_key = f.k AND s.active = 0
           AND NOT EXISTS (
               SELECT 1 FROM {runs} r
                WHERE r.workflow_name = v_workflow AND r.concurrency_key = f.k
                  AND r.status = '{pending}' AND r.limited);
        IF (v_count.max_active IS NULL OR v_count.active < v_count.max_active)
           AND EXISTS (
               SELECT 1 FROM {runs} r
                 LEFT JOIN {slots} k
                   ON k.workflow_name = r.workflow_name AND k.concurrency_key = r.concurrency_key
                WHERE r.workflow_name = v_workflow AND r.status = '{pending}' AND r.limited
                  AND (r.begin_at IS NULL OR r.begin_at <= p_now)
                  AND (r.concurrency_key IS NULL OR k.max_active IS NULL
                       OR k.active < k.max_active)) THEN
            IF p_strict THEN
                RAISE EXCEPTION USING ERRCODE = '{ADMISSION_NEEDED}',
                      MESSAGE = 'durable-sa: a pending run of ' || v_workflow || ' may begin';
            END IF;
            v_admit := v_admit || jsonb_build_object(
                'workflow', v_workflow, 'active', v_count.active, 'limit', v_count.max_active);
        END IF;
    END LOOP;
    RETURN v_admit::text;
END
$$;
"""  # noqa: S608 - DDL of quoted schema and table names and the engine's own constants


def drop_function_ddl(schema: str | None = None) -> str:
    """Drop the function (tolerant: ``IF EXISTS``)."""
    name = qualified(schema, FUNCTION)
    return f"DROP FUNCTION IF EXISTS {name}({_SIGNATURE});\n"


class GiveBackCall(FunctionElement[str]):
    """The function called with its arguments, in a schema (its exact name, or None).

    Compiled by hand so that the schema is quoted exactly as SQLAlchemy quotes it for
    the tables (``"Tenant_1"``, ``"order"``); SQLAlchemy's own function names quote a
    package name only for illegal characters. The schema is part of the cache key.
    """

    type = Text()
    inherit_cache = True
    # SQLAlchemy's extension point for a construct's cache key: the schema joins it.
    _traverse_internals: _TraverseInternalsType = [  # noqa: RUF012 - SQLAlchemy's own shape
        *FunctionElement._traverse_internals,  # noqa: SLF001 - as SQLAlchemy's Function does
        ("schema", InternalTraversal.dp_plain_obj),
    ]

    def __init__(self, schema: str | None, *args: ColumnElement[Any]) -> None:
        """Call the function with ``args``, in ``schema``."""
        self.schema = schema
        super().__init__(*args)


@compiles(GiveBackCall)
def _compile_call(element: GiveBackCall, compiler: SQLCompiler, **kw: Any) -> str:  # noqa: ANN401
    preparer = compiler.preparer
    schema = None if element.schema is None else preparer.quote_schema(element.schema)
    arguments = compiler.process(element.clause_expr, **kw)
    return qualified(schema, preparer.quote(FUNCTION)) + arguments


def table_schema(connection: Connection) -> str | None:
    """The schema the counts table lives in on ``connection`` (unquoted), or None."""
    return translated_schema(connection, slots_table)


def _sqlstate(exc: BaseException) -> str | None:
    if not isinstance(exc, DBAPIError):
        return None
    state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return None if state is None else str(state)


def admission_needed(exc: BaseException) -> bool:
    """Whether ``exc`` is the function's strict-mode refusal (:data:`ADMISSION_NEEDED`)."""
    return _sqlstate(exc) == ADMISSION_NEEDED


def function_missing(exc: BaseException) -> bool:
    """Whether ``exc`` says the database has no such function (an unmigrated database)."""
    return _sqlstate(exc) == _UNDEFINED_FUNCTION and FUNCTION in str(exc)


MISSING: Final = (
    f"the database lacks the function {FUNCTION} that workflows with limits need on "
    "PostgreSQL: run engine.create_tables() again, or durable_sa.schema.create_triggers(op) "
    "in a migration"
)
"""What to do when :func:`installed` says no."""


def installed(connection: Connection) -> bool:
    """Whether the function exists in the counts table's schema (PostgreSQL)."""
    name = qualified(schema_of(connection, slots_table), FUNCTION)
    found = connection.execute(
        text("SELECT to_regprocedure(:signature) IS NOT NULL"),
        {"signature": f"{name}({_SIGNATURE})"},
    ).scalar_one()
    return bool(found)


install_function = made_with(slots_table, function_ddl)
"""Create or replace the function (PostgreSQL only; idempotent); also run by ``create_tables``."""
