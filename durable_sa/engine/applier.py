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
  untouched), acknowledged jobs, discarded jobs, new jobs, places given back under a
  workflow's limits, all of a group's at once (and pending runs admitted:
  :mod:`durable_sa.engine.limits`), new runs, then parents to settle. A parent is
  locked after its child's row was written (child → parent order, as everywhere), so
  plans that settle a parent are applied alone.
- A run that suspends on a signal is applied alone too: with its row written (held),
  the signals buffered for it are read, and the oldest is delivered by the core's own
  decision in the same transaction (:mod:`durable_sa.store.signals`).
- Nothing here commits: the caller owns the transaction and its commit.

A plan's values become statement parameters in :mod:`durable_sa.engine.plan_rows`; a
run a plan creates is inserted by :mod:`durable_sa.engine.new_runs`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final, cast

import attrs
from sqlalchemy.exc import DBAPIError

from durable_sa.core.codec import JSONObject
from durable_sa.core.decide import decide_buffered_signal, decide_child_settled
from durable_sa.core.plan import WritePlan, continued, plan_transition
from durable_sa.core.status import RunStatus
from durable_sa.engine.limits import (
    AdmissionNeededError,
    GivenBack,
    admit_given_back,
    admit_waiting,
    given_back,
    release,
)
from durable_sa.engine.new_runs import existing_run, insert_run
from durable_sa.engine.plan_rows import columns, journal_row, run_row
from durable_sa.errors import DatabaseNotMigratedError
from durable_sa.queue.protocol import ClaimedJob, InPlaceProducer
from durable_sa.store import statements
from durable_sa.store.models import utcnow
from durable_sa.store.queries import lock_run
from durable_sa.store.signals import consume_signal, oldest_signal
from durable_sa.store.slot_function import (
    MISSING,
    admission_needed,
    function_missing,
    table_schema,
)

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from sqlalchemy import Connection, Row
    from sqlalchemy.orm import Session

    from durable_sa.core.jobs import JobSpec
    from durable_sa.queue.protocol import QueueBackend

logger = logging.getLogger(__name__)


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
    """A start plan inserted a new run (False: its idempotency key existed already, or
    a debounced start collapsed into its key's pending run)."""
    status: RunStatus | None = None
    """The status of the run a start plan created (``running``, or ``pending`` under a
    limit) or found by its idempotency key."""
    state: JSONObject | None = None
    """The run's state as the database holds it after the write (for continuing)."""
    next_job: ClaimedJob | None = None
    """The run's next step, inserted claimed by the applying worker: run it in place."""


_MISSED: Final = Applied(applied=False)


@attrs.frozen
class _Written:
    """A run the compare-and-set wrote: its stored state and its job claimed in place."""

    state: JSONObject
    next_job: ClaimedJob | None = None


@attrs.define
class _Queued:
    """The queue rows of a group: acknowledged, runs whose jobs go, new (and taken)."""

    acks: list[dict[str, Any]] = attrs.field(factory=list)
    drops: list[dict[str, Any]] = attrs.field(factory=list)
    new: list[dict[str, Any]] = attrs.field(factory=list)
    taken: dict[int, dict[str, Any]] = attrs.field(factory=dict)
    """The new rows taken by this applier's worker, by run."""


