"""The applier's statements: SQLAlchemy Core constructs built once from the ``Table``s.

Rules:
- Every statement is built from :mod:`durable_sa.store.models` at import, with typed
  bind parameters, so the engine's type processors (JSON serializer, UTC timestamps,
  statuses), ``schema_translate_map``, ``echo`` and events apply to each value, and
  SQLAlchemy compiles each construct once per dialect.
- **PostgreSQL** takes a whole group of plans as JSON documents, one per kind of row
  (``json_to_recordset``, each field typed by its column), in *one* statement:
  data-modifying CTEs write the runs with compare-and-set, then, for the runs that
  applied only, the journal rows, the acknowledgements, the discarded and the new jobs.
  One statement text for any group size: compiled once, prepared by the server once,
  one round trip, and one serialization per kind of row.
- **SQLite** has no data-modifying CTEs; the same writes run as a sequence of simple
  statements in one transaction, which costs no round trips in-process.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Final

import attrs
from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Integer,
    Table,
    Text,
    any_,
    bindparam,
    column,
    delete,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSON, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from durable_sa.core.jobs import AdvanceJob, encode_payload
from durable_sa.core.plan import RUN_WRITE_FIELDS
from durable_sa.store.models import (
    DEBOUNCING,
    jobs_table,
    journal_table,
    outbox_table,
    runs_table,
)
from durable_sa.store.slot_function import GiveBackCall

if TYPE_CHECKING:
    from sqlalchemy import TableValuedAlias
    from sqlalchemy.types import TypeEngine

runs = runs_table
journal = journal_table
jobs = jobs_table

RUN_KEYS: Final = ("id", "revision", *RUN_WRITE_FIELDS)
"""The run columns a compare-and-set write carries: which run, at which revision, and
everything a decision may change."""
JOURNAL_FIELDS: Final = (
    "run_id",
    "step_id",
    "status",
    "result",
    "error",
    "attempt",
    "error_type",
    "traceback",
)
QUEUED_JOB_FIELDS: Final = (
    "queue",
    "kind",
    "run_id",
    "workflow_name",
    "workflow_version",
    "payload",
    "attempts",
    "max_attempts",
    "available_at",
)
"""The columns of a queued job that the applier writes (the rest take their defaults)."""
JOB_FIELDS: Final = (*QUEUED_JOB_FIELDS, "priority", "claimed_by", "claimed_until")
"""The same, for a job that may be inserted already claimed (continued in place)."""
OUTBOX_FIELDS: Final = (
    *QUEUED_JOB_FIELDS,
    "redeliveries",
    "published_by",
    "published_at",
    "claimed_until",
)
"""The same for an outbox row, which a worker takes by writing it published to itself."""


@attrs.frozen
class QueueRows:
    """How a group statement writes one queue table's rows (the jobs table, the outbox)."""

    table: Table
    fields: tuple[str, ...]
    """The columns of a new row the applier writes (the rest take their defaults)."""
    taker: str
    """The column naming the worker a new row is taken by (NULL: queued for a claim)."""
    discards_published: bool
    """Whether discarding a run's jobs also deletes rows already handed on (False for
    the outbox: a published row turns stale when it is delivered)."""


JOB_ROWS: Final = QueueRows(jobs_table, JOB_FIELDS, "claimed_by", discards_published=True)
OUTBOX_ROWS: Final = QueueRows(
    outbox_table, OUTBOX_FIELDS, "published_by", discards_published=False
)
NEW_RUN_FIELDS: Final = (
    "workflow_name",
    "workflow_version",
    "input",
    "total_steps",
    "parent_run_id",
    "parent_step_id",
    "idempotency_key",
    "trace_context",
)


_ID_ARRAY: Final = ARRAY(BigInteger())


def _type_of(table: Table, name: str) -> TypeEngine[Any]:
    return Integer() if name == "revision" and table is runs else table.c[name].type


def _records(prefix: str, table: Table, names: tuple[str, ...]) -> TableValuedAlias:
    """Rows given as one JSON array of objects (``json_to_recordset``), typed by column.

    The whole group travels as one parameter per kind of row, serialized once by the
    engine's JSON serializer; PostgreSQL types each field by the column it is for. It is
    ``json``, not ``jsonb``: a JSON field keeps its text exactly (numbers, key order).
    """
    return (
        func.json_to_recordset(bindparam(prefix, type_=JSON()))
        .table_valued(*(column(name, _type_of(table, name)) for name in names))
        .render_derived(name=f"{prefix}_rows", with_types=True)
    )


def _now(table: Table, name: str) -> Any:  # noqa: ANN401 - a typed bind parameter
    return bindparam("now", type_=table.c[name].type)


def _created(table: Table) -> Any:  # noqa: ANN401 - a typed bind parameter
    """A job's ``created_at``: the wall clock, as the column's default gives every job."""
    return bindparam("job_created_at", type_=table.c.created_at.type)


# ── PostgreSQL: one statement per group ────────────────────────────────────────


