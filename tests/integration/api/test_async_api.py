"""The ``_async`` calls: joining the caller's AsyncSession, or running on the engine.

Each test runs on SQLite through aiosqlite and on PostgreSQL through asyncpg and through
psycopg's async driver (a fresh database each, from the plugin's URL fixtures, rewritten
to the async driver). Tests are plain functions around ``asyncio.run``: no async pytest
plugin. They mirror tests/integration/test_sessions.py, which covers the sync calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_scoped_session,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from durable_sa import (
    Durable,
    DurableContext,
    InvalidArgumentError,
    RunNotFoundError,
    WorkflowNotRegisteredError,
    WorkflowRun,
    durable,
)
from durable_sa.engine.async_bridge import sync_engine_for
from durable_sa.engine.shell import retry_pause
from durable_sa.errors import RunTerminalError, WrongSessionError
from durable_sa.testing import drain, pending_jobs
from tests.integration.helpers import count, get_run

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

FAST = {"heartbeat": timedelta(seconds=0.2), "lease": timedelta(seconds=2), "poll_interval": 0.05}

_ASYNC_DRIVERS = {
    "aiosqlite": ("durable_sqlite_url", "sqlite+aiosqlite"),
    "asyncpg": ("durable_postgres_url", "postgresql+asyncpg"),
    "psycopg-async": ("durable_postgres_url", "postgresql+psycopg"),
}


class AppBase(DeclarativeBase):
    pass


class Order(AppBase):
    __tablename__ = "app_async_orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str]


@pytest.fixture(params=list(_ASYNC_DRIVERS))
def async_url(request: pytest.FixtureRequest) -> str:
    """A fresh database's URL with an async driver (create_async_engine picks psycopg's
    async dialect for ``postgresql+psycopg``)."""
    fixture, driver = _ASYNC_DRIVERS[request.param]
    url = sa.make_url(request.getfixturevalue(fixture)).set(drivername=driver)
    return url.render_as_string(hide_password=False)


@contextlib.asynccontextmanager
async def on_async_engine(url: str) -> AsyncIterator[tuple[Durable, AsyncEngine]]:
    """``Durable(AsyncEngine)`` with its tables and the app's, both engines disposed after."""
    async_engine = create_async_engine(url)
    engine = Durable(async_engine)
    engine.create_tables()
    AppBase.metadata.create_all(engine.sa_engine)
    try:
        yield engine, async_engine
    finally:
        await async_engine.dispose()
        engine.sa_engine.dispose()


def run_on(url: str, body: Callable[[Durable, AsyncEngine], Awaitable[None]]) -> None:
    async def main() -> None:
        async with on_async_engine(url) as (engine, async_engine):
            await body(engine, async_engine)

    asyncio.run(main())


# ── joining the caller's transaction ───────────────────────────────────────────


def test_start_async_joins_the_callers_transaction_commit(async_url: str) -> None:
    durable("process-order").step("a", lambda ctx: ctx.input["order_id"])

    async def body(engine: Durable, async_engine: AsyncEngine) -> None:
        async with AsyncSession(async_engine) as session, session.begin():
            order = Order(sku="A-1")
            session.add(order)
            await session.flush()
            started = await engine.start_async(
                "process-order", {"order_id": order.id}, session=session
            )
            assert started.created
            assert started.status == "running"
        assert count(engine, Order) == 1
        assert pending_jobs(engine) == 1
        drain(engine)
        snapshot = await engine.status_async(started.run_id)
        assert snapshot.status == "completed"
        assert snapshot.result == {"a": 1}

    run_on(async_url, body)


def test_start_async_in_a_rolled_back_transaction_leaves_nothing(async_url: str) -> None:
    durable("process-order").step("a", lambda ctx: 1)

    async def body(engine: Durable, async_engine: AsyncEngine) -> None:
        async with AsyncSession(async_engine) as session:
            session.add(Order(sku="A-1"))
            await session.flush()
            await engine.start_async("process-order", {}, session=session)
            await session.rollback()
        assert count(engine, Order) == 0
        assert count(engine, WorkflowRun) == 0
        assert pending_jobs(engine) == 0

    run_on(async_url, body)