class Applier:
    """Executes write plans on a session; the producer side of ``backend`` writes jobs."""

    def __init__(self, backend: QueueBackend, *, worker: str | None = None) -> None:
        """Apply plans whose jobs go to ``backend``; ``worker`` claims continued jobs."""
        self.backend = backend
        self.worker = worker
        caps = backend.capabilities
        self._in_place = cast("InPlaceProducer", backend) if caps.in_place else None
        self._rows_in_statement = self._in_place if caps.applier_writes_rows else None
        """The backend whose job rows the PostgreSQL statement writes itself, if any."""

    def apply(
        self, session: Session, items: Sequence[PlanItem], *, now: datetime, strict: bool = False
    ) -> list[Applied]:
        """Write ``items`` in ``session``'s transaction; one result per item, in order.

        Plans of the same run must not share a call (each is decided on the revision the
        one before it creates). ``strict`` (PostgreSQL, a statement that is its own
        transaction): raise :class:`~durable_sa.engine.limits.AdmissionNeededError`
        rather than admit pending runs, which takes statements of its own.
        """
        conn = session.connection()
        if conn.dialect.name == "postgresql":
            written, to_admit = self._write_pg(session, items, now=now, strict=strict)
            if self._rows_in_statement is None:
                self._jobs_through_backend(session, items, written, now=now)
            admit_given_back(session, to_admit, backend=self.backend, now=now)
        else:
            written = self._write_in_sequence(conn, items, now=now)
            self._jobs_through_backend(session, items, written, now=now)
            live = [i for i in items if not i.plan.writes_run or i.plan.run_id in written]
            freed = [item.plan.release for item in live if item.plan.release is not None]
            if freed:  # every place the group gives back, at once (workflows in name order)
                release(session, freed, backend=self.backend, now=now)
        results: list[Applied] = []
        for item in items:
            plan = item.plan
            if plan.writes_run and plan.run_id not in written:
                results.append(_MISSED)
                continue
            results.append(self._finish(session, item, written.get(plan.run_id), now=now))
        return results

    def one_statement(self, items: Sequence[PlanItem], dialect: str) -> bool:
        """True when applying ``items`` is a single write statement on ``dialect``.

        Such work may run on a connection in autocommit mode (one round trip, no
        ``BEGIN``/``COMMIT``): it is atomic by itself. On PostgreSQL with the jobs table,
        a group of plans is one statement unless one settles a parent (a lock, then the
        parent's own plan) or creates a run beside other writes.
        """
        if dialect != "postgresql" or self._rows_in_statement is None:
            return False
        if any(not item.plan.lock_free for item in items):
            return False
        if any(item.plan.admit for item in items):
            return False
        creates = [item.plan.create for item in items if item.plan.create is not None]
        if not creates:
            return True
        return (
            len(creates) == 1
            and creates[0].plain
            and len(items) == 1
            and not items[0].plan.writes_run
        )

    def apply_one(self, session: Session, item: PlanItem, *, now: datetime) -> Applied:
        """:meth:`apply` for a single plan."""
        return self.apply(session, [item], now=now)[0]

    # ── PostgreSQL: the group in one statement ─────────────────────────────────

    def _write_pg(
        self, session: Session, items: Sequence[PlanItem], *, now: datetime, strict: bool
    ) -> tuple[dict[int | None, _Written], list[GivenBack]]:
        """The group's statement: the runs written, and the workflows to admit runs of."""
        conn = session.connection()
        plans = [item.plan for item in items if item.plan.writes_run]
        producer = self._rows_in_statement
        acks = [item for item in items if item.job is not None] if producer else []
        if not plans and not acks:
            return {}, []
        params: dict[str, Any] = {"now": now, "job_created_at": utcnow()}
        params.update(columns("w", [run_row(plan) for plan in plans], statements.RUN_KEYS))
        journal_rows = [journal_row(plan.run_id, w) for plan in plans for w in plan.journal]
        params.update(columns("j", journal_rows, statements.JOURNAL_FIELDS))
        params["w_ids"] = [plan.run_id for plan in plans]
        queued = _Queued()
        if producer is not None:
            queued = self._queued(producer, plans, acks, now=now)
        rows = statements.JOB_ROWS if producer is None else producer.queue_rows
        params["k_ids"] = [row["id"] for row in queued.acks]
        params.update(columns("k", queued.acks, ("id", "run_id")))
        params.update(columns("d", queued.drops, ("run_id",)))
        params.update(columns("n", queued.new, rows.fields))
        ended = [plan for plan in plans if plan.release is not None]
        releases = None
        if ended:  # the places of the runs that end, given back by the same statement
            releases = statements.Releases(table_schema(conn))
            params["f"] = [_ended_row(plan) for plan in ended]
            params["strict"] = strict
        found_rows = _execute_group(conn, statements.pg_write(rows, releases), params)
        to_admit = given_back(found_rows[0].admit) if releases and found_rows else []
        written: dict[int | None, _Written] = {}
        for found in found_rows:
            run_id = int(found.id)
            next_job = None
            if producer is not None and found.next_job_id is not None and run_id in queued.taken:
                next_job = producer.taken(session, int(found.next_job_id), queued.taken[run_id])
            written[run_id] = _Written(state=found.state, next_job=next_job)
        if producer is not None:  # what a job done needs after the commit (a broker's settle)
            live = [i for i in acks if not i.plan.writes_run or i.plan.run_id in written]
            producer.acknowledged(session, [item.job for item in live if item.job])
            if len(queued.new) > len(queued.taken):
                producer.wake_after_commit(session)
        return written, to_admit

    def _queued(
        self,
        producer: InPlaceProducer,
        plans: Sequence[WritePlan],
        acks: Sequence[PlanItem],
        *,
        now: datetime,
    ) -> _Queued:
        """The queue rows a group statement deletes and inserts, as ``producer`` has them."""
        done = [item.job for item in acks if item.job is not None]
        deleted = set(producer.ack_rows(done))
        queued = _Queued(
            acks=[
                {"id": item.job.id, "run_id": item.plan.run_id if item.plan.writes_run else None}
                for item in acks
                if item.job is not None and item.job.id in deleted
            ],
            drops=[{"run_id": plan.run_id} for plan in plans if plan.drop_jobs],
        )
        for plan in plans:
            for index, spec in enumerate(plan.jobs):
                taken = index == 0 and self._continues(plan)
                row = producer.new_row(
                    spec,
                    taken_by=self.worker if taken else None,
                    until=plan.continue_until if taken else None,
                    now=now,
                )
                if taken:
                    queued.taken[spec.run_id] = row
                queued.new.append(row)
        return queued

    # ── SQLite: the same writes, one statement per kind ────────────────────────

    def _write_in_sequence(
        self, conn: Connection, items: Sequence[PlanItem], *, now: datetime
    ) -> dict[int | None, _Written]:
        written: dict[int | None, _Written] = {}
        journal_rows: list[dict[str, Any]] = []
        for item in items:
            plan = item.plan
            if not plan.writes_run:
                continue
            params = {f"w_{k}": v for k, v in run_row(plan).items()}
            found = conn.execute(statements.CAS_ONE, {**params, "now": now}).first()
            if found is None:
                continue
            written[plan.run_id] = _Written(state=found.state)
            journal_rows.extend(
                {**journal_row(plan.run_id, w), "completed_at": now} for w in plan.journal
            )
        if journal_rows:
            conn.execute(statements.JOURNAL_INSERT, journal_rows)
        return written

    def _jobs_through_backend(
        self,
        session: Session,
        items: Sequence[PlanItem],
        written: dict[int | None, _Written],
        *,
        now: datetime,
    ) -> None:
        """Acks, discards and new jobs of the plans that applied, through the backend."""
        live = [i for i in items if not i.plan.writes_run or i.plan.run_id in written]
        self._acknowledge(session, [item.job for item in live if item.job is not None])
        queued: list[JobSpec] = []
        in_place: list[tuple[JobSpec, datetime]] = []
        for item in live:
            plan = item.plan
            if plan.drop_jobs and plan.run_id is not None:
                self.backend.discard(session, plan.run_id)
            specs = plan.jobs
            if self._continues(plan) and plan.continue_until is not None:
                in_place.append((specs[0], plan.continue_until))
                specs = specs[1:]
            queued.extend(specs)
        if queued:
            self.backend.enqueue(session, queued)
        if in_place and self._in_place is not None and self.worker is not None:
            for job in self._in_place.enqueue_claimed(
                session, in_place, worker=self.worker, now=now
            ):
                found = written.get(job.run_id)
                if found is not None:
                    written[job.run_id] = attrs.evolve(found, next_job=job)

    def _acknowledge(self, session: Session, jobs_done: list[ClaimedJob]) -> None:
        if not jobs_done:
            return
        if self._in_place is not None:
            self._in_place.ack_all(session, jobs_done)
            return
        for job in jobs_done:
            self.backend.ack(session, job)

    def _continues(self, plan: WritePlan) -> bool:
        """True when the plan's first job is handed to this applier's worker."""
        return (
            plan.continue_until is not None
            and self._in_place is not None
            and self.worker is not None
            and bool(plan.jobs)
        )

    # ── after the writes ───────────────────────────────────────────────────────

    def _finish(
        self, session: Session, item: PlanItem, written: _Written | None, *, now: datetime
    ) -> Applied:
        plan = item.plan
        run_id = plan.run_id
        created = False
        status: RunStatus | None = None
        if plan.admit is not None:
            admit_waiting(session, plan.admit, backend=self.backend, now=now)
        if plan.create is not None:
            inserted = insert_run(
                session,
                plan.create,
                backend=self.backend,
                producer=self._rows_in_statement,
                now=now,
            )
            if plan.run_id is None:  # a start: the plan is about the new run
                if inserted is None:
                    run_id, status = existing_run(session, plan.create)
                else:
                    run_id, status, created = inserted.run_id, inserted.status, inserted.created
        if plan.run is not None and plan.event is not None:
            _log(plan)
        if plan.consume_signal is not None:
            consume_signal(session, plan.consume_signal)
        if plan.settle_parent is not None:
            self._settle_parent(session, plan, now=now)
        if plan.take_buffered is not None and written is not None:
            self._take_buffered(session, plan, written, now=now)
        return Applied(
            applied=True,
            run_id=run_id,
            created=created,
            status=status,
            state=None if written is None else written.state,
            next_job=None if written is None else written.next_job,
        )

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

    def _take_buffered(
        self, session: Session, plan: WritePlan, written: _Written, *, now: datetime
    ) -> None:
        """Deliver the oldest signal sent before the run waited for it, if there is one.

        The run row was just written by this transaction, so it is held: a ``send`` that
        has not committed yet waits for it and then finds the run suspended, and one
        that committed before is read here (READ COMMITTED reads it in this statement).
        """
        signal = plan.take_buffered
        run = continued(plan, written.state)
        if signal is None or run is None:  # pragma: no cover - the caller checked
            return
        buffered = oldest_signal(session, run.id, signal)
        if buffered is None:
            return
        transition = decide_buffered_signal(run, buffered, now=now)
        if transition is None:  # pragma: no cover - the run waits for it, as just written
            return
        self.apply_one(session, PlanItem(plan_transition(transition)), now=now)