@functools.cache
def pg_write(rows: QueueRows, releases: Releases | None = None) -> Any:  # noqa: ANN401 - a SELECT with DML CTEs
    """Apply a group of plans: runs (compare-and-set), journal, acks, discards, new jobs.

    The jobs go to ``rows.table``: the jobs table, or a relay backend's outbox.

    Parameters (JSON arrays of row objects): ``w`` run writes (:data:`RUN_KEYS`), ``j``
    journal rows, ``k`` jobs to acknowledge (``id``, ``run_id``; a NULL ``run_id``:
    whatever happens to runs), ``d`` runs whose other jobs are discarded (``run_id``),
    ``n`` new jobs; and ``now``. ``w_ids`` and ``k_ids`` repeat the ids of ``w`` and ``k``
    as arrays: the planner estimates a JSON array at a hundred rows whatever its length,
    and with that guess it scans the whole runs and jobs tables (a hash join) instead of
    probing their primary keys; ``id = ANY(array)`` makes it probe. Journal rows,
    acknowledgements, discards and new jobs of a run whose compare-and-set missed are not
    written. Returns, for each run written, its id,
    its state as stored, and the id of its new job claimed by a worker (if any).

    With ``releases`` (the group ends runs that hold places under limits), ``f`` names
    them (``id``, ``workflow_name``, ``concurrency_key``) and the statement gives back the
    places of those written, by :mod:`durable_sa.store.slot_function` (``strict``: raise
    rather than leave runs to admit); every row then also carries ``admit``, the JSON
    list of workflows whose pending runs the caller must admit.
    """
    given = _records("w", runs, RUN_KEYS)
    written = (
        update(runs)
        .where(
            runs.c.id == any_(bindparam("w_ids", type_=_ID_ARRAY)),
            runs.c.id == given.c.id,
            runs.c.revision == given.c.revision,
        )
        .values(
            {
                **{name: given.c[name] for name in RUN_WRITE_FIELDS},
                "updated_at": _now(runs, "updated_at"),
                "revision": runs.c.revision + 1,
            }
        )
        .returning(runs.c.id, runs.c.state)
        .cte("written")
    )
    applied = select(written.c.id)

    entries = _records("j", journal, JOURNAL_FIELDS)
    journaled = (
        pg_insert(journal)
        .from_select(
            [*JOURNAL_FIELDS, "completed_at"],
            select(
                *(entries.c[name] for name in JOURNAL_FIELDS), _now(journal, "completed_at")
            ).where(entries.c.run_id.in_(applied)),
        )
        .on_conflict_do_nothing(index_elements=["run_id", "step_id"])
        .cte("journaled")
    )

    table = rows.table
    acks = _records("k", table, ("id", "run_id"))
    acknowledged = (
        delete(table)
        .where(
            table.c.id == any_(bindparam("k_ids", type_=_ID_ARRAY)),
            table.c.id.in_(
                select(acks.c.id).where(or_(acks.c.run_id.is_(None), acks.c.run_id.in_(applied)))
            ),
        )
        .cte("acknowledged")
    )
    drops = _records("d", table, ("run_id",))
    discarded = delete(table).where(
        table.c.run_id.in_(select(drops.c.run_id).where(drops.c.run_id.in_(applied)))
    )
    if not rows.discards_published:
        discarded = discarded.where(table.c.published_at.is_(None))

    new = _records("n", table, rows.fields)
    queued = (
        insert(table)
        .from_select(
            [*rows.fields, "created_at"],
            select(*(new.c[name] for name in rows.fields), _created(table)).where(
                new.c.run_id.in_(applied)
            ),
        )
        .returning(table.c.id, table.c.run_id, table.c[rows.taker].label("taker"))
        .cte("queued")
    )
    claimed = (
        select(func.min(queued.c.id))
        .where(queued.c.run_id == written.c.id, queued.c.taker.isnot(None))
        .scalar_subquery()
    )
    outputs = [written.c.id, written.c.state, claimed.label("next_job_id")]
    if releases is not None:
        outputs.append(_given_back(applied, releases).label("admit"))
    return select(*outputs).add_cte(journaled, acknowledged, discarded.cte("discarded"))


@attrs.frozen
class Releases:
    """How a group statement gives back places: the function's schema (unquoted)."""

    schema: str | None = None


def _given_back(applied: Any, releases: Releases) -> Any:  # noqa: ANN401 - a scalar subquery
    """The places of the written runs among ``f``, given back once for the whole group."""
    ended = _records("f", runs, ("id", "workflow_name", "concurrency_key"))
    freed = (
        select(
            ended.c.workflow_name,
            ended.c.concurrency_key,
            func.count().label("n"),
        )
        .where(ended.c.id.in_(applied))
        .group_by(ended.c.workflow_name, ended.c.concurrency_key)
        .subquery("freed")
    )
    call = GiveBackCall(
        releases.schema,
        func.array_agg(freed.c.workflow_name),
        func.array_agg(freed.c.concurrency_key),
        func.array_agg(freed.c.n),
        bindparam("now", type_=runs.c.updated_at.type),
        bindparam("strict", type_=Boolean()),
    )
    return select(call).select_from(freed).scalar_subquery()


