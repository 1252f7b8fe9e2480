"""Limited runs that end in one group commit give back their places together, exactly.

A worker groups the plans of different runs into one transaction; a plan that ends a
limited run joins it (:attr:`WritePlan.lock_free`), and the applier gives back all the
group's places at once, workflow by workflow in name order, then admits. These tests
apply such groups through the one applier, on both databases, and race two groups that
end runs of the same two workflows listed in opposite orders on PostgreSQL.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Session

from durable_sa import Durable, DurableContext, durable
from durable_sa.engine.applier import PlanItem
from durable_sa.engine.decision import Decision
from durable_sa.engine.runner import prepare
from durable_sa.models import Slots
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
