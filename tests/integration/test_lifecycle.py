"""Status snapshots, listing, cancel, recover, and the ORM entities."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from durable_sa import (
    DeadLetter,
    Durable,
    DurableContext,
    Job,
    RunNotFoundError,
    RunStatus,
    WorkflowRun,
    durable,
)
from durable_sa.testing import clear_jobs, drain, pending_jobs
from tests.integration.helpers import count, far_future, get_run


def test_status_reports_a_live_snapshot(engine: Durable) -> None:
    durable("status-wf").step("a", lambda ctx: 1).wait_for_signal("gate", "go").step(
        "b", lambda ctx: 2
    )
    run_id = engine.start("status-wf").run_id
    drain(engine)
    snapshot = engine.status(run_id)
    assert snapshot.run_id == run_id
    assert snapshot.workflow_name == "status-wf"
    assert snapshot.status == "suspended"
    assert snapshot.awaiting_signal == "go"
    assert snapshot.current_step == 1
    assert snapshot.total_steps == 3
    assert snapshot.results == {"a": 1}
    assert snapshot.error is None
    assert snapshot.parent_run_id is None
    assert snapshot.children == []
    assert snapshot.wake_at is None


def test_status_hides_engine_internal_keys(engine: Durable) -> None:
    durable("agent-status").step(
        "think", lambda ctx: {"status": "suspended", "state": 1, "pending_tool_calls": []}
    )
    run_id = engine.start("agent-status").run_id
    drain(engine)
    snapshot = engine.status(run_id)
    assert all(not key.startswith("__") for key in snapshot.results)


def test_unknown_run_id_raises_run_not_found(engine: Durable) -> None:
    with pytest.raises(RunNotFoundError, match="9999999"):
        engine.status(9_999_999)
    with pytest.raises(RunNotFoundError):
        engine.resume(9_999_999, "go")
    with pytest.raises(RunNotFoundError):
        engine.cancel(9_999_999)
    with pytest.raises(LookupError):
        engine.status(9_999_999)


def test_list_filters_by_status_and_parent(engine: Durable) -> None:
    durable("kid").wait_for_signal("gate", "go")
    durable("listed").child_workflow("sub", "kid")
    durable("quick").step("a", lambda ctx: 1)
    parent = engine.start("listed").run_id
    quick = engine.start("quick").run_id
    drain(engine)

    all_runs = engine.list()
    assert [s.run_id for s in all_runs][:2] == sorted([s.run_id for s in all_runs], reverse=True)[
        :2
    ]
    assert {s.run_id for s in engine.list(status="completed")} == {quick}
    suspended = {s.run_id for s in engine.list(status=RunStatus.SUSPENDED)}
    assert parent in suspended
    children = engine.list(parent_run_id=parent)
    assert len(children) == 1
    assert children[0].parent_run_id == parent
    assert {s.run_id for s in engine.list(workflow="quick")} == {quick}


def test_cancel_a_suspended_run_then_resume_is_refused(engine: Durable) -> None:
    durable("cancel-wf").wait_for_signal("gate", "go").step("a", lambda ctx: 1)
    run_id = engine.start("cancel-wf").run_id
    drain(engine)
    result = engine.cancel(run_id)
    assert result.canceled == (run_id,)
    assert get_run(engine, run_id).status == "canceled"
    refused = engine.resume(run_id, "go", {})
    assert refused.accepted is False
    assert refused.status == "canceled"
    assert engine.cancel(run_id).canceled == ()  # already terminal: nothing to do


def test_cancel_a_running_run_drops_its_jobs(engine: Durable) -> None:
    durable("cancel-running").step("a", lambda ctx: 1).step("b", lambda ctx: 2)
    run_id = engine.start("cancel-running").run_id
    assert pending_jobs(engine) == 1
    engine.cancel(run_id)
    assert pending_jobs(engine) == 0
    assert drain(engine) == 0
    assert get_run(engine, run_id).status == "canceled"


def test_cancel_cascades_to_descendants(engine: Durable) -> None:
    durable("grandchild").wait_for_signal("gate", "go")
    durable("child").child_workflow("sub", "grandchild")
    durable("root").child_workflow("sub", "child")
    root = engine.start("root").run_id
    drain(engine)
    tree = engine.status(root)
    child = tree.children[0]
    grandchild = child.children[0]
    assert grandchild.status == "suspended"

    result = engine.cancel(root)
    assert result.canceled == (root, child.run_id, grandchild.run_id)
    for run_id in result.canceled:
        assert get_run(engine, run_id).status == "canceled"
    assert drain(engine) == 0


def test_recover_reenqueues_a_run_whose_job_was_lost(engine: Durable) -> None:
    durable("recover-wf").step("a", lambda ctx: 1).step("b", lambda ctx: 2)
    run_id = engine.start("recover-wf").run_id
    drain(engine, max=1)
    clear_jobs(engine)
    assert get_run(engine, run_id).status == "running"
    assert engine.recover() == 1
    assert engine.recover() == 0  # it has a job now
    drain(engine)
    assert get_run(engine, run_id).status == "completed"


def test_recover_keeps_a_sleeping_run_asleep(engine: Durable) -> None:
    durable("recover-sleep").sleep("nap", timedelta(hours=2)).step("after", lambda ctx: 1)
    run_id = engine.start("recover-sleep").run_id
    drain(engine)
    clear_jobs(engine)
    assert engine.recover() == 1
    drain(engine, now=datetime.now(UTC) + timedelta(hours=1))
    assert get_run(engine, run_id).status == "running"
    drain(engine, now=datetime.now(UTC) + timedelta(hours=3))
    assert get_run(engine, run_id).status == "completed"


def test_recover_restarts_compensation_and_signal_timers(engine: Durable) -> None:
    undone: list[str] = []

    def fail(ctx: DurableContext) -> None:
        raise RuntimeError("x")  # noqa: EM101

    durable("recover-comp").step(
        "a", lambda ctx: 1, compensate=lambda ctx: undone.append("a")
    ).step("b", fail, max_retries=1)
    durable("recover-timer").wait_for_signal("gate", "go", timeout=30)
    comp = engine.start("recover-comp").run_id
    timer = engine.start("recover-timer").run_id
    drain(engine, max=3)  # comp: a, b fails; timer: suspends
    assert get_run(engine, comp).status == "compensating"
    clear_jobs(engine)
    assert engine.recover() == 2
    drain(engine, now=far_future())
    assert get_run(engine, comp).status == "failed"
    assert undone == ["a"]
    assert get_run(engine, timer).status == "failed"


def test_recover_leaves_suspended_and_terminal_runs_alone(engine: Durable) -> None:
    durable("recover-idle").wait_for_signal("gate", "go")
    durable("recover-done").step("a", lambda ctx: 1)
    engine.start("recover-idle")
    engine.start("recover-done")
    drain(engine)
    assert engine.recover() == 0


def test_orm_entities_are_queryable(engine: Durable) -> None:
    durable("model-wf").step("a", lambda ctx: {"v": 1}).step("b", lambda ctx: 2)
    run_id = engine.start("model-wf", {"in": True}, idempotency_key="k-1").run_id
    drain(engine)
    with Session(engine.sa_engine) as session:
        run = session.get(WorkflowRun, run_id)
        assert run is not None
        assert run.status == "completed"
        assert run.workflow_name == "model-wf"
        assert run.idempotency_key == "k-1"
        assert run.created_at.tzinfo is not None
        assert run.updated_at >= run.created_at
        assert [entry.step_id for entry in run.journal] == ["a", "b"]
        assert run.journal[0].result == {"v": 1}
        assert run.journal[0].completed_at.tzinfo is not None
        completed = session.scalars(
            sa.select(WorkflowRun).where(WorkflowRun.status == RunStatus.COMPLETED)
        ).all()
        assert [r.id for r in completed] == [run_id]
    assert count(engine, Job) == 0
    assert count(engine, DeadLetter) == 0


def test_create_tables_is_idempotent(engine: Durable) -> None:
    engine.create_tables()
    engine.create_tables()
    durable("after-create").step("a", lambda ctx: 1)
    engine.start("after-create")
    assert drain(engine) == 1