def test_resume_and_cancel_async_join_the_callers_transaction(async_url: str) -> None:
    durable("gated").wait_for_signal("gate", "go")

    async def body(engine: Durable, async_engine: AsyncEngine) -> None:
        run_id = (await engine.start_async("gated")).run_id
        drain(engine)

        async with AsyncSession(async_engine) as session:
            assert (await engine.resume_async(run_id, "go", 1, session=session)).accepted
            await session.rollback()
        assert get_run(engine, run_id).status == "suspended"

        async with AsyncSession(async_engine) as session:
            canceled = await engine.cancel_async(run_id, session=session)
            assert canceled.canceled == (run_id,)
            await session.rollback()
        assert get_run(engine, run_id).status == "suspended"

        async with AsyncSession(async_engine) as session, session.begin():
            resumed = await engine.resume_async(run_id, "go", {"x": 1.5}, session=session)
            assert resumed.accepted
            assert resumed.status == "running"
        assert get_run(engine, run_id).status == "running"
        drain(engine)
        assert (await engine.status_async(run_id)).result == {"gate": {"x": 1.5}}

    run_on(async_url, body)


def test_cancel_async_with_compensation_rolls_back_and_the_hook_writes_once(
    async_url: str,
) -> None:
    """cancel_async(compensate=True) in the caller's transaction: a rollback changes
    nothing; a commit undoes the completed step and ends the run canceled, and its
    on_finish hook writes its row on the transaction that writes ``canceled``."""
    undone: list[str] = []

    def record(ctx: DurableContext) -> None:
        ctx.session.add(Order(sku=f"ended {ctx.final_status}"))

    durable("undo-on-cancel").step(
        "reserve", lambda ctx: "held", compensate=lambda ctx: undone.append("reserve")
    ).wait_for_signal("gate", "go").on_finish(record)

    async def body(engine: Durable, async_engine: AsyncEngine) -> None:
        run_id = (await engine.start_async("undo-on-cancel")).run_id
        drain(engine)
        async with AsyncSession(async_engine) as session:
            await engine.cancel_async(run_id, compensate=True, session=session)
            await session.rollback()
        assert get_run(engine, run_id).status == "suspended"

        async with AsyncSession(async_engine) as session, session.begin():
            await engine.cancel_async(run_id, compensate=True, session=session)
        assert get_run(engine, run_id).status == "compensating"
        drain(engine)
        assert (await engine.status_async(run_id)).status == "canceled"
        assert undone == ["reserve"]
        async with AsyncSession(async_engine) as session:
            skus = (await session.scalars(sa.select(Order.sku))).all()
        assert skus == ["ended canceled"]

    run_on(async_url, body)


def test_send_async_keeps_a_signal_in_the_callers_transaction(async_url: str) -> None:
    """A send before the wait, in an AsyncSession: rolled back, nothing is kept; committed,
    the wait takes it without suspending. A send to an ended run is refused."""
    durable("send-later").step("a", lambda ctx: 1).wait_for_signal("gate", "go")

    async def body(engine: Durable, async_engine: AsyncEngine) -> None:
        run_id = (await engine.start_async("send-later")).run_id
        async with AsyncSession(async_engine) as session:
            sent = await engine.send_async(run_id, "go", {"n": 1}, session=session)
            assert not sent.delivered
            await session.rollback()
        async with AsyncSession(async_engine) as session, session.begin():
            sent = await engine.send_async(run_id, "go", {"n": 2}, session=session)
            assert (sent.delivered, sent.status) == (False, "running")
        drain(engine)
        assert (await engine.status_async(run_id)).result == {"a": 1, "gate": {"n": 2}}
        with pytest.raises(RunTerminalError):
            await engine.send_async(run_id, "go")
        async with AsyncSession(async_engine) as session:
            with pytest.raises(WrongSessionError, match="send_async"):
                engine.send(run_id, "go", session=session)  # type: ignore[arg-type]

    run_on(async_url, body)


