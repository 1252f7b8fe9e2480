"""The one applier: every write plan reaches the database here, alone or grouped.

Rules:
- Plans are executed with SQLAlchemy Core statements built from the ``Table`` objects of
  :mod:`durable_sa.store.models`, on the caller's ``Session``: the application's engine,
  its JSON serializer, type processors, ``schema_translate_map``, ``echo`` and events all
  apply, on PostgreSQL and SQLite alike. Statements are built once; SQLAlchemy caches
  their compiled form per dialect.
- A plan that writes a run does so only if the run still has the revision the plan was
  decided at (compare-and-set). If it has moved, nothing of that plan is written and the
  caller decides again on a fresh read; the other plans of the group are unaffected.
- Order inside the transaction: run rows, journal rows (a duplicate (run, step) is left
  untouched), acknowledged jobs, discarded jobs, new jobs, new runs, then parents to
  settle. A parent is locked after its child's row was written (child → parent order,
  as everywhere), so plans that settle a parent are applied alone.
- Nothing here commits: the caller owns the transaction and its commit.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

import attrs
from sqlalchemy import Integer, bindparam, column, func, insert, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from durable_sa.core.codec import JSONObject
from durable_sa.core.decide import decide_child_settled
from durable_sa.core.plan import RUN_WRITE_FIELDS, NewRun, WritePlan, plan_transition
from durable_sa.core.status import RunStatus
from durable_sa.queue.protocol import ClaimedJob, InPlaceProducer
from durable_sa.store.models import journal_table, runs_table
from durable_sa.store.queries import lock_run

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from sqlalchemy import Connection
    from sqlalchemy.orm import Session

    from durable_sa.core.jobs import JobSpec
    from durable_sa.core.snapshot import JournalWrite
    from durable_sa.queue.protocol import QueueBackend

logger = logging.getLogger(__name__)

runs = runs_table
journal = journal_table


@attrs.frozen
class PlanItem:
    """A plan with the claimed job it acknowledges (``None``: no job, e.g. a start)."""

    plan: WritePlan
    job: ClaimedJob | None = None


@attrs.frozen
class Applied:
    """What applying one plan did."""

    applied: bool
    """False when the run had moved on (compare-and-set missed): nothing was written."""
    run_id: int | None = None
    """The plan's run, or the run it created (or found by its idempotency key)."""
    created: bool = False
    """A start plan inserted a new run (False: its idempotency key existed already)."""
    status: RunStatus | None = None
    """The status of the run a start plan found by its idempotency key."""
    state: JSONObject | None = None
    """The run's state as the database holds it after the write (for continuing)."""
    next_job: ClaimedJob | None = None
    """The run's next step, inserted claimed by the applying worker: run it in place."""


_MISSED: Final = Applied(applied=False)

# ── statements, built once from the tables ─────────────────────────────────────

_CAS_ONE: Final = (
    update(runs)
    .where(runs.c.id == bindparam("p_id"), runs.c.revision == bindparam("p_revision"))
    .values(
        {
            **{name: bindparam(f"p_{name}", type_=runs.c[name].type) for name in RUN_WRITE_FIELDS},
            "updated_at": bindparam("p_now", type_=runs.c.updated_at.type),
            "revision": runs.c.revision + 1,
        }
    )
    .returning(runs.c.id, runs.c.state)
)
"""One run's compare-and-set write (the lone plan, and every plan on SQLite)."""

_INSERT_RUN: Final = insert(runs).returning(runs.c.id)


_JOURNAL_FIELDS: Final = ("run_id", "step_id", "status", "result", "error", "attempt")


def _journal_insert(dialect: str) -> Any:  # noqa: ANN401 - a dialect's INSERT construct
    """Journal rows; a (run, step) already journaled is left as it is.

    On PostgreSQL the rows travel as typed arrays (one statement text for any number of
    rows, prepared once by the server); SQLite takes them as an ``executemany``.
    """
    if dialect != "postgresql":
        return sqlite_insert(journal).on_conflict_do_nothing(index_elements=["run_id", "step_id"])
    rows = (
        func.unnest(
            *(
                bindparam(f"a_{name}", type_=ARRAY(journal.c[name].type, dimensions=1))
                for name in _JOURNAL_FIELDS
            )
        )
        .table_valued(*(column(name) for name in _JOURNAL_FIELDS))
        .render_derived(name="j")
    )
    source = select(
        *(rows.c[name] for name in _JOURNAL_FIELDS),
        bindparam("p_now", type_=journal.c.completed_at.type),
    )
    return (
        pg_insert(journal)
        .from_select([*_JOURNAL_FIELDS, "completed_at"], source)
        .on_conflict_do_nothing(index_elements=["run_id", "step_id"])
    )


_JOURNAL_INSERT: Final = {name: _journal_insert(name) for name in ("postgresql", "sqlite")}


