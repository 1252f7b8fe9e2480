"""Write plans: what a decision writes, and which plans may be applied without a lock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs
import pytest

from durable_sa.core.decide import decide_cancel, decide_step
from durable_sa.core.outcomes import Advance, AwaitChild, Failed, Sleep
from durable_sa.core.plan import (
    LOCK_FREE_FIELDS,
    LOCKED_FIELDS,
    NewRun,
    continued,
    plan_acknowledge,
    plan_start,
    plan_transition,
)
from durable_sa.core.snapshot import JournalStatus, JournalWrite, RunSnapshot
from durable_sa.core.status import RunEvent, RunStatus
from durable_sa.core.transition import Transition
from durable_sa.errors import IllegalTransition

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _run(**changes: object) -> RunSnapshot:
    run = RunSnapshot(
        id=7,
        workflow_name="w",
        workflow_version="v1",
        status=RunStatus.RUNNING,
        total_steps=3,
        revision=4,
    )
    return attrs.evolve(run, **changes)  # type: ignore[arg-type]


def _advance(name: str = "a") -> Advance:
    write = JournalWrite(step_id=name, status=JournalStatus.COMPLETED, result=1)
    return Advance(journal=(write,), result_patch={name: 1})


def test_every_transition_field_is_classified_exactly_once() -> None:
    fields = {field.name for field in attrs.fields(Transition)}
    assert fields == LOCK_FREE_FIELDS | LOCKED_FIELDS
    assert not LOCK_FREE_FIELDS & LOCKED_FIELDS


def test_a_step_plan_writes_the_run_with_compare_and_set_and_acknowledges_its_job() -> None:
    transition = decide_step(_run(), _advance(), attempt=1, now=NOW)
    plan = plan_transition(transition, acknowledge=99)
    assert plan.run_id == 7
    assert plan.revision == 4
    assert plan.run == transition.after
    assert plan.journal == transition.journal
    assert plan.jobs == transition.jobs
    assert plan.acknowledge == 99
    assert plan.lock_free
    assert plan.continue_until is None


def test_the_next_step_due_now_continues_in_place_when_asked() -> None:
    until = NOW + timedelta(seconds=30)
    transition = decide_step(_run(), _advance(), attempt=1, now=NOW)
    assert plan_transition(transition, now=NOW, continue_until=until).continue_until == until


@pytest.mark.parametrize(
    "outcome",
    [
        Sleep(step_name="nap", delay=timedelta(seconds=5)),
        Failed(step_name="s", journal=(), failure="boom", backoff="linear", max_attempts=3),
    ],
)
def test_a_job_due_later_is_queued_not_continued(outcome: Sleep | Failed) -> None:
    transition = decide_step(_run(), outcome, attempt=1, now=NOW)
    until = NOW + timedelta(seconds=30)
    assert plan_transition(transition, now=NOW, continue_until=until).continue_until is None


def test_a_completed_child_needs_its_parent_locked() -> None:
    child = _run(parent_run_id=1, parent_step_id="kid", current_step=2)
    transition = decide_step(child, _advance("c"), attempt=1, now=NOW)
    assert transition.after.status is RunStatus.COMPLETED
    plan = plan_transition(transition)
    assert plan.settle_parent is not None
    assert not plan.lock_free


def test_a_child_spawn_creates_a_run_due_when_decided() -> None:
    outcome = AwaitChild(
        step_name="kid", child_name="c", child_version="v", child_total_steps=2, child_input={}
    )
    plan = plan_transition(decide_step(_run(), outcome, attempt=1, now=NOW))
    assert plan.create is not None
    assert plan.create.parent_run_id == 7
    assert plan.create.first_job(42).available_at == NOW
    assert plan.create.first_job(42).run_id == 42
    assert plan.lock_free


def test_an_illegal_move_is_refused_before_anything_is_written() -> None:
    run = _run()
    bad = Transition(
        event=RunEvent.PROGRESS, before=run, after=attrs.evolve(run, status=RunStatus.PENDING)
    )
    with pytest.raises(IllegalTransition):
        plan_transition(bad)


def test_a_cancel_drops_the_runs_jobs() -> None:
    transition = decide_cancel(_run())
    assert transition is not None
    assert plan_transition(transition).drop_jobs


def test_start_and_acknowledge_plans_write_no_run_row() -> None:
    start = plan_start(
        NewRun(workflow_name="w", workflow_version="v", total_steps=1, input={}, due=NOW)
    )
    assert not start.writes_run
    assert not plan_acknowledge(5).writes_run
    assert plan_acknowledge(5).acknowledge == 5


def test_a_continued_run_takes_the_state_the_database_returned() -> None:
    transition = decide_step(_run(), _advance(), attempt=1, now=NOW)
    plan = plan_transition(transition)
    stored = {"a": 1.0}
    run = continued(plan, stored)
    assert run is not None
    assert run.state == stored
    assert run.revision == 5
    assert run.current_step == 1