def test_a_sync_durable_joins_an_async_session_too(async_url: str) -> None:
    """Durable on a plain Engine: the async calls still join the caller's AsyncSession,
    and without one they run the sync call in a thread."""
    durable("process-order").step("a", lambda ctx: 2)

    async def main() -> None:
        async_engine = create_async_engine(async_url)
        engine = Durable(sync_engine_for(async_engine))
        engine.create_tables()
        AppBase.metadata.create_all(engine.sa_engine)
        try:
            assert engine.async_engine is None
            async with AsyncSession(async_engine) as session:
                session.add(Order(sku="B-2"))
                await engine.start_async("process-order", session=session)
                await session.rollback()
            assert count(engine, WorkflowRun) == 0
            async with AsyncSession(async_engine) as session, session.begin():
                session.add(Order(sku="B-2"))
                joined = await engine.start_async("process-order", session=session)
            alone = await engine.start_async("process-order", idempotency_key="k")
            again = await engine.start_async("process-order", idempotency_key="k")
            assert (again.run_id, again.created) == (alone.run_id, False)
            assert count(engine, Order) == 1
            drain(engine)
            runs = await engine.list_async(status="completed")
            assert sorted(r.run_id for r in runs) == sorted([joined.run_id, alone.run_id])
        finally:
            await async_engine.dispose()
            engine.sa_engine.dispose()

    asyncio.run(main())


def test_an_async_scoped_session_is_joined_too(async_url: str) -> None:
    durable("process-order").step("a", lambda ctx: 3)

    async def body(engine: Durable, async_engine: AsyncEngine) -> None:
        scoped = async_scoped_session(
            async_sessionmaker(async_engine), scopefunc=asyncio.current_task
        )
        scoped.add(Order(sku="D-4"))
        started = await engine.start_async("process-order", session=scoped)
        await scoped.rollback()
        assert count(engine, WorkflowRun) == 0
        started = await engine.start_async("process-order", session=scoped)
        await scoped.commit()
        await scoped.remove()
        assert get_run(engine, started.run_id).status == "running"

    run_on(async_url, body)


# ── without a session: the engine ──────────────────────────────────────────────


def test_async_calls_without_a_session_use_the_async_engine(async_url: str) -> None:
    durable("gated").step("a", lambda ctx: ctx.input["n"]).wait_for_signal("gate", "go")

    async def body(engine: Durable, async_engine: AsyncEngine) -> None:
        first = await engine.start_async("gated", {"n": 1}, idempotency_key="order-42")
        second = await engine.start_async("gated", {"n": 2}, idempotency_key="order-42")
        assert (first.created, second.created) == (True, False)
        assert second.run_id == first.run_id
        other = await engine.start_async("gated", {"n": 3})
        drain(engine)

        suspended = await engine.list_async(status="suspended", workflow="gated")
        assert [r.run_id for r in suspended] == [other.run_id, first.run_id]
        assert [r.run_id for r in await engine.list_async(limit=1)] == [other.run_id]
        assert await engine.list_async(parent_run_id=first.run_id) == []

        not_waiting = await engine.resume_async(first.run_id, "other-signal")
        assert not not_waiting.accepted
        assert (await engine.resume_async(first.run_id, "go", "yes")).accepted
        canceled = await engine.cancel_async(other.run_id)
        assert canceled.canceled == (other.run_id,)
        drain(engine)

        assert (await engine.status_async(first.run_id)).result == {"a": 1, "gate": "yes"}
        assert (await engine.status_async(other.run_id)).status == "canceled"
        assert engine.status(first.run_id) == await engine.status_async(first.run_id)
        assert engine.list() == await engine.list_async()

    run_on(async_url, body)


