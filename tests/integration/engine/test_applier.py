"""The one applier, called directly: plans reach the database alone or grouped, guarded.

Each test decides with the core (``decide_step``, ``plan_transition``, ``plan_start``) on a
snapshot read from the database, then hands the plan to an :class:`Applier` and reads the
rows back: what a plan writes when its run still has the revision it was decided at,
what it leaves alone when the run has moved (compare-and-set), how a group keeps its
plans apart, and which groups are one statement.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from durable_sa import Durable, Job, JournalEntry, RunStatus, durable, registry
from durable_sa.core.decide import decide_step
from durable_sa.core.outcomes import Advance
from durable_sa.core.plan import NewRun, WritePlan, plan_start, plan_transition
from durable_sa.core.snapshot import JournalStatus, JournalWrite
from durable_sa.core.transition import ParentSettlement, Settlement
from durable_sa.engine.applier import Applied, Applier, PlanItem
from durable_sa.queue.jobs_table import JobsTableBackend
from durable_sa.store.models import runs_table
from durable_sa.store.queries import load_run
from durable_sa.testing import drain

if TYPE_CHECKING:
    from durable_sa.core.snapshot import RunSnapshot
    from durable_sa.queue.protocol import ClaimedJob

THREE = "applier-three"


@pytest.fixture(autouse=True)
def three_steps() -> None:
    durable(THREE).step("a", lambda ctx: 1).step("b", lambda ctx: 2).step("c", lambda ctx: 3)


def _now() -> datetime:
    return datetime.now(UTC)


def _snapshot(engine: Durable, run_id: int) -> RunSnapshot:
    with Session(engine.sa_engine) as session:
        run = load_run(session, run_id)
    assert run is not None
    return run


def _apply(engine: Durable, applier: Applier, items: list[PlanItem]) -> list[Applied]:
    with Session(engine.sa_engine) as session, session.begin():
        return applier.apply(session, items, now=_now())


def _advance(  # noqa: PLR0913 - the decision's pieces, keyword-only
    run: RunSnapshot,
    step: str,
    result: Any,
    *,
    job: ClaimedJob | None = None,
    now: datetime | None = None,
    continue_until: datetime | None = None,
) -> WritePlan:
    """The plan for step ``step`` of ``run`` having returned ``result`` (acking ``job``)."""
    outcome = Advance(
        journal=(JournalWrite(step_id=step, status=JournalStatus.COMPLETED, result=result),),
        result_patch={step: result},
    )
    now = now or _now()
    return plan_transition(
        decide_step(run, outcome, attempt=1, now=now),
        acknowledge=None if job is None else job.id,
        now=now,
        continue_until=continue_until,
    )


def _claim_all(engine: Durable) -> dict[int, ClaimedJob]:
    """Claim every due job; by run."""
    claimed = {}
    while (job := engine.admin.claim(worker="applier-test")) is not None:
        assert job.run_id is not None
        claimed[job.run_id] = job
    return claimed


def _jobs(engine: Durable, run_id: int) -> list[tuple[int, dict[str, Any]]]:
    with Session(engine.sa_engine) as session:
        rows = session.execute(
            sa.select(Job.id, Job.payload).where(Job.run_id == run_id).order_by(Job.id)
        )
        return [(row.id, row.payload) for row in rows]


def _journal(engine: Durable, run_id: int) -> dict[str, Any]:
    with Session(engine.sa_engine) as session:
        rows = session.execute(
            sa.select(JournalEntry.step_id, JournalEntry.result).where(
                JournalEntry.run_id == run_id
            )
        )
        return {row.step_id: row.result for row in rows}


def _new_run(key: str | None = None) -> NewRun:
    return NewRun(
        workflow_name=THREE,
        workflow_version=registry.get(THREE).version,
        total_steps=3,
        input={"n": 7},
        due=_now(),
        idempotency_key=key,
    )


def test_a_start_plan_creates_the_run_and_its_first_job(engine: Durable) -> None:
    (applied,) = _apply(engine, Applier(engine.backend), [PlanItem(plan_start(_new_run()))])
    assert applied.applied
    assert applied.created
    assert applied.run_id is not None
    run = _snapshot(engine, applied.run_id)
    assert (run.status, run.current_step, run.revision, run.input) == (
        RunStatus.RUNNING,
        0,
        0,
        {"n": 7},
    )
    [(_, payload)] = _jobs(engine, applied.run_id)
    assert payload == {"run_id": applied.run_id, "step_index": 0, "attempt": 1}


def test_a_start_plan_with_a_known_key_finds_the_run_and_writes_nothing(engine: Durable) -> None:
    applier = Applier(engine.backend)
    (first,) = _apply(engine, applier, [PlanItem(plan_start(_new_run(key="order-1")))])
    (again,) = _apply(engine, applier, [PlanItem(plan_start(_new_run(key="order-1")))])
    assert first.created
    assert not again.created
    assert again.applied
    assert again.run_id == first.run_id
    assert again.status is RunStatus.RUNNING
    with engine.sa_engine.connect() as conn:
        runs = conn.execute(sa.select(sa.func.count()).select_from(runs_table)).scalar_one()
    assert runs == 1
    assert first.run_id is not None
    assert len(_jobs(engine, first.run_id)) == 1


def test_a_plan_at_the_runs_revision_writes_the_run_the_journal_and_the_jobs(
    engine: Durable,
) -> None:
    run_id = engine.start(THREE).run_id
    job = _claim_all(engine)[run_id]
    before = _snapshot(engine, run_id)
    plan = _advance(before, "a", 1, job=job)
    (applied,) = _apply(engine, Applier(engine.backend), [PlanItem(plan, job)])

    assert applied.applied
    assert applied.run_id == run_id
    after = _snapshot(engine, run_id)
    assert after.revision == before.revision + 1
    assert after.current_step == 1
    assert after.state == {"a": 1}
    assert applied.state == after.state  # as the database gave it back
    assert _journal(engine, run_id) == {"a": 1}
    [(job_id, payload)] = _jobs(engine, run_id)
    assert job_id != job.id  # the claimed job was acknowledged (deleted)...
    assert payload["step_index"] == 1  # ...and the next step's job queued


def test_a_plan_whose_run_moved_writes_nothing_and_the_rest_of_its_group_applies(
    engine: Durable,
) -> None:
    moved, steady = engine.start(THREE).run_id, engine.start(THREE).run_id
    claimed = _claim_all(engine)
    moved_job, steady_job = claimed[moved], claimed[steady]
    moved_plan = _advance(_snapshot(engine, moved), "a", 1, job=moved_job)
    steady_plan = _advance(_snapshot(engine, steady), "a", 1, job=steady_job)
    with engine.sa_engine.begin() as conn:  # someone else writes the run meanwhile
        conn.execute(
            sa.update(runs_table)
            .where(runs_table.c.id == moved)
            .values(revision=runs_table.c.revision + 1)
        )
    items = [PlanItem(moved_plan, moved_job), PlanItem(steady_plan, steady_job)]

    missed, applied = _apply(engine, Applier(engine.backend), items)

    assert missed == Applied(applied=False)
    assert applied.applied
    assert applied.run_id == steady
    # The moved run: as the other writer left it, its job not acknowledged, no new job.
    run = _snapshot(engine, moved)
    assert (run.current_step, run.revision, run.state) == (0, 1, {})
    assert _journal(engine, moved) == {}
    assert [job_id for job_id, _ in _jobs(engine, moved)] == [moved_job.id]
    # The other run of the group: written as if alone.
    assert _snapshot(engine, steady).current_step == 1
    assert _journal(engine, steady) == {"a": 1}
    assert [payload["step_index"] for _, payload in _jobs(engine, steady)] == [1]


def test_a_journal_row_written_already_is_left_as_it_is(engine: Durable) -> None:
    run_id = engine.start(THREE).run_id
    applier = Applier(engine.backend)
    _apply(engine, applier, [PlanItem(_advance(_snapshot(engine, run_id), "a", "first"))])
    (again,) = _apply(engine, applier, [PlanItem(_advance(_snapshot(engine, run_id), "a", "2nd"))])
    assert again.applied  # the run moves on...
    assert _snapshot(engine, run_id).current_step == 2
    assert _journal(engine, run_id) == {"a": "first"}  # ...the journal keeps the first row


def test_the_next_job_of_a_continued_run_is_handed_to_the_applying_worker(
    engine: Durable,
) -> None:
    run_id = engine.start(THREE).run_id
    job = _claim_all(engine)[run_id]
    now = _now()
    until = now + timedelta(seconds=30)
    plan = _advance(_snapshot(engine, run_id), "a", 1, job=job, now=now, continue_until=until)
    assert plan.continue_until == until

    (applied,) = _apply(engine, Applier(engine.backend, worker="w-1"), [PlanItem(plan, job)])

    assert applied.next_job is not None
    assert applied.next_job.run_id == run_id
    with Session(engine.sa_engine) as session:
        job = session.get(Job, applied.next_job.id)
        assert job is not None
        assert job.claimed_by == "w-1"
        assert job.payload["step_index"] == 1
    assert engine.admin.claim(worker="someone-else") is None  # it is the worker's, not the queue's


def test_a_child_that_settles_locks_its_parent_and_applies_the_parents_decision(
    engine: Durable,
) -> None:
    durable("applier-kid").step("only", lambda ctx: "done")
    durable("applier-parent").child_workflow("kid", "applier-kid").step("after", lambda ctx: 1)
    parent_id = engine.start("applier-parent").run_id
    assert drain(engine, max=1) == 1  # the parent's first step starts the child
    (child,) = engine.status(parent_id).children
    job = _claim_all(engine)[child.run_id]
    plan = _advance(_snapshot(engine, child.run_id), "only", "done", job=job)
    assert plan.settle_parent is not None

    (applied,) = _apply(engine, Applier(engine.backend), [PlanItem(plan, job)])

    assert applied.applied
    assert _snapshot(engine, child.run_id).status is RunStatus.COMPLETED
    parent = _snapshot(engine, parent_id)
    assert (parent.status, parent.current_step) == (RunStatus.RUNNING, 1)
    assert _journal(engine, parent_id) == {"kid": {"only": "done"}}
    assert [payload["step_index"] for _, payload in _jobs(engine, parent_id)] == [1]


def _settling(run: RunSnapshot) -> WritePlan:
    return WritePlan(
        run_id=run.id,
        revision=run.revision,
        run=run,
        settle_parent=ParentSettlement(
            parent_run_id=1,
            child_run_id=run.id,
            child_workflow=THREE,
            child_step_id="kid",
            settlement=Settlement.COMPLETED,
        ),
    )


def test_which_groups_are_one_statement(engine: Durable) -> None:
    run = _snapshot(engine, engine.start(THREE).run_id)
    applier = Applier(engine.backend)
    plain = [PlanItem(_advance(run, "a", 1)), PlanItem(_advance(run, "a", 2))]
    start = PlanItem(plan_start(_new_run()))

    assert applier.one_statement(plain, "postgresql")
    assert applier.one_statement([start], "postgresql")  # a start alone
    assert not applier.one_statement([start, plain[0]], "postgresql")  # a start beside a write
    assert not applier.one_statement([start, start], "postgresql")
    assert not applier.one_statement([PlanItem(_settling(run))], "postgresql")  # a lock
    assert not applier.one_statement(plain, "sqlite")  # one statement per kind there


def test_a_backend_that_writes_its_own_rows_is_never_one_statement(engine: Durable) -> None:
    class CountingJobs(JobsTableBackend):
        """Overrides a producer method: the applier must call it, not write rows itself."""

        def enqueue(self, session, jobs):
            self.enqueued = getattr(self, "enqueued", 0) + len(jobs)
            super().enqueue(session, jobs)

    backend = CountingJobs(engine.sa_engine)
    run = _snapshot(engine, engine.start(THREE).run_id)
    items = [PlanItem(_advance(run, "a", 1))]
    assert not backend.capabilities.applier_writes_rows
    assert engine.backend.capabilities.applier_writes_rows
    assert not Applier(backend).one_statement(items, "postgresql")
    assert Applier(engine.backend).one_statement(items, "postgresql")

    (applied,) = _apply(engine, Applier(backend), items)
    assert applied.applied
    assert backend.enqueued == 1  # the next step's job went through the backend


def test_a_group_that_is_one_statement_is_one_round_trip_on_postgresql(
    pg_engine: sa.Engine,
) -> None:
    engine = Durable(pg_engine)
    engine.create_tables()
    runs = [engine.start(THREE).run_id for _ in range(3)]
    jobs = _claim_all(engine)
    items = [
        PlanItem(_advance(_snapshot(engine, run_id), "a", run_id, job=jobs[run_id]), jobs[run_id])
        for run_id in runs
    ]
    applier = Applier(engine.backend)
    assert applier.one_statement(items, "postgresql")
    statements: list[str] = []

    def count(*args) -> None:  # conn, cursor, statement, parameters, context, many
        statements.append(args[2])

    sa.event.listen(engine.sa_engine, "before_cursor_execute", count)
    try:
        with engine.sa_engine.connect() as conn:
            autocommit = conn.execution_options(isolation_level="AUTOCOMMIT")
            with Session(bind=autocommit) as session:
                results = applier.apply(session, items, now=_now())
    finally:
        sa.event.remove(engine.sa_engine, "before_cursor_execute", count)

    assert [result.applied for result in results] == [True, True, True]
    assert len(statements) == 1, statements
    for run_id in runs:  # committed by itself: another connection sees every write
        assert _journal(engine, run_id) == {"a": run_id}
        assert [payload["step_index"] for _, payload in _jobs(engine, run_id)] == [1]