def _first_payload(run_id: ColumnElement[Any]) -> ColumnElement[Any]:
    """The codec's payload of a run's first advance job, with the new run's id set in."""
    template = encode_payload(AdvanceJob(run_id=1, step_index=0))
    return func.jsonb_set(
        literal(template, type_=JSONB()), literal(["run_id"], ARRAY(Text())), func.to_jsonb(run_id)
    )


@functools.cache
def pg_create(rows: QueueRows | None) -> Any:  # noqa: ANN401 - an INSERT or SELECT construct
    """Insert runs (``c``: JSON rows) running at step 0 and, with ``rows``, their first jobs.

    Only plain runs come here (no limits, priority 0): every column a Python-side default
    would fill is given, or two defaults would share a parameter name.

    A run whose idempotency key exists already is not inserted. Returns the new runs' id,
    parent run, parent step and key, so callers match them to what they asked for.
    """
    given = _records("c", runs, NEW_RUN_FIELDS)
    created = (
        pg_insert(runs)
        .from_select(
            [
                *NEW_RUN_FIELDS,
                "status",
                "state",
                "current_step",
                "attempt",
                "revision",
                "created_at",
                "updated_at",
                "priority",
                "limited",
            ],
            select(
                *(given.c[name] for name in NEW_RUN_FIELDS),
                bindparam("new_status", type_=runs.c.status.type),
                bindparam("new_state", type_=runs.c.state.type),
                literal(0, Integer()),
                literal(1, Integer()),
                literal(0, Integer()),
                _now(runs, "created_at"),
                _now(runs, "updated_at"),
                literal(0, Integer()),
                false(),
            ),
        )
        .on_conflict_do_nothing(
            index_elements=["idempotency_key"], index_where=runs.c.idempotency_key.isnot(None)
        )
        .returning(
            runs.c.id,
            runs.c.parent_run_id,
            runs.c.parent_step_id,
            runs.c.idempotency_key,
            runs.c.workflow_name,
            runs.c.workflow_version,
        )
    )
    if rows is None:
        return created
    made = created.cte("created")
    table = rows.table
    # Every column a Python-side default would fill is given (a fresh job's zero).
    zeros = [name for name in ("redeliveries", "priority") if name in rows.fields]
    first = (
        insert(table)
        .from_select(
            [*QUEUED_JOB_FIELDS, "created_at", *zeros],
            select(
                bindparam("job_queue", type_=table.c.queue.type),
                literal(AdvanceJob.kind, table.c.kind.type),
                made.c.id,
                made.c.workflow_name,
                made.c.workflow_version,
                _first_payload(made.c.id),
                literal(0, Integer()),
                bindparam("job_max_attempts", type_=Integer()),
                _now(table, "available_at"),
                _created(table),
                *(literal(0, Integer()) for _ in zeros),
            ),
        )
        .cte("first_jobs")
    )
    return select(
        made.c.id, made.c.parent_run_id, made.c.parent_step_id, made.c.idempotency_key
    ).add_cte(first)


PG_CREATE: Final = pg_create(None)


@functools.cache
def debounce_upsert(dialect: str) -> Any:  # noqa: ANN401 - an INSERT ... ON CONFLICT
    """Insert a debounced run, or give the key's pending run this start's input and window.

    Returns the run's id and revision (0: it was inserted).
    """
    make = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = make(runs)
    return stmt.on_conflict_do_update(
        index_elements=[runs.c.workflow_name, runs.c.debounce_key],
        index_where=text(DEBOUNCING),
        set_={
            "input": stmt.excluded.input,
            "begin_at": stmt.excluded.begin_at,
            "updated_at": stmt.excluded.updated_at,
            "revision": runs.c.revision + 1,
        },
    ).returning(runs.c.id, runs.c.revision)


# ── SQLite (and any dialect without data-modifying CTEs): one statement per kind ─

CAS_ONE: Final = (
    update(runs)
    .where(runs.c.id == bindparam("w_id"), runs.c.revision == bindparam("w_revision"))
    .values(
        {
            **{name: bindparam(f"w_{name}", type_=runs.c[name].type) for name in RUN_WRITE_FIELDS},
            "updated_at": _now(runs, "updated_at"),
            "revision": runs.c.revision + 1,
        }
    )
    .returning(runs.c.id, runs.c.state)
)
"""One run's compare-and-set write; parameters ``w_*`` and ``now``."""

JOURNAL_INSERT: Final = sqlite_insert(journal).on_conflict_do_nothing(
    index_elements=["run_id", "step_id"]
)
"""Journal rows as an ``executemany``; a (run, step) already journaled stays as it is."""

INSERT_RUN: Final = insert(runs).returning(runs.c.id)
KEYED_RUN_INSERT: Final = (
    sqlite_insert(runs)
    .on_conflict_do_nothing(
        index_elements=["idempotency_key"], index_where=runs.c.idempotency_key.isnot(None)
    )
    .returning(runs.c.id)
)
"""A run with an idempotency key: nothing is inserted when the key exists already."""