def test_a_worker_of_a_durable_on_an_async_engine_completes_a_run(async_url: str) -> None:
    durable("worked").step("a", lambda ctx: ctx.input["n"] * 2).step(
        "b", lambda ctx: ctx.results["a"] + 1
    )

    async def body(engine: Durable, async_engine: AsyncEngine) -> None:
        with engine.worker(concurrency=1, **FAST):
            async with AsyncSession(async_engine) as session, session.begin():
                session.add(Order(sku="C-3"))
                run_id = (await engine.start_async("worked", {"n": 20}, session=session)).run_id
            final = await engine.wait_async(run_id, timeout=30)
        assert final.status == "completed"
        assert final.result == {"a": 40, "b": 41}

    run_on(async_url, body)


# ── errors ─────────────────────────────────────────────────────────────────────


def test_async_calls_raise_what_the_sync_calls_raise(async_url: str) -> None:
    durable("known").step("a", lambda ctx: 1)

    async def body(engine: Durable, async_engine: AsyncEngine) -> None:
        with pytest.raises(RunNotFoundError):
            await engine.status_async(999)
        with pytest.raises(RunNotFoundError):
            await engine.resume_async(999, "go")
        with pytest.raises(RunNotFoundError):
            await engine.cancel_async(999)
        with pytest.raises(WorkflowNotRegisteredError):
            await engine.start_async("unknown")
        with pytest.raises(InvalidArgumentError, match="unknown run status"):
            await engine.list_async(status="bogus")
        async with AsyncSession(async_engine) as session:
            with pytest.raises(RunNotFoundError):
                await engine.resume_async(999, "go", session=session)
        assert count(engine, WorkflowRun) == 0

    run_on(async_url, body)


def test_a_sync_call_refuses_an_async_session_and_the_reverse(async_url: str) -> None:
    durable("known").step("a", lambda ctx: 1)

    async def body(engine: Durable, async_engine: AsyncEngine) -> None:
        async with AsyncSession(async_engine) as session:
            with pytest.raises(WrongSessionError, match=r"await engine\.start_async\("):
                engine.start("known", session=session)  # type: ignore[arg-type]
            with pytest.raises(WrongSessionError, match=r"resume_async"):
                engine.resume(1, "go", session=session)  # type: ignore[arg-type]
            with pytest.raises(WrongSessionError, match=r"cancel_async"):
                engine.cancel(1, session=session)  # type: ignore[arg-type]
        with Session(engine.sa_engine) as sync_session:
            with pytest.raises(WrongSessionError, match=r"call `engine\.start\(\.\.\."):
                await engine.start_async("known", session=sync_session)  # type: ignore[arg-type]
            with pytest.raises(WrongSessionError, match=r"engine\.cancel\("):
                await engine.cancel_async(1, session=sync_session)  # type: ignore[arg-type]
        with pytest.raises(WrongSessionError, match="not str"):
            await engine.resume_async(1, "go", session="nope")  # type: ignore[arg-type]
        assert count(engine, WorkflowRun) == 0

    run_on(async_url, body)


# ── the sync engine a Durable on an AsyncEngine derives ────────────────────────


def test_the_sync_engine_keeps_the_database_and_credentials() -> None:
    cases = {
        "postgresql+asyncpg://app:s3cret@127.0.0.1:5433/shop?application_name=x": (
            "postgresql+psycopg://app:s3cret@127.0.0.1:5433/shop?application_name=x"
        ),
        "postgresql+psycopg://app:s3cret@127.0.0.1/shop": (
            "postgresql+psycopg://app:s3cret@127.0.0.1/shop"
        ),
        "sqlite+aiosqlite:///app.db?timeout=30": "sqlite:///app.db?timeout=30",
    }
    for given, wanted in cases.items():
        derived = sync_engine_for(create_async_engine(given))
        assert derived.url.render_as_string(hide_password=False) == wanted


def test_the_sync_engine_keeps_the_json_serializer_and_execution_options() -> None:
    def dumps(value: Any) -> str:
        return json.dumps(value, sort_keys=True)

    async_engine = create_async_engine(
        "postgresql+asyncpg://app@127.0.0.1/shop", json_serializer=dumps
    ).execution_options(schema_translate_map={None: "tenant"})
    derived = sync_engine_for(async_engine)
    assert derived.dialect._json_serializer is dumps  # type: ignore[attr-defined]
    assert derived.get_execution_options()["schema_translate_map"] == {None: "tenant"}


