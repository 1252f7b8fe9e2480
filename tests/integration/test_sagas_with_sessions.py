"""Database work in compensators and at the end of a run, on both databases.

Transactional compensators (``step(..., compensate=fn, transactional=True)``),
``cancel(run_id, compensate=True)`` and ``durable(name).on_finish(hook)``.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from durable_sa import Durable, DurableContext, RunStatus, durable
from durable_sa.testing import Driver, FakeClock, drain, faults, pending_jobs
from tests.integration.helpers import get_journal, get_run


class Base(DeclarativeBase):
    pass


class Stock(Base):
    """A row a saga reserves and a compensator releases."""

    __tablename__ = "saga_stock"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int]
    what: Mapped[str]


class Order(Base):
    """The row an on_finish hook updates with the run's final status."""

    __tablename__ = "saga_order"
    run_id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str]
    error: Mapped[str | None]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def app(sa_engine: sa.Engine, clock: FakeClock) -> Durable:
    engine = Durable(sa_engine, clock=clock)
    engine.create_tables()
    Base.metadata.create_all(sa_engine)
    return engine


def stock(app: Durable, run_id: int) -> list[str]:
    with Session(app.sa_engine) as session:
        return list(
            session.scalars(sa.select(Stock.what).where(Stock.run_id == run_id).order_by(Stock.id))
        )


def order(app: Durable, run_id: int) -> tuple[str, str | None] | None:
    with Session(app.sa_engine) as session:
        row = session.get(Order, run_id)
        return None if row is None else (row.status, row.error)


def journal(app: Durable, run_id: int) -> dict[str, str]:
    return {entry.step_id: entry.status for entry in get_journal(app, run_id)}


def reserve(ctx: DurableContext) -> str:
    ctx.session.add(Stock(run_id=ctx.run_id, what="reserved"))
    return "reserved"


def release(ctx: DurableContext) -> None:
    ctx.session.add(Stock(run_id=ctx.run_id, what="released"))


def fail(ctx: DurableContext) -> None:
    msg = "payment declined"
    raise RuntimeError(msg)


def saga(name: str) -> None:
    durable(name).step("reserve", reserve, compensate=release, transactional=True).step(
        "pay", fail, max_retries=1
    )


def record_order(ctx: DurableContext) -> None:
    assert ctx.final_status is not None
    ctx.session.add(Order(run_id=ctx.run_id, status=str(ctx.final_status), error=ctx.error))


# ── transactional compensators ──────────────────────────────────────────────────


def test_transactional_compensator_writes_on_the_rollback_transaction(app: Durable) -> None:
    saga("tx-comp")
    run_id = app.start("tx-comp").run_id
    drain(app)
    assert get_run(app, run_id).status == "failed"
    assert stock(app, run_id) == ["reserved", "released"]
    assert journal(app, run_id)["reserve#compensate"] == "completed"


@pytest.mark.parametrize(
    "fault",
    [faults.CrashAfterPhaseA(), faults.CrashAfterCommit(), faults.DuplicateDelivery()],
    ids=["crash-before-commit", "crash-after-commit", "duplicate"],
)
def test_transactional_compensator_writes_once_under_faults(
    app: Durable, fault: faults.JobFault
) -> None:
    saga("tx-comp-fault")
    run_id = app.start("tx-comp-fault").run_id
    driver = Driver(app)
    driver.apply(faults.Deliver(), run_id)  # reserve
    driver.apply(faults.Deliver(), run_id)  # pay fails: rollback begins
    assert get_run(app, run_id).status == "compensating"
    driver.apply(fault, run_id)  # the compensation job
    if isinstance(fault, faults.CrashAfterPhaseA):
        assert stock(app, run_id) == ["reserved"]  # rolled back with the journal row
        assert "reserve#compensate" not in journal(app, run_id)
    driver.settle(run_id, lambda *_: (False, None))
    assert get_run(app, run_id).status == "failed"
    assert stock(app, run_id) == ["reserved", "released"]
    assert "undo step 'reserve'" in " ".join(driver.trace)


def test_failing_transactional_compensator_rolls_its_writes_back(app: Durable) -> None:
    def release_then_fail(ctx: DurableContext) -> None:
        ctx.session.add(Stock(run_id=ctx.run_id, what="half-released"))
        msg = "warehouse offline"
        raise RuntimeError(msg)

    durable("tx-comp-bad").step(
        "reserve", reserve, compensate=release_then_fail, transactional=True
    ).step("pay", fail, max_retries=1)
    run_id = app.start("tx-comp-bad").run_id
    drain(app)
    run = get_run(app, run_id)
    assert run.status == "failed"
    assert stock(app, run_id) == ["reserved"]
    rows = {e.step_id: e for e in get_journal(app, run_id)}
    assert rows["reserve#compensate"].status == "failed"
    assert "warehouse offline" in (rows["reserve#compensate"].error or "")
    assert rows["reserve#compensate"].error_type == "RuntimeError"
    assert "in release_then_fail" in (rows["reserve#compensate"].traceback or "")


