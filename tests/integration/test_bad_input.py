"""Bad input gets a clear error and nothing is written or lost."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import attrs
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from durable_sa import (
    DeadLetter,
    Durable,
    DurableContext,
    DurableError,
    InvalidArgumentError,
    Job,
    PayloadError,
    WorkflowNotRegisteredError,
    WorkflowRun,
    durable,
    registry,
)
from durable_sa.engine.delivery import DEFER_DELAY
from durable_sa.results import JobOutcome
from durable_sa.testing import drain, pending_jobs
from tests.integration.helpers import count, get_journal, get_run


def dead_letters(engine: Durable) -> list[DeadLetter]:
    with Session(engine.sa_engine) as session:
        rows = list(session.scalars(sa.select(DeadLetter).order_by(DeadLetter.id)))
        session.expunge_all()
        return rows


def test_unknown_workflow_on_start_writes_nothing(engine: Durable) -> None:
    with pytest.raises(WorkflowNotRegisteredError, match="nope"):
        engine.start("nope", {})
    assert count(engine, WorkflowRun) == 0
    assert pending_jobs(engine) == 0


@pytest.mark.parametrize(
    "bad_input",
    [
        {"when": object()},
        {"n": math.nan},
        {1: "int key"},
        ["not", "a", "mapping"],
        "text",
        {"nested": {"set": {object()}}},
    ],
    ids=["object", "nan", "int-key", "list", "str", "nested"],
)
def test_non_json_input_is_refused_before_writing(engine: Durable, bad_input: object) -> None:
    durable("json-in").step("a", lambda ctx: 1)
    with pytest.raises(PayloadError) as caught:
        engine.start("json-in", bad_input)
    assert isinstance(caught.value, DurableError)
    assert "input" in str(caught.value)
    assert count(engine, WorkflowRun) == 0
    assert pending_jobs(engine) == 0


def test_typed_input_is_unstructured_through_cattrs(engine: Durable) -> None:
    @attrs.frozen
    class Order:
        sku: str
        placed: datetime
        tags: tuple[str, ...]

    durable("json-rich").step("a", lambda ctx: ctx.input)
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    run_id = engine.start("json-rich", Order(sku="A-1", placed=when, tags=("a", "b"))).run_id
    drain(engine)
    assert get_run(engine, run_id).result == {
        "a": {"sku": "A-1", "placed": "2026-01-02T03:04:05+00:00", "tags": ["a", "b"]}
    }


@pytest.mark.parametrize(
    "value",
    [datetime(2026, 1, 1, tzinfo=UTC), {1, 2}, b"bytes", "nul\x00char"],
    ids=["datetime", "set", "bytes", "nul"],
)
def test_values_json_would_change_are_refused(engine: Durable, value: object) -> None:
    durable("json-strict").step("a", lambda ctx: 1)
    with pytest.raises(PayloadError, match="not JSON-serializable"):
        engine.start("json-strict", {"v": value})
    assert count(engine, WorkflowRun) == 0


def test_non_serializable_signal_data_is_refused(engine: Durable) -> None:
    durable("json-signal").wait_for_signal("gate", "go")
    run_id = engine.start("json-signal").run_id
    drain(engine)
    with pytest.raises(PayloadError, match="signal"):
        engine.resume(run_id, "go", object())
    assert get_run(engine, run_id).status == "suspended"


def test_unserializable_result_fails_the_step_with_a_clear_error(engine: Durable) -> None:
    attempts: list[int] = []

    def returns_object(ctx: DurableContext) -> object:
        attempts.append(ctx.attempt)
        return object()

    durable("json-out").step("bad", returns_object, max_retries=2)
    run_id = engine.start("json-out").run_id
    drain(engine, now=datetime.now(UTC).replace(year=2100))
    run = get_run(engine, run_id)
    assert run.status == "failed"
    assert attempts == [1, 2]
    assert run.error is not None
    assert "'bad'" in run.error
    assert "not JSON-serializable" in run.error
    assert get_journal(engine, run_id)[0].status == "failed"


def test_malformed_job_payload_is_dead_lettered_and_the_run_kept(engine: Durable) -> None:
    durable("malformed").step("a", lambda ctx: 1)
    run_id = engine.start("malformed").run_id
    with engine.sa_engine.begin() as conn:
        conn.execute(sa.update(Job.__table__).values(payload={"run_id": "abc", "bogus": 1}))
    job = engine.admin.claim()
    assert job is not None
    assert engine.admin.run_job(job) == JobOutcome.DEAD_LETTERED
    letters = dead_letters(engine)
    assert len(letters) == 1
    assert "malformed" in letters[0].error
    assert letters[0].run_id == run_id
    assert pending_jobs(engine) == 0
    assert get_run(engine, run_id).status == "running"

    assert engine.recover() == 1
    drain(engine)
    assert get_run(engine, run_id).status == "completed"


def test_unknown_job_kind_is_dead_lettered(engine: Durable) -> None:
    durable("odd-kind").step("a", lambda ctx: 1)
    engine.start("odd-kind")
    with engine.sa_engine.begin() as conn:
        conn.execute(sa.update(Job.__table__).values(kind="teleport"))
    assert drain(engine) == 1
    assert "teleport" in dead_letters(engine)[0].error


def waiting_jobs(engine: Durable, run_id: int) -> list[Job]:
    with Session(engine.sa_engine) as session:
        rows = list(session.scalars(sa.select(Job).where(Job.run_id == run_id)))
        session.expunge_all()
        return rows


def later(engine: Durable) -> datetime:
    """A clock past the delay after which a deferred job is offered again."""
    return engine.now + DEFER_DELAY + timedelta(seconds=1)


def test_workflow_missing_from_the_worker_waits_and_runs_once_it_is_there(
    engine: Durable,
) -> None:
    wf = durable("deployed-later").step("a", lambda ctx: 1).step("b", lambda ctx: 2)
    run_id = engine.start("deployed-later").run_id
    drain(engine, max=1)
    registry.unregister("deployed-later")

    assert drain(engine) == 1  # taken, and given back: this process lacks the workflow
    assert dead_letters(engine) == []
    (job,) = waiting_jobs(engine, run_id)
    assert "deployed-later" in (job.last_error or "")
    assert job.attempts == 0  # deferring uses no attempt
    assert job.claimed_by is None
    run = get_run(engine, run_id)
    assert run.status == "running"
    assert run.current_step == 1
    assert [r.step_id for r in get_journal(engine, run_id)] == ["a"]
    assert drain(engine) == 0  # not offered again before its delay

    registry.register(wf)
    drain(engine, now=later(engine))
    assert get_run(engine, run_id).status == "completed"


def test_the_engines_defer_delay_is_how_long_such_a_job_waits(engine: Durable) -> None:
    slow = Durable(engine.sa_engine, defer_delay=timedelta(minutes=1))
    wf = durable("deployed-much-later").step("a", lambda ctx: 1)
    run_id = slow.start("deployed-much-later").run_id
    registry.unregister("deployed-much-later")
    assert drain(slow) == 1  # given back for a minute
    registry.register(wf)
    assert drain(slow, now=later(slow)) == 0  # the default delay is not this engine's
    assert get_run(slow, run_id).status == "running"
    drain(slow, now=slow.now + timedelta(minutes=1, seconds=1))
    assert get_run(slow, run_id).status == "completed"


@pytest.mark.parametrize("delay", [timedelta(0), timedelta(seconds=-1), 5])
def test_a_defer_delay_that_is_not_a_positive_timedelta_is_refused(
    engine: Durable, delay: object
) -> None:
    with pytest.raises(InvalidArgumentError, match="defer_delay must be a positive timedelta"):
        Durable(engine.sa_engine, defer_delay=delay)  # type: ignore[arg-type]


def test_changed_definition_is_not_run_by_new_code(engine: Durable) -> None:
    ran: list[str] = []
    durable("evolving").step("a", lambda ctx: ran.append("old-a")).step(
        "b", lambda ctx: ran.append("old-b")
    )
    run_id = engine.start("evolving").run_id
    drain(engine, max=1)
    durable("evolving").step("a", lambda ctx: 1).step("x", lambda ctx: ran.append("new-x")).step(
        "b", lambda ctx: 2
    )
    drain(engine)
    drain(engine, now=later(engine))
    assert ran == ["old-a"]
    assert dead_letters(engine) == []  # it waits for a worker with its version
    (job,) = waiting_jobs(engine, run_id)
    assert "version" in (job.last_error or "")
    assert get_run(engine, run_id).status == "running"


def test_child_of_an_unregistered_workflow_waits_for_a_worker_that_has_it(
    engine: Durable,
) -> None:
    durable("orphan-parent").child_workflow("sub", "missing-child")
    run_id = engine.start("orphan-parent").run_id
    drain(engine)
    assert dead_letters(engine) == []
    (job,) = waiting_jobs(engine, run_id)
    assert "missing-child" in (job.last_error or "")
    assert get_run(engine, run_id).status == "running"

    durable("missing-child").step("inner", lambda ctx: 7)
    drain(engine, now=later(engine))
    final = engine.status(run_id)
    assert final.status == "completed"
    assert final.results == {"sub": {"inner": 7}}


def test_child_input_that_is_not_a_mapping_fails_the_step(engine: Durable) -> None:
    durable("child-ok").step("a", lambda ctx: 1)
    durable("bad-map").child_workflow("sub", "child-ok", map_input=lambda ctx: [1, 2])
    run_id = engine.start("bad-map").run_id
    drain(engine)
    run = get_run(engine, run_id)
    assert run.status == "failed"
    assert run.error is not None
    assert "mapping" in run.error


def test_route_resolver_returning_a_non_string_fails_the_step(engine: Durable) -> None:
    durable("bad-route").route("r", lambda ctx: 42, {"42": lambda ctx: 1}, max_retries=1)
    run_id = engine.start("bad-route").run_id
    drain(engine)
    run = get_run(engine, run_id)
    assert run.status == "failed"
    assert run.error is not None
    assert "42" in run.error


def test_bad_idempotency_key_is_refused(engine: Durable) -> None:
    durable("key-check").step("a", lambda ctx: 1)
    with pytest.raises(PayloadError):
        engine.start("key-check", idempotency_key="")
    with pytest.raises(PayloadError):
        engine.start("key-check", idempotency_key="k" * 300)
    assert count(engine, WorkflowRun) == 0


def test_ctx_session_outside_a_transactional_step_says_what_to_do(engine: Durable) -> None:
    def peek(ctx: DurableContext) -> None:
        ctx.session  # noqa: B018 - the access is the test

    durable("no-session").step("peek", peek, max_retries=1)
    run_id = engine.start("no-session").run_id
    drain(engine)
    run = get_run(engine, run_id)
    assert run.error is not None
    assert "transactional=True" in run.error