def test_an_async_engine_the_workers_cannot_share_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="in-memory SQLite"):
        Durable(create_async_engine("sqlite+aiosqlite://"))
    with pytest.raises(InvalidArgumentError, match="sync_engine goes with an AsyncEngine"):
        Durable(sa.create_engine("sqlite://"), sync_engine=sa.create_engine("sqlite://"))


def test_a_given_sync_engine_is_used(durable_sqlite_url: str) -> None:
    sync = sa.create_engine(durable_sqlite_url)
    url = sa.make_url(durable_sqlite_url).set(drivername="sqlite+aiosqlite")
    engine = Durable(create_async_engine(url), sync_engine=sync)
    assert engine.sa_engine is sync
    sync.dispose()


def test_sqlite_settings_apply_to_the_async_engine(durable_sqlite_url: str) -> None:
    url = sa.make_url(durable_sqlite_url).set(drivername="sqlite+aiosqlite")

    async def main() -> list[Any]:
        async_engine = create_async_engine(url)
        Durable(async_engine).sa_engine.dispose()
        async with async_engine.connect() as conn:
            pragmas = [
                (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "busy_timeout", "foreign_keys", "synchronous")
            ]
        await async_engine.dispose()
        return pragmas

    assert asyncio.run(main()) == ["wal", 30_000, 1, 1]  # synchronous=NORMAL is 1


def test_durable_imports_and_runs_without_greenlet(durable_sqlite_url: str) -> None:
    """The asyncio extra is optional: without greenlet the sync engine works as ever."""
    script = f"""
import sys
sys.modules["greenlet"] = None  # as if it were not installed
import sqlalchemy as sa
from durable_sa import Durable, durable
from durable_sa.testing import drain
durable("plain").step("a", lambda ctx: 7)
engine = Durable(sa.create_engine({durable_sqlite_url!r}))
engine.create_tables()
run_id = engine.start("plain").run_id
drain(engine)
assert engine.status(run_id).result == {{"a": 7}}
assert "sqlalchemy.ext.asyncio" not in sys.modules
print("ok")
"""
    done = subprocess.run(  # noqa: S603 - our own interpreter, our own script
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_one_retry_policy_serves_the_sync_and_async_transactions() -> None:
    class Serialization(Exception):  # noqa: N818 - stands for the driver's exception
        sqlstate = "40001"

    retryable = sa.exc.DBAPIError("UPDATE ...", {}, Serialization())
    other = sa.exc.DBAPIError("UPDATE ...", {}, ValueError("constraint"))
    pauses = [retry_pause(retryable, attempt) for attempt in range(1, 7)]
    assert all(0 < p < 1 for p in pauses[:5])
    assert pauses[5] is None  # the sixth attempt was the last
    assert retry_pause(other, 1) is None


def test_start_async_takes_the_limit_priority_and_debounce_options(async_url: str) -> None:
    durable("limited-async", max_active_per_key=1).wait_for_signal("gate", "go")

    async def body(engine: Durable, async_engine: AsyncEngine) -> None:
        first = await engine.start_async("limited-async", concurrency_key="c", priority=2)
        async with AsyncSession(async_engine) as session, session.begin():
            second = await engine.start_async("limited-async", concurrency_key="c", session=session)
        assert (first.status, second.status) == ("running", "pending")
        window = timedelta(minutes=1)
        one = await engine.start_async("limited-async", debounce_key="d", debounce=window)
        two = await engine.start_async("limited-async", debounce_key="d", debounce=window)
        assert (one.run_id, one.created, two.created) == (two.run_id, True, False)
        snapshot = await engine.status_async(second.run_id)
        assert snapshot.waiting_reason == "limit of key 'c' (1/1 active)"
        assert (await engine.status_async(first.run_id)).priority == 2

    run_on(async_url, body)