# ── cancel with compensation ────────────────────────────────────────────────────


def test_cancel_with_compensation_from_a_signal_wait(app: Durable) -> None:
    durable("cancel-signal").step(
        "reserve", reserve, compensate=release, transactional=True
    ).wait_for_signal("approve", "approved", timeout=timedelta(hours=1))
    run_id = app.start("cancel-signal").run_id
    drain(app)
    assert get_run(app, run_id).status == "suspended"
    result = app.cancel(run_id, compensate=True)
    assert result.canceled == (run_id,)
    assert get_run(app, run_id).status == "compensating"
    assert app.resume(run_id, "approved", {}).accepted is False  # it stopped waiting
    drain(app, now=app.now + timedelta(days=30))
    run = get_run(app, run_id)
    assert run.status == "canceled"
    assert run.error is None
    assert stock(app, run_id) == ["reserved", "released"]
    assert journal(app, run_id)["reserve#compensate"] == "completed"
    assert pending_jobs(app) == 0


def test_cancel_with_compensation_from_a_sleep(app: Durable) -> None:
    durable("cancel-sleep").step("reserve", reserve, compensate=release, transactional=True).sleep(
        "cool-off", timedelta(days=1)
    ).step("ship", lambda ctx: "shipped")
    run_id = app.start("cancel-sleep").run_id
    drain(app)
    assert get_run(app, run_id).wake_at is not None
    app.cancel(run_id, compensate=True)
    drain(app)  # no need to wait for the sleep: the wake-up was dropped
    run = get_run(app, run_id)
    assert run.status == "canceled"
    assert "ship" not in journal(app, run_id)
    assert stock(app, run_id) == ["reserved", "released"]


def test_cancel_with_compensation_while_running(app: Durable) -> None:
    durable("cancel-running").step("reserve", reserve, compensate=release, transactional=True).step(
        "next", lambda ctx: "next"
    )
    run_id = app.start("cancel-running").run_id
    driver = Driver(app)
    driver.apply(faults.Deliver(), run_id)  # reserve; "next" is queued
    app.cancel(run_id, compensate=True)
    driver.settle(run_id, lambda *_: (False, None))
    assert get_run(app, run_id).status == "canceled"
    assert "next" not in journal(app, run_id)
    assert journal(app, run_id)["next#compensate"] == "completed"  # nothing of it ran
    assert stock(app, run_id) == ["reserved", "released"]


def test_cancel_with_compensation_rolls_back_a_waited_for_child(app: Durable) -> None:
    durable("cancel-child").step(
        "reserve", reserve, compensate=release, transactional=True
    ).wait_for_signal("gate", "go")
    durable("cancel-parent").step(
        "reserve", reserve, compensate=release, transactional=True
    ).child_workflow("sub", "cancel-child")
    run_id = app.start("cancel-parent").run_id
    drain(app)
    child_id = app.status(run_id).children[0].run_id
    assert get_run(app, child_id).status == "suspended"
    result = app.cancel(run_id, compensate=True)
    assert set(result.canceled) == {run_id, child_id}
    drain(app)
    assert get_run(app, run_id).status == "canceled"
    assert get_run(app, child_id).status == "canceled"
    assert stock(app, run_id) == ["reserved", "released"]
    assert stock(app, child_id) == ["reserved", "released"]


def test_cancel_with_compensation_of_a_failing_run_ends_canceled(app: Durable) -> None:
    saga("cancel-failing")
    run_id = app.start("cancel-failing").run_id
    driver = Driver(app)
    driver.apply(faults.Deliver(), run_id)
    driver.apply(faults.Deliver(), run_id)  # pay fails: compensating
    app.cancel(run_id, compensate=True)
    driver.settle(run_id, lambda *_: (False, None))
    assert get_run(app, run_id).status == "canceled"
    assert stock(app, run_id) == ["reserved", "released"]


def test_cancel_without_compensation_and_of_a_terminal_run_are_unchanged(app: Durable) -> None:
    saga("cancel-plain")
    run_id = app.start("cancel-plain").run_id
    assert app.cancel(run_id).canceled == (run_id,)
    assert get_run(app, run_id).status == "canceled"
    assert app.cancel(run_id, compensate=True).canceled == ()
    drain(app)
    assert stock(app, run_id) == []
    assert journal(app, run_id) == {}


# ── on_finish ───────────────────────────────────────────────────────────────────