def _keyed_run_insert(dialect: str) -> Any:  # noqa: ANN401 - a dialect's INSERT construct
    make = pg_insert if dialect == "postgresql" else sqlite_insert
    return (
        make(runs)
        .on_conflict_do_nothing(
            index_elements=["idempotency_key"], index_where=runs.c.idempotency_key.isnot(None)
        )
        .returning(runs.c.id)
    )


_KEYED_RUN_INSERT: Final = {name: _keyed_run_insert(name) for name in ("postgresql", "sqlite")}


def _cas_group() -> Any:  # noqa: ANN401 - an UPDATE construct
    """Several runs' compare-and-set writes as one ``UPDATE … FROM unnest(…)`` (PostgreSQL).

    Each column travels as one typed array, so the statement's text is the same for
    every group size: compiled once, and prepared by the server once.
    """
    names = ("id", "revision", *RUN_WRITE_FIELDS)
    types = {
        "id": Integer(),
        "revision": Integer(),
        **{n: runs.c[n].type for n in RUN_WRITE_FIELDS},
    }
    given = (
        func.unnest(*(bindparam(f"a_{n}", type_=ARRAY(types[n], dimensions=1)) for n in names))
        .table_valued(*(column(n) for n in names))
        .render_derived(name="w")
    )
    return (
        update(runs)
        .where(runs.c.id == given.c.id, runs.c.revision == given.c.revision)
        .values(
            {
                **{name: given.c[name] for name in RUN_WRITE_FIELDS},
                "updated_at": bindparam("p_now", type_=runs.c.updated_at.type),
                "revision": runs.c.revision + 1,
            }
        )
        .returning(runs.c.id, runs.c.state)
    )


_CAS_GROUP: Final = _cas_group()


def _run_params(plan: WritePlan) -> dict[str, Any]:
    run = plan.run
    if run is None or plan.run_id is None:  # pragma: no cover - callers check writes_run
        msg = "a plan without a run has no run row to write"
        raise ValueError(msg)
    params: dict[str, Any] = {f"p_{name}": getattr(run, name) for name in RUN_WRITE_FIELDS}
    params["p_id"] = plan.run_id
    params["p_revision"] = plan.revision
    return params


