"""Limited runs that end in one group commit give back their places together, exactly.

A worker groups the plans of different runs into one transaction; a plan that ends a
limited run joins it (:attr:`WritePlan.lock_free`), and the applier gives back all the
group's places at once, workflow by workflow in name order, then admits. These tests
apply such groups through the one applier, on both databases, and race two groups that
end runs of the same two workflows listed in opposite orders on PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from durable_sa import Durable, DurableContext, durable
from durable_sa.engine.applier import PlanItem
from durable_sa.engine.decision import Decision
from durable_sa.engine.limits import AdmissionNeededError
from durable_sa.engine.runner import prepare
from durable_sa.errors import DatabaseNotMigratedError
from durable_sa.models import Slots
from durable_sa.store import statements
from durable_sa.store.slot_function import drop_function_ddl
from durable_sa.testing import drain
from tests.integration.helpers import get_run

if TYPE_CHECKING:
    from durable_sa.engine.shell import Shell


def one(ctx: DurableContext) -> int:
    return int(ctx.input["n"])


def counts(engine: Durable, name: str) -> dict[str, int]:
    with Session(engine.sa_engine) as session:
        rows = session.scalars(sa.select(Slots).where(Slots.workflow_name == name))
        return {row.concurrency_key: row.active for row in rows}


def claimed_items(engine: Durable, limit: int) -> list[PlanItem]:
    """Claim up to ``limit`` due jobs, run their steps, and return their plans (unapplied)."""
    shell: Shell = engine.shell
    claims = shell.backend.claim_batch(
        now=shell.now(), worker="w", lease=timedelta(minutes=1), limit=limit
    )
    items: list[PlanItem] = []
    for claim in claims:
        prepared = prepare(shell, claim.job, claim.run)
        assert isinstance(prepared, Decision)
        plan = prepared.plan(prepared.run, now=shell.now(), lease=None)
        assert plan is not None
        items.append(PlanItem(plan, claim.job))
    return items


def test_a_group_of_ends_gives_back_every_place_and_admits_in_order(engine: Durable) -> None:
    durable("g-alpha", max_active=2, max_active_per_key=1).step("s", one)
    durable("g-beta", max_active=3).step("s", one)
    alpha = [
        engine.start("g-alpha", {"n": n}, concurrency_key=key, priority=p)
        for n, (key, p) in enumerate([("a", 0), ("b", 0), ("a", 1), ("c", 5), ("b", 0)])
    ]
    beta = [engine.start("g-beta", {"n": n}) for n in range(5)]
    assert [s.status for s in alpha] == ["running", "running", "pending", "pending", "pending"]
    assert [s.status for s in beta] == ["running"] * 3 + ["pending"] * 2
    items = claimed_items(engine, 10)
    assert len(items) == 5  # the five running runs' only steps: each plan ends its run
    assert all(item.plan.release is not None and item.plan.lock_free for item in items)
    items.sort(key=lambda item: item.plan.run.workflow_name, reverse=True)  # beta first
    now = engine.shell.now()
    applied = engine.shell.transaction(lambda tx: engine.shell.applier.apply(tx, items, now=now))
    assert all(result.applied for result in applied)
    assert [get_run(engine, s.run_id).status for s in alpha] == [
        "completed",
        "completed",
        "running",  # priority 1 under key a: admitted before c's priority 5...
        "pending",  # ...and c waits: the workflow has two places
        "running",  # priority 0 under key b
    ]
    assert [get_run(engine, s.run_id).status for s in beta] == ["completed"] * 3 + ["running"] * 2
    assert counts(engine, "g-alpha") == {"": 2, "a": 1, "b": 1, "c": 0}
    assert counts(engine, "g-beta") == {"": 2}


def test_groups_ending_runs_of_two_workflows_in_opposite_orders_do_not_deadlock(
    pg_engine: sa.Engine,
) -> None:
    engine = Durable(pg_engine)
    engine.create_tables()
    durable("g-one", max_active=100, max_active_per_key=100).step("s", one)
    durable("g-two", max_active=100, max_active_per_key=100).step("s", one)
    rounds = 15
    for n in range(rounds * 2):
        for name in ("g-one", "g-two"):
            engine.start(name, {"n": n}, concurrency_key=f"k{n % 3}")
    failures: list[BaseException] = []
    barrier = threading.Barrier(2)

    def group(reverse: bool) -> None:  # reverse: the order the group lists its plans in
        try:
            for _ in range(rounds):
                items = claimed_items(engine, 2)
                items.sort(key=lambda item: item.plan.run.workflow_name, reverse=reverse)
                barrier.wait(timeout=30)
                with Session(pg_engine) as tx:  # no retry: a deadlock would fail the test
                    engine.shell.applier.apply(tx, items, now=engine.shell.now())
                    tx.commit()
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            failures.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=group, args=(reverse,)) for reverse in (False, True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    with Session(pg_engine) as session:
        rows = session.scalars(sa.select(Slots)).all()
        done = session.scalar(
            sa.text("SELECT count(*) FROM durable_runs WHERE status = 'completed'")
        )
    assert done == rounds * 4
    assert {row.active for row in rows} == {0}


def test_a_keys_row_goes_when_nothing_is_counted_or_waits_under_it(engine: Durable) -> None:
    durable("g-keys", max_active=1, max_active_per_key=1).step("s", one)
    first = engine.start("g-keys", {"n": 1}, concurrency_key="a")
    waiting = engine.start("g-keys", {"n": 2}, concurrency_key="b")  # the workflow is full
    assert (first.status, waiting.status) == ("running", "pending")
    items = claimed_items(engine, 10)
    now = engine.shell.now()
    engine.shell.transaction(lambda tx: engine.shell.applier.apply(tx, items, now=now))
    # a's row went with its last run; b's run was admitted and holds b's row
    assert counts(engine, "g-keys") == {"": 1, "b": 1}
    items = claimed_items(engine, 10)
    now = engine.shell.now()
    engine.shell.transaction(lambda tx: engine.shell.applier.apply(tx, items, now=now))
    assert counts(engine, "g-keys") == {"": 0}
    again = engine.start("g-keys", {"n": 3}, concurrency_key="a")  # the row comes back
    assert again.status == "running"
    assert counts(engine, "g-keys") == {"": 1, "a": 1}


def test_a_key_whose_count_drops_to_zero_keeps_its_row_while_a_run_waits_under_it(
    engine: Durable,
) -> None:
    durable("g-wait", max_active=1, max_active_per_key=2).step("s", one)
    first = engine.start("g-wait", {"n": 1}, concurrency_key="a")
    other = engine.start("g-wait", {"n": 2}, concurrency_key="b")
    later = engine.start("g-wait", {"n": 3}, concurrency_key="a", priority=9)
    assert (first.status, other.status, later.status) == ("running", "pending", "pending")
    items = claimed_items(engine, 10)
    now = engine.shell.now()
    engine.shell.transaction(lambda tx: engine.shell.applier.apply(tx, items, now=now))
    assert get_run(engine, other.run_id).status == "running"  # priority 0 first
    assert counts(engine, "g-wait") == {"": 1, "a": 0, "b": 1}  # a's run still waits


def test_racing_starts_recreate_keys_rows_that_ends_delete(pg_engine: sa.Engine) -> None:
    """Keys' rows come and go under load; no key ever has two runs active at once."""
    from tests.integration.test_limits_race import app, intervals, overlap  # noqa: PLC0415

    engine = Durable(pg_engine)
    engine.create_tables()
    app.create_all(pg_engine)

    def begin(ctx: DurableContext) -> None:
        with pg_engine.begin() as conn:
            conn.execute(
                intervals.insert().values(
                    run_id=ctx.run_id, key=ctx.input["key"], began=time.monotonic()
                )
            )

    def end(ctx: DurableContext) -> None:
        time.sleep(0.005)
        with pg_engine.begin() as conn:
            conn.execute(
                intervals.update()
                .where(intervals.c.run_id == ctx.run_id)
                .values(ended=time.monotonic())
            )

    durable("g-churn", max_active_per_key=1).step("begin", begin).step("end", end)
    starters, each = 6, 10
    barrier = threading.Barrier(starters)

    def starter(n: int) -> None:
        barrier.wait(timeout=30)
        for i in range(each):
            key = f"k{(n + i) % 3}"
            engine.start("g-churn", {"key": key}, concurrency_key=key)
            time.sleep(0.003)

    fast = {"heartbeat": timedelta(seconds=0.2), "lease": timedelta(seconds=5)}
    with (
        engine.worker(concurrency=3, poll_interval=0.02, **fast),
        engine.worker(concurrency=3, poll_interval=0.02, **fast),
    ):
        threads = [threading.Thread(target=starter, args=(n,)) for n in range(starters)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with pg_engine.connect() as conn:
                done = conn.execute(
                    sa.text("SELECT count(*) FROM durable_runs WHERE status = 'completed'")
                ).scalar_one()
            if done == starters * each:
                break
            time.sleep(0.1)
    with pg_engine.connect() as conn:
        rows = conn.execute(sa.select(intervals.c.key, intervals.c.began, intervals.c.ended)).all()
    assert len(rows) == starters * each
    assert all(row.ended is not None for row in rows)
    for key in {row.key for row in rows}:
        assert overlap([(r.began, r.ended) for r in rows if r.key == key]) <= 1
    assert counts(engine, "g-churn") == {"": 0}  # every key's row went with its last run


def _apply_strict(engine: Durable, items: list[PlanItem]) -> None:
    """Apply ``items`` as a worker's held connection does: one statement, autocommit."""
    now = engine.shell.now()
    with (
        engine.sa_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn,
        Session(bind=conn) as session,
    ):
        engine.shell.applier.apply(session, items, now=now, strict=True)
        session.commit()


def test_a_strict_group_gives_back_places_in_its_one_statement(pg_engine: sa.Engine) -> None:
    engine = Durable(pg_engine)
    engine.create_tables()
    durable("g-strict", max_active=5, max_active_per_key=2).step("s", one)
    started = [engine.start("g-strict", {"n": n}, concurrency_key=f"k{n % 2}") for n in range(4)]
    items = claimed_items(engine, 10)
    assert len(items) == 4
    assert engine.shell.applier.one_statement(items, "postgresql")
    items.sort(key=lambda item: item.plan.run_id)
    _apply_strict(engine, items[:3])  # each place given back once, not once per row
    assert counts(engine, "g-strict") == {"": 1, "k1": 1}  # k0's row went with its last run
    _apply_strict(engine, items[3:])
    assert {get_run(engine, s.run_id).status for s in started} == {"completed"}
    assert counts(engine, "g-strict") == {"": 0}


def test_a_strict_group_that_must_admit_applies_nothing(pg_engine: sa.Engine) -> None:
    engine = Durable(pg_engine)
    engine.create_tables()
    durable("g-full", max_active=2).step("s", one)
    started = [engine.start("g-full", {"n": n}) for n in range(3)]
    assert [s.status for s in started] == ["running", "running", "pending"]
    items = claimed_items(engine, 10)
    with pytest.raises(AdmissionNeededError):
        _apply_strict(engine, items)
    assert [get_run(engine, s.run_id).status for s in started] == ["running", "running", "pending"]
    assert counts(engine, "g-full") == {"": 2}
    # In a transaction the same group gives back and admits.
    now = engine.shell.now()
    engine.shell.transaction(lambda tx: engine.shell.applier.apply(tx, items, now=now))
    assert [get_run(engine, s.run_id).status for s in started] == [
        "completed",
        "completed",
        "running",
    ]
    assert counts(engine, "g-full") == {"": 1}


def test_a_worker_admits_through_a_transaction_when_its_statement_is_refused(
    pg_engine: sa.Engine,
) -> None:
    engine = Durable(pg_engine)
    engine.create_tables()
    durable("g-worker", max_active=1).step("s", one).step("t", one)
    started = [engine.start("g-worker", {"n": n}) for n in range(6)]
    with engine.worker(concurrency=2, poll_interval=0.05) as worker:
        finals = [engine.wait(s.run_id, timeout=30) for s in started]
        pipeline = worker._pipeline  # the committer's own record of a refusal
    assert [f.status for f in finals] == ["completed"] * 6
    assert pipeline is not None
    assert pipeline._admitted_at > float("-inf")  # a group's statement was refused
    assert counts(engine, "g-worker") == {"": 0}


@pytest.mark.parametrize("schema", ["Tenant_Mixed", "order"])
def test_places_go_back_in_a_tenant_schema_whatever_its_name(
    durable_postgres_url: str, schema: str
) -> None:
    # The function is called in the schema the tables are in, quoted as they are.
    plain = sa.create_engine(durable_postgres_url)
    with plain.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine = Durable(plain.execution_options(schema_translate_map={None: schema}))
    engine.create_tables()
    durable("g-tenant", max_active=1).step("s", one)
    drained = [engine.start("g-tenant", {"n": n}).run_id for n in range(2)]
    drain(engine)
    with engine.worker(concurrency=2, poll_interval=0.05):
        worked = [engine.start("g-tenant", {"n": n}).run_id for n in range(3)]
        assert [engine.wait(r, timeout=30).status for r in worked] == ["completed"] * 3
    assert [get_run(engine, r).status for r in drained] == ["completed"] * 2
    assert counts(engine, "g-tenant") == {"": 0}
    plain.dispose()


def test_a_worker_will_not_start_on_a_database_without_the_give_back_function(
    pg_engine: sa.Engine,
) -> None:
    engine = Durable(pg_engine)
    engine.create_tables()
    durable("g-unmigrated", max_active=1).step("s", one)
    with pg_engine.begin() as conn:
        conn.exec_driver_sql(drop_function_ddl())
    with pytest.raises(DatabaseNotMigratedError, match=r"create_tables\(\).*g-unmigrated"):
        engine.worker().run()
    engine.create_tables()  # creates what is missing
    run_id = engine.start("g-unmigrated", {"n": 1}).run_id
    with engine.worker(poll_interval=0.05):
        assert engine.wait(run_id, timeout=30).status == "completed"


def test_tenants_in_different_schemas_never_share_a_compiled_statement() -> None:
    # SQLAlchemy caches compiled SQL by a statement's cache key: the schema must be in it.
    a, b, c = (
        statements.pg_write(statements.JOB_ROWS, statements.Releases(schema))._generate_cache_key()
        for schema in ("Tenant_A", "tenant_b", None)
    )
    assert a != b
    assert a != c
    assert b != c
    sql = str(
        statements.pg_write(statements.JOB_ROWS, statements.Releases("Tenant_A")).compile(
            dialect=postgresql.dialect()  # type: ignore[no-untyped-call]
        )
    )
    assert '"Tenant_A".durable_sa_give_back(' in sql


def test_a_strict_group_is_not_refused_for_runs_whose_key_is_full(pg_engine: sa.Engine) -> None:
    # Only per-key limits: a hot key's pending runs cannot begin when another key's run
    # ends, so that end needs no admission and stays one statement.
    engine = Durable(pg_engine)
    engine.create_tables()
    durable("g-keys", max_active_per_key=1).step("s", one)
    hot = [engine.start("g-keys", {"n": n}, concurrency_key="hot") for n in range(3)]
    cold = engine.start("g-keys", {"n": 9}, concurrency_key="cold")
    assert [s.status for s in hot] == ["running", "pending", "pending"]
    items = [i for i in claimed_items(engine, 10) if i.plan.run_id == cold.run_id]
    _apply_strict(engine, items)  # no AdmissionNeededError
    assert get_run(engine, cold.run_id).status == "completed"
    assert [get_run(engine, s.run_id).status for s in hot] == ["running", "pending", "pending"]