def test_on_finish_writes_commit_with_completed(app: Durable) -> None:
    durable("fin-ok").step("a", lambda ctx: 1).on_finish(record_order)
    run_id = app.start("fin-ok").run_id
    drain(app)
    run = get_run(app, run_id)
    assert run.status == "completed"
    assert run.result == {"a": 1}
    assert order(app, run_id) == ("completed", None)
    assert journal(app, run_id)["#finish"] == "completed"
    assert app.status(run_id).result == {"a": 1}


def test_on_finish_sees_a_failure(app: Durable) -> None:
    durable("fin-fail2").step("reserve", reserve, compensate=release, transactional=True).step(
        "pay", fail, max_retries=1
    ).on_finish(record_order)
    run_id = app.start("fin-fail2").run_id
    drain(app)
    assert get_run(app, run_id).status == "failed"
    status, error = order(app, run_id) or ("", None)
    assert status == "failed"
    assert error is not None
    assert "payment declined" in error
    assert stock(app, run_id) == ["reserved", "released"]


def test_on_finish_runs_for_cancel_with_and_without_compensation(app: Durable) -> None:
    durable("fin-cancel").step(
        "reserve", reserve, compensate=release, transactional=True
    ).wait_for_signal("gate", "go").on_finish(record_order)
    plain = app.start("fin-cancel").run_id
    undone = app.start("fin-cancel").run_id
    drain(app)
    app.cancel(plain)
    app.cancel(undone, compensate=True)
    assert app.cancel(plain).canceled == ()  # its status only waits for its hook
    drain(app)
    for run_id in (plain, undone):
        assert get_run(app, run_id).status == "canceled"
        assert order(app, run_id) == ("canceled", None)
    assert stock(app, plain) == ["reserved"]
    assert stock(app, undone) == ["reserved", "released"]


def test_failing_hook_is_retried_then_the_run_still_ends(
    app: Durable, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    def flaky(ctx: DurableContext) -> None:
        calls.append(ctx.attempt)
        ctx.session.add(Order(run_id=ctx.run_id, status="partial", error=None))
        msg = "order service down"
        raise RuntimeError(msg)

    durable("fin-bad").step("a", lambda ctx: 1).on_finish(flaky, max_retries=2)
    run_id = app.start("fin-bad").run_id
    drain(app)
    assert get_run(app, run_id).status == "running"  # the hook waits for its backoff
    drain(app, now=app.now + timedelta(days=30))
    run = get_run(app, run_id)
    assert run.status == "completed"
    assert run.result == {"a": 1}
    assert calls == [1, 2]
    assert order(app, run_id) is None  # the hook's writes were rolled back each time
    rows = {e.step_id: e for e in get_journal(app, run_id)}
    assert rows["#finish#attempt1"].status == "failed"
    assert rows["#finish"].status == "failed"
    assert "order service down" in (rows["#finish"].error or "")
    assert rows["#finish"].error_type is not None
    assert any(r.levelname == "ERROR" and "on_finish" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "fault",
    [faults.CrashAfterPhaseA(), faults.CrashAfterCommit(), faults.ConcurrentDuplicate()],
    ids=["crash-before-commit", "crash-after-commit", "concurrent-duplicate"],
)
def test_hook_runs_once_under_faults(app: Durable, fault: faults.JobFault) -> None:
    durable("fin-fault").step("a", lambda ctx: 1).on_finish(record_order)
    run_id = app.start("fin-fault").run_id
    driver = Driver(app)
    driver.apply(faults.Deliver(), run_id)  # a: the finish job is queued
    assert get_run(app, run_id).status == "running"
    assert order(app, run_id) is None
    driver.apply(fault, run_id)  # the finish job
    driver.settle(run_id, lambda *_: (False, None))
    assert get_run(app, run_id).status == "completed"
    assert order(app, run_id) == ("completed", None)
    assert "finish run" in " ".join(driver.trace)


def test_child_with_a_hook_settles_its_parent_when_it_ends(app: Durable) -> None:
    durable("fin-child").step("double", lambda ctx: 2).on_finish(record_order)
    durable("fin-parent").child_workflow("sub", "fin-child").on_finish(record_order)
    run_id = app.start("fin-parent").run_id
    drain(app)
    child_id = app.status(run_id).children[0].run_id
    assert get_run(app, run_id).status == "completed"
    assert get_run(app, run_id).result == {"sub": {"double": 2}}
    assert order(app, child_id) == ("completed", None)
    assert order(app, run_id) == ("completed", None)


def test_status_values_are_run_statuses(app: Durable) -> None:
    seen: list[object] = []
    durable("fin-type").step("a", lambda ctx: 1).on_finish(
        lambda ctx: seen.append(ctx.final_status)
    )
    app.start("fin-type")
    drain(app)
    assert seen == [RunStatus.COMPLETED]
    assert isinstance(seen[0], RunStatus)
