"""Child workflows (fan-in, failure, cancel) and saga compensation."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from durable_sa import Durable, DurableContext, ParallelEntry, WorkflowRun, durable
from durable_sa.testing import drain, pending_jobs
from tests.integration.helpers import far_future, get_journal, get_run


def children_of(engine: Durable, run_id: int) -> list[WorkflowRun]:
    with Session(engine.sa_engine) as session:
        rows = list(
            session.scalars(sa.select(WorkflowRun).where(WorkflowRun.parent_run_id == run_id))
        )
        session.expunge_all()
        return rows


def test_child_workflow_fans_its_result_back_in(engine: Durable) -> None:
    durable("child-wf").step("double", lambda ctx: {"doubled": ctx.input["n"] * 2})
    durable("parent-wf").step("prep", lambda ctx: "ready").child_workflow(
        "sub", "child-wf", map_input=lambda ctx: {"n": 21}
    ).step("final", lambda ctx: {"fromChild": ctx.results["sub"]})
    run_id = engine.start("parent-wf").run_id
    drain(engine)

    run = get_run(engine, run_id)
    assert run.status == "completed"
    children = children_of(engine, run_id)
    assert len(children) == 1
    assert children[0].status == "completed"
    assert children[0].parent_step_id == "sub"
    assert children[0].input == {"n": 21}
    assert run.result is not None
    assert run.result["final"]["fromChild"]["double"] == {"doubled": 42}

    snapshot = engine.status(run_id)
    assert [c.run_id for c in snapshot.children] == [children[0].id]
    assert snapshot.children[0].status == "completed"


def test_parent_is_suspended_while_the_child_runs(engine: Durable) -> None:
    durable("slow-child").wait_for_signal("gate", "go")
    durable("waiting-parent").child_workflow("sub", "slow-child")
    run_id = engine.start("waiting-parent").run_id
    drain(engine)
    assert get_run(engine, run_id).status == "suspended"
    child = children_of(engine, run_id)[0]
    assert child.status == "suspended"
    assert engine.resume(run_id, "go", {}).accepted is False  # the parent waits on its child
    assert engine.resume(child.id, "go", {"v": 1}).accepted is True
    drain(engine)
    assert get_run(engine, run_id).result == {"sub": {"gate": {"v": 1}}}


def test_failing_child_rolls_the_parent_back(engine: Durable) -> None:
    def boom(ctx: DurableContext) -> None:
        msg = "child exploded"
        raise RuntimeError(msg)

    durable("bad-child").step("boom", boom, max_retries=1)
    rolled_back: list[str] = []
    durable("parent-of-bad").step(
        "setup", lambda ctx: "done", compensate=lambda ctx: rolled_back.append("setup")
    ).child_workflow("sub", "bad-child").step("never", lambda ctx: "unreachable")
    run_id = engine.start("parent-of-bad").run_id
    drain(engine, now=far_future())

    run = get_run(engine, run_id)
    assert run.status == "failed"
    assert rolled_back == ["setup"]
    assert run.error is not None
    assert "bad-child" in run.error
    assert "child exploded" in run.error
    assert children_of(engine, run_id)[0].status == "failed"


def test_canceling_a_child_fails_the_waiting_parent_step(engine: Durable) -> None:
    durable("idle-child").wait_for_signal("gate", "go")
    undone: list[str] = []
    durable("parent-of-canceled").step(
        "a", lambda ctx: 1, compensate=lambda ctx: undone.append("a")
    ).child_workflow("sub", "idle-child")
    run_id = engine.start("parent-of-canceled").run_id
    drain(engine)
    child = children_of(engine, run_id)[0]
    result = engine.cancel(child.id)
    assert result.canceled == (child.id,)
    drain(engine)
    run = get_run(engine, run_id)
    assert run.status == "failed"
    assert run.error is not None
    assert "canceled" in run.error
    assert undone == ["a"]


def test_saga_compensates_in_reverse_order_and_journals_each(engine: Durable) -> None:
    compensated: list[str] = []

    def ship(ctx: DurableContext) -> None:
        msg = "ship failed"
        raise RuntimeError(msg)

    durable("saga").step(
        "reserve", lambda ctx: "reserved", compensate=lambda ctx: compensated.append("reserve")
    ).step(
        "charge", lambda ctx: "charged", compensate=lambda ctx: compensated.append("charge")
    ).step("ship", ship, max_retries=1)
    run_id = engine.start("saga").run_id
    drain(engine, now=far_future())

    run = get_run(engine, run_id)
    assert run.status == "failed"
    assert run.error is not None
    assert "ship failed" in run.error
    assert compensated == ["charge", "reserve"]
    rows = get_journal(engine, run_id)
    assert sorted(r.step_id for r in rows if r.step_id.endswith("#compensate")) == [
        "charge#compensate",
        "reserve#compensate",
    ]
    assert next(r for r in rows if r.step_id == "ship").status == "failed"
    assert pending_jobs(engine) == 0


def test_compensation_resumes_after_a_crash_without_rerunning(engine: Durable) -> None:
    compensated: list[str] = []

    def fail_c(ctx: DurableContext) -> None:
        msg = "c failed"
        raise RuntimeError(msg)

    durable("saga-crash").step(
        "a", lambda ctx: 1, compensate=lambda ctx: compensated.append("a")
    ).step("b", lambda ctx: 2, compensate=lambda ctx: compensated.append("b")).step(
        "c", fail_c, max_retries=1
    )
    run_id = engine.start("saga-crash").run_id
    assert drain(engine, max=4, now=far_future()) == 4  # a, b, c (fails), undo b
    assert get_run(engine, run_id).status == "compensating"
    assert compensated == ["b"]

    engine.admin.compensate(run_id, 1)  # a duplicate of the job that already undid b
    assert compensated == ["b"]

    drain(engine, now=far_future())
    assert get_run(engine, run_id).status == "failed"
    assert compensated == ["b", "a"]


def test_throwing_compensator_is_recorded_and_rollback_goes_on(engine: Durable) -> None:
    compensated: list[str] = []

    def bad_undo(ctx: DurableContext) -> None:
        msg = "cannot undo b"
        raise RuntimeError(msg)

    def fail(ctx: DurableContext) -> None:
        raise RuntimeError("nope")  # noqa: EM101

    durable("saga-bad-undo").step(
        "a", lambda ctx: 1, compensate=lambda ctx: compensated.append("a")
    ).step("b", lambda ctx: 2, compensate=bad_undo).step("c", fail, max_retries=1)
    run_id = engine.start("saga-bad-undo").run_id
    drain(engine)
    run = get_run(engine, run_id)
    assert run.status == "failed"
    assert run.error == "RuntimeError: nope"
    assert compensated == ["a"]
    rows = {r.step_id: r for r in get_journal(engine, run_id)}
    assert rows["b#compensate"].status == "failed"
    assert rows["b#compensate"].error == "RuntimeError: cannot undo b"
    # Typed and traced like a failed step's row, so an operator sees where it broke.
    assert rows["b#compensate"].error_type == "RuntimeError"
    assert "Traceback (most recent call last)" in (rows["b#compensate"].traceback or "")
    assert "in bad_undo" in (rows["b#compensate"].traceback or "")
    assert rows["a#compensate"].error_type is None
    assert rows["a#compensate"].traceback is None
    assert rows["a#compensate"].status == "completed"


def test_compensators_see_the_results_and_only_completed_units_are_undone(
    engine: Durable,
) -> None:
    undone: list[tuple[str, object]] = []

    def fail(ctx: DurableContext) -> None:
        raise RuntimeError("late failure")  # noqa: EM101, TRY003

    durable("saga-parallel").step(
        "first", lambda ctx: "f", compensate=lambda ctx: undone.append(("first", ctx.results))
    ).parallel(
        "p",
        [
            ParallelEntry("x", lambda ctx: "X", compensate=lambda ctx: undone.append(("x", None))),
            ParallelEntry("y", lambda ctx: "Y"),
        ],
    ).sleep("nap", 0).route("r", lambda ctx: "k", {"k": lambda ctx: 1}).step(
        "last", fail, max_retries=1
    )
    run_id = engine.start("saga-parallel").run_id
    drain(engine)
    assert get_run(engine, run_id).status == "failed"
    assert [name for name, _ in undone] == ["x", "first"]
    first_results = undone[1][1]
    assert isinstance(first_results, dict)
    assert first_results["x"] == "X"
    compensations = sorted(
        r.step_id for r in get_journal(engine, run_id) if "#compensate" in r.step_id
    )
    assert compensations == [
        "first#compensate",
        "nap#compensate",
        "p#compensate",
        "r#compensate",
    ]


def test_failed_parallel_step_undoes_its_own_finished_entries(engine: Durable) -> None:
    undone: list[str] = []

    def bad(ctx: DurableContext) -> None:
        raise RuntimeError("entry failed")  # noqa: EM101, TRY003

    durable("par-undo").step(
        "before", lambda ctx: 0, compensate=lambda ctx: undone.append("before")
    ).parallel(
        "p",
        [
            ParallelEntry("ok", lambda ctx: 1, compensate=lambda ctx: undone.append("ok")),
            ParallelEntry("bad", bad, compensate=lambda ctx: undone.append("bad")),
        ],
        max_retries=1,
    )
    run_id = engine.start("par-undo").run_id
    drain(engine)
    run = get_run(engine, run_id)
    assert run.status == "failed"
    assert run.error is not None
    assert "entry failed" in run.error
    assert undone == ["ok", "before"]


def test_failure_at_the_first_step_fails_without_compensation(engine: Durable) -> None:
    def fail(ctx: DurableContext) -> None:
        raise RuntimeError("first")  # noqa: EM101

    durable("fail-first").step("a", fail, max_retries=1).step("b", lambda ctx: 1)
    run_id = engine.start("fail-first").run_id
    assert drain(engine) == 1
    run = get_run(engine, run_id)
    assert run.status == "failed"
    assert run.error == "RuntimeError: first"
    assert [r.step_id for r in get_journal(engine, run_id)] == ["a"]


def test_each_compensate_row_says_what_was_undone(engine: Durable) -> None:
    def fail(ctx: DurableContext) -> None:
        msg = "no stock"
        raise RuntimeError(msg)

    durable("undo-trail").step("reserve", lambda ctx: 1, compensate=lambda ctx: None).step(
        "note", lambda ctx: 2
    ).parallel(
        "notify",
        [
            ParallelEntry("mail", lambda ctx: 3, compensate=lambda ctx: None),
            ParallelEntry("sms", lambda ctx: 4),
        ],
    ).step("ship", fail, max_retries=1, compensate=lambda ctx: None)
    run_id = engine.start("undo-trail").run_id
    drain(engine, now=far_future())
    assert get_run(engine, run_id).status == "failed"
    undone = {
        r.step_id: r.result
        for r in get_journal(engine, run_id)
        if r.step_id.endswith("#compensate")
    }
    assert undone == {
        "notify#compensate": {"ran": ["mail"]},
        "note#compensate": {"ran": [], "nothing_to_undo": "it has no compensator"},
        "reserve#compensate": {"ran": ["reserve"]},
    }


def test_every_failed_attempt_keeps_its_error_type_and_traceback(engine: Durable) -> None:
    tries = iter(["first", "second"])

    def flaky(ctx: DurableContext) -> str:
        which = next(tries, None)
        if which is not None:
            raise KeyError(which)
        return "ok"

    durable("attempts").step("look-up", flaky, max_retries=3, retry_backoff="linear")
    run_id = engine.start("attempts").run_id
    drain(engine, now=far_future())
    assert get_run(engine, run_id).status == "completed"
    rows = {r.step_id: r for r in get_journal(engine, run_id)}
    assert set(rows) == {"look-up#attempt1", "look-up#attempt2", "look-up"}
    for n, which in ((1, "first"), (2, "second")):
        row = rows[f"look-up#attempt{n}"]
        assert (row.status, row.attempt) == ("failed", n)
        assert row.error == f"KeyError: '{which}'"
        assert row.error_type == "KeyError"
        assert row.traceback is not None
        assert "in flaky" in row.traceback
    assert (rows["look-up"].status, rows["look-up"].attempt) == ("completed", 3)