class Applier:
    """Executes write plans on a session; the producer side of ``backend`` writes jobs."""

    def __init__(self, backend: QueueBackend, *, worker: str | None = None) -> None:
        """Apply plans whose jobs go to ``backend``; ``worker`` claims continued jobs."""
        self.backend = backend
        self.worker = worker
        self._in_place = backend if isinstance(backend, InPlaceProducer) else None

    def apply(self, session: Session, items: Sequence[PlanItem], *, now: datetime) -> list[Applied]:
        """Write ``items`` in ``session``'s transaction; one result per item, in order.

        Plans of the same run must not share a call (each is decided on the revision the
        one before it creates).
        """
        conn = session.connection()
        dialect = conn.dialect.name
        states = self._write_runs(conn, [i.plan for i in items if i.plan.writes_run], now=now)
        live: list[tuple[PlanItem, JSONObject | None]] = []
        results: list[Applied | None] = []
        for item in items:
            plan = item.plan
            if plan.writes_run and plan.run_id not in states:
                results.append(_MISSED)
                continue
            live.append((item, states.get(plan.run_id) if plan.run_id is not None else None))
            results.append(None)

        rows = [
            _journal_row(item.plan.run_id, write)
            for item, _ in live
            if item.plan.run_id is not None
            for write in item.plan.journal
        ]
        if rows and dialect == "postgresql":
            arrays = {f"a_{name}": [row[name] for row in rows] for name in _JOURNAL_FIELDS}
            conn.execute(_JOURNAL_INSERT[dialect], {**arrays, "p_now": now})
        elif rows:
            conn.execute(_JOURNAL_INSERT[dialect], [{**row, "completed_at": now} for row in rows])
        acked = [item.job for item, _ in live if item.job is not None]
        if acked:
            self._acknowledge(session, acked)
        for item, _ in live:
            if item.plan.drop_jobs and item.plan.run_id is not None:
                self.backend.discard(session, item.plan.run_id)

        continued = self._insert_jobs(session, [item.plan for item, _ in live], now=now)
        done = iter(live)
        for index, result in enumerate(results):
            if result is not None:
                continue
            item, state = next(done)
            results[index] = self._finish(session, item, state, continued, now=now)
        return [r if r is not None else _MISSED for r in results]

    def apply_one(self, session: Session, item: PlanItem, *, now: datetime) -> Applied:
        """:meth:`apply` for a single plan."""
        return self.apply(session, [item], now=now)[0]

    # ── the pieces ─────────────────────────────────────────────────────────────

    def _write_runs(
        self, conn: Connection, plans: list[WritePlan], *, now: datetime
    ) -> dict[int | None, JSONObject]:
        """Compare-and-set every plan's run row; the state of each run written, by id."""
        if not plans:
            return {}
        params = [_run_params(plan) for plan in plans]
        if len(plans) == 1 or conn.dialect.name != "postgresql":
            written: dict[int | None, JSONObject] = {}
            for row in params:
                found = conn.execute(_CAS_ONE, {**row, "p_now": now}).first()
                if found is not None:
                    written[int(found.id)] = found.state
            return written
        arrays: dict[str, Any] = {
            f"a_{name}": [row[f"p_{name}"] for row in params]
            for name in ("id", "revision", *RUN_WRITE_FIELDS)
        }
        found_rows = conn.execute(_CAS_GROUP, {**arrays, "p_now": now}).all()
        return {int(row.id): row.state for row in found_rows}

    def _acknowledge(self, session: Session, jobs: list[ClaimedJob]) -> None:
        if self._in_place is not None:
            self._in_place.ack_all(session, jobs)
            return
        for job in jobs:
            self.backend.ack(session, job)

    def _insert_jobs(
        self, session: Session, plans: list[WritePlan], *, now: datetime
    ) -> dict[int, ClaimedJob]:
        """Queue every plan's jobs; a continued run's next job is claimed by this worker."""
        queued: list[JobSpec] = []
        in_place: list[tuple[JobSpec, datetime]] = []
        for plan in plans:
            jobs = plan.jobs
            if plan.continue_until is not None and self._can_continue():
                in_place.append((jobs[0], plan.continue_until))
                jobs = jobs[1:]
            queued.extend(jobs)
        if queued:
            self.backend.enqueue(session, queued)
        if not in_place or self._in_place is None or self.worker is None:
            return {}
        claimed = self._in_place.enqueue_claimed(session, in_place, worker=self.worker, now=now)
        return {job.run_id or 0: job for job in claimed}

    def _can_continue(self) -> bool:
        return self._in_place is not None and self.worker is not None

    def _finish(
        self,
        session: Session,
        item: PlanItem,
        state: JSONObject | None,
        continued: dict[int, ClaimedJob],
        *,
        now: datetime,
    ) -> Applied:
        plan = item.plan
        run_id = plan.run_id
        created = False
        status: RunStatus | None = None
        if plan.create is not None:
            new_id = self._create(session, plan.create, now=now)
            if plan.run_id is None:  # a start: the plan is about the new run
                run_id, created = (new_id, True) if new_id is not None else (None, False)
                if new_id is None:
                    run_id, status = self._existing(session, plan.create)
        if plan.run is not None and plan.event is not None:
            _log(plan)
        if plan.settle_parent is not None:
            self._settle_parent(session, plan, now=now)
        return Applied(
            applied=True,
            run_id=run_id,
            created=created,
            status=status,
            state=state,
            next_job=continued.get(run_id) if run_id is not None else None,
        )

    def _create(self, session: Session, new: NewRun, *, now: datetime) -> int | None:
        """INSERT the run and queue its first job; ``None`` when its key exists already."""
        conn = session.connection()
        row = {
            "workflow_name": new.workflow_name,
            "workflow_version": new.workflow_version,
            "input": new.input,
            "status": RunStatus.RUNNING,
            "state": {},
            "current_step": 0,
            "total_steps": new.total_steps,
            "attempt": 1,
            "revision": 0,
            "parent_run_id": new.parent_run_id,
            "parent_step_id": new.parent_step_id,
            "idempotency_key": new.idempotency_key,
            "created_at": now,
            "updated_at": now,
        }
        if new.idempotency_key is None:
            run_id = int(conn.execute(_INSERT_RUN, row).scalar_one())
        else:
            found = conn.execute(_KEYED_RUN_INSERT[conn.dialect.name], row).scalar_one_or_none()
            if found is None:
                return None
            run_id = int(found)
        self.backend.enqueue(session, [new.first_job(run_id)])
        return run_id

    @staticmethod
    def _existing(session: Session, new: NewRun) -> tuple[int, RunStatus]:
        row = (
            session.connection()
            .execute(
                select(runs.c.id, runs.c.status).where(
                    runs.c.idempotency_key == new.idempotency_key
                )
            )
            .one()
        )
        return int(row.id), RunStatus(row.status)

    def _settle_parent(self, session: Session, plan: WritePlan, *, now: datetime) -> None:
        """Lock the parent (after its child) and apply its own decision, if it waits."""
        settled = plan.settle_parent
        if settled is None:  # pragma: no cover - the caller checked
            return
        parent = lock_run(session, settled.parent_run_id)
        if parent is None:
            return
        transition = decide_child_settled(parent, settled, now=now)
        if transition is None:
            return
        self.apply_one(session, PlanItem(plan_transition(transition)), now=now)


def _journal_row(run_id: int | None, write: JournalWrite) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "step_id": write.step_id,
        "status": str(write.status),
        "result": write.result,
        "error": write.error,
        "attempt": write.attempt,
    }


def _log(plan: WritePlan) -> None:
    """Log an applied run write at DEBUG (skipped cheaply when DEBUG is off)."""
    if not logger.isEnabledFor(logging.DEBUG) or plan.run is None:
        return
    logger.debug(
        "run %s: → %s (%s)",
        plan.run_id,
        plan.run.status,
        plan.event,
        extra={"action": str(plan.event), "run_id": plan.run_id},
    )