def _log(plan: WritePlan) -> None:
    """Log an applied run write at DEBUG (skipped cheaply when DEBUG is off)."""
    if not logger.isEnabledFor(logging.DEBUG) or plan.run is None:
        return
    logger.debug(
        "run %s: → %s (%s)",
        plan.run_id,
        plan.run.status,
        plan.event,
        extra={
            "action": str(plan.event),
            "run_id": plan.run_id,
            "workflow": plan.run.workflow_name,
        },
    )


def _ended_row(plan: WritePlan) -> dict[str, Any]:
    """A run that ends holding a place: what the group statement gives back for it."""
    place = plan.release
    if place is None:  # pragma: no cover - the caller picked plans with one
        msg = "a plan without a place to give back"
        raise ValueError(msg)
    return {
        "id": plan.run_id,
        "workflow_name": place.workflow_name,
        "concurrency_key": place.concurrency_key,
    }


def _execute_group(conn: Connection, statement: Any, params: dict[str, Any]) -> Sequence[Row[Any]]:  # noqa: ANN401
    """Run a group's statement; a strict give-back's refusal as :class:`AdmissionNeededError`.

    Raises:
        DatabaseNotMigratedError: the database lacks the give-back function.

    """
    try:
        return conn.execute(statement, params).all()
    except DBAPIError as exc:
        if admission_needed(exc):
            raise AdmissionNeededError from exc
        if function_missing(exc):
            raise DatabaseNotMigratedError(MISSING) from exc
        raise
