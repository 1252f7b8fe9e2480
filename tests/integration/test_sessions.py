"""Joining the caller's transaction, transactional steps, idempotency keys."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from durable_sa import Durable, DurableContext, WorkflowRun, durable
from durable_sa.testing import drain, pending_jobs
from tests.integration.helpers import count, far_future, get_run


class AppBase(DeclarativeBase):
    pass


class Order(AppBase):
    __tablename__ = "app_orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str]
    charged: Mapped[int] = mapped_column(default=0)


class Ledger(AppBase):
    __tablename__ = "app_ledger"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int]
    amount: Mapped[int]


@pytest.fixture
def app_engine(engine: Durable) -> Durable:
    AppBase.metadata.create_all(engine.sa_engine)
    return engine


def test_start_joins_the_callers_transaction_commit(app_engine: Durable) -> None:
    durable("process-order").step("a", lambda ctx: ctx.input["order_id"])
    with Session(app_engine.sa_engine) as session, session.begin():
        order = Order(sku="A-1")
        session.add(order)
        session.flush()
        started = app_engine.start("process-order", {"order_id": order.id}, session=session)
    assert count(app_engine, Order) == 1
    drain(app_engine)
    assert get_run(app_engine, started.run_id).status == "completed"


def test_start_in_a_rolled_back_transaction_leaves_nothing(app_engine: Durable) -> None:
    durable("process-order").step("a", lambda ctx: 1)
    with Session(app_engine.sa_engine) as session:
        session.add(Order(sku="A-1"))
        session.flush()
        app_engine.start("process-order", {}, session=session)
        session.rollback()
    assert count(app_engine, Order) == 0
    assert count(app_engine, WorkflowRun) == 0
    assert pending_jobs(app_engine) == 0


def test_resume_and_cancel_join_the_callers_transaction(app_engine: Durable) -> None:
    durable("gated").wait_for_signal("gate", "go")
    run_id = app_engine.start("gated").run_id
    drain(app_engine)

    with Session(app_engine.sa_engine) as session:
        assert app_engine.resume(run_id, "go", 1, session=session).accepted
        session.rollback()
    assert get_run(app_engine, run_id).status == "suspended"

    with Session(app_engine.sa_engine) as session:
        app_engine.cancel(run_id, session=session)
        session.rollback()
    assert get_run(app_engine, run_id).status == "suspended"

    with Session(app_engine.sa_engine) as session, session.begin():
        assert app_engine.resume(run_id, "go", 1, session=session).accepted
    assert get_run(app_engine, run_id).status == "running"


def test_transactional_step_writes_commit_with_the_checkpoint(app_engine: Durable) -> None:
    def charge(ctx: DurableContext) -> int:
        order = ctx.session.get(Order, ctx.input["order_id"])
        assert order is not None
        order.charged += 100
        ctx.session.add(Ledger(order_id=order.id, amount=100))
        return order.charged

    durable("charge").step("charge", charge, transactional=True).step("done", lambda ctx: 1)
    with Session(app_engine.sa_engine) as session, session.begin():
        session.add(Order(id=1, sku="A-1"))
    run_id = app_engine.start("charge", {"order_id": 1}).run_id
    drain(app_engine)
    assert get_run(app_engine, run_id).result == {"charge": 100, "done": 1}
    with Session(app_engine.sa_engine) as session:
        assert session.get(Order, 1).charged == 100  # type: ignore[union-attr]
        assert session.scalar(sa.select(sa.func.count()).select_from(Ledger)) == 1


def test_transactional_step_redelivery_writes_exactly_once(app_engine: Durable) -> None:
    def charge(ctx: DurableContext) -> int:
        ctx.session.add(Ledger(order_id=1, amount=100))
        return 100

    durable("charge-once").step("charge", charge, transactional=True)
    run_id = app_engine.start("charge-once").run_id
    app_engine.admin.advance(run_id, 0)
    app_engine.admin.advance(run_id, 0)  # a redelivery after the commit
    drain(app_engine)
    assert count(app_engine, Ledger) == 1
    assert get_run(app_engine, run_id).status == "completed"


def test_failed_transactional_step_rolls_its_writes_back(app_engine: Durable) -> None:
    def flaky(ctx: DurableContext) -> int:
        ctx.session.add(Ledger(order_id=ctx.attempt, amount=1))
        ctx.session.flush()
        if ctx.attempt == 1:
            raise RuntimeError("after writing")  # noqa: EM101, TRY003
        return ctx.attempt

    durable("tx-flaky").step("s", flaky, transactional=True, max_retries=2)
    run_id = app_engine.start("tx-flaky").run_id
    drain(app_engine, now=far_future())
    assert get_run(app_engine, run_id).result == {"s": 2}
    with Session(app_engine.sa_engine) as session:
        orders = session.scalars(sa.select(Ledger.order_id)).all()
    assert orders == [2]  # attempt 1's write was rolled back with it


def test_transactional_step_with_unserializable_result_rolls_back(app_engine: Durable) -> None:
    def bad(ctx: DurableContext) -> object:
        ctx.session.add(Ledger(order_id=9, amount=9))
        return object()

    durable("tx-bad").step("s", bad, transactional=True, max_retries=1)
    run_id = app_engine.start("tx-bad").run_id
    drain(app_engine)
    assert get_run(app_engine, run_id).status == "failed"
    assert count(app_engine, Ledger) == 0


def test_idempotency_key_returns_the_first_run(engine: Durable) -> None:
    durable("once").step("a", lambda ctx: ctx.input)
    first = engine.start("once", {"n": 1}, idempotency_key="order-42")
    second = engine.start("once", {"n": 2}, idempotency_key="order-42")
    assert first.created is True
    assert second.created is False
    assert second.run_id == first.run_id
    assert count(engine, WorkflowRun) == 1
    assert pending_jobs(engine) == 1
    drain(engine)
    third = engine.start("once", {"n": 3}, idempotency_key="order-42")
    assert third.run_id == first.run_id
    assert third.status == "completed"
    assert get_run(engine, first.run_id).result == {"a": {"n": 1}}
    assert engine.start("once", {"n": 4}, idempotency_key="order-43").run_id != first.run_id


def test_concurrent_starts_with_one_key_make_one_run(engine: Durable) -> None:
    durable("once-race").step("a", lambda ctx: 1)
    barrier = threading.Barrier(4)
    ids: list[int] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            barrier.wait(timeout=10)
            ids.append(engine.start("once-race", idempotency_key="same").run_id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(set(ids)) == 1
    assert count(engine, WorkflowRun) == 1
    assert pending_jobs(engine) == 1


def test_handler_may_write_through_its_own_connection(app_engine: Durable) -> None:
    """No 'database is locked' on SQLite: phase A holds no lock while handlers run."""

    def write_elsewhere(ctx: DurableContext) -> int:
        with Session(app_engine.sa_engine) as own, own.begin():
            own.add(Ledger(order_id=ctx.run_id, amount=ctx.attempt))
        return 1

    durable("own-conn").step("w", write_elsewhere).parallel(
        "p", [(f"e{i}", write_elsewhere) for i in range(4)]
    )
    run_ids = [app_engine.start("own-conn").run_id for _ in range(3)]
    drain(app_engine)
    assert all(get_run(app_engine, rid).status == "completed" for rid in run_ids)
    assert count(app_engine, Ledger) == 15


def test_a_run_canceled_during_its_transactional_step_keeps_none_of_its_writes(
    pg_engine: sa.Engine,
) -> None:
    """On PostgreSQL the step does not lock its run first: the checkpoint's compare-and-set
    finds the run moved, and the transaction (the handler's writes with it) rolls back."""
    app_engine = Durable(pg_engine)
    app_engine.create_tables()
    AppBase.metadata.create_all(pg_engine)
    calls: list[int] = []

    def charge(ctx: DurableContext) -> int:
        calls.append(ctx.run_id)
        ctx.session.add(Ledger(order_id=1, amount=100))
        ctx.session.flush()
        if len(calls) == 1:  # an operator cancels the run meanwhile, on another connection
            app_engine.cancel(ctx.run_id)
        return 100

    durable("charge-canceled").step("charge", charge, transactional=True)
    run_id = app_engine.start("charge-canceled").run_id
    drain(app_engine)
    assert calls == [run_id]  # not run again: the locked retry found the run canceled
    assert get_run(app_engine, run_id).status == "canceled"
    assert count(app_engine, Ledger) == 0
    assert pending_jobs(app_engine) == 0
