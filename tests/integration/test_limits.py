"""Limits on active runs: pending starts, admission order, places freed by every ending."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from durable_sa import Durable, DurableContext, RunStatus, durable
from durable_sa.errors import DefinitionError, PayloadError
from durable_sa.models import Slots
from durable_sa.testing import FakeClock, clear_jobs, drain, pending_jobs
from tests.integration.helpers import far_future, get_run

if TYPE_CHECKING:
    from durable_sa.core.workflow import DurableWorkflow

BEGUN: list[Any] = []


def record(ctx: DurableContext) -> Any:
    BEGUN.append(ctx.input["n"])
    return ctx.input["n"]


@pytest.fixture(autouse=True)
def _fresh() -> None:
    BEGUN.clear()


def held(name: str, **limits: Any) -> DurableWorkflow:
    """A workflow that records its start, then waits (suspended) for ``go``."""
    return durable(name, **limits).step("record", record).wait_for_signal("wait", "go")


def statuses(engine: Durable, ids: list[int]) -> list[str]:
    return [str(get_run(engine, run_id).status) for run_id in ids]


def active(engine: Durable, name: str, key: str = "") -> int:
    with Session(engine.sa_engine) as session:
        slot = session.get(Slots, (name, key))
        return -1 if slot is None else slot.active


def test_max_active_holds_further_starts_pending_and_admits_by_priority(engine: Durable) -> None:
    held("two-at-a-time", max_active=2)
    priorities = [5, 5, 5, 1, 5, 0]
    started = [
        engine.start("two-at-a-time", {"n": n}, priority=p) for n, p in enumerate(priorities)
    ]
    assert [s.status for s in started] == ["running"] * 2 + ["pending"] * 4
    assert all(s.created for s in started)
    ids = [s.run_id for s in started]
    drain(engine)
    assert statuses(engine, ids) == ["suspended"] * 2 + ["pending"] * 4
    assert active(engine, "two-at-a-time") == 2
    for run_id in ids:  # end them one by one, in start order: each end admits one
        if get_run(engine, run_id).status == "pending":
            continue
        engine.resume(run_id, "go", None)
        drain(engine)
        assert active(engine, "two-at-a-time") <= 2
    while any(s != "completed" for s in statuses(engine, ids)):
        waiting = [i for i in ids if get_run(engine, i).status == "suspended"]
        assert 0 < len(waiting) <= 2
        engine.resume(waiting[0], "go", None)
        drain(engine)
    # the first two at once; then priority 0, 1, and the priority-5 ones in arrival order
    assert BEGUN == [0, 1, 5, 3, 2, 4]
    assert active(engine, "two-at-a-time") == 0


def test_suspended_runs_count_and_a_plain_workflow_pays_nothing(engine: Durable) -> None:
    held("one-at-a-time", max_active=1)
    held("unlimited")
    first = engine.start("one-at-a-time", {"n": 1})
    drain(engine)
    assert get_run(engine, first.run_id).status == "suspended"
    assert engine.start("one-at-a-time", {"n": 2}).status == "pending"
    plain = [engine.start("unlimited", {"n": n}) for n in range(3)]
    assert {s.status for s in plain} == {"running"}
    assert not any(get_run(engine, s.run_id).limited for s in plain)
    assert active(engine, "unlimited") == -1  # no slots row: never counted


def test_per_key_limit(engine: Durable) -> None:
    held("per-customer", max_active_per_key=1)
    a1 = engine.start("per-customer", {"n": "a1"}, concurrency_key="a")
    a2 = engine.start("per-customer", {"n": "a2"}, concurrency_key="a")
    b1 = engine.start("per-customer", {"n": "b1"}, concurrency_key="b")
    free = engine.start("per-customer", {"n": "free"})  # no key: no per-key limit
    assert [a1.status, a2.status, b1.status, free.status] == [
        "running",
        "pending",
        "running",
        "running",
    ]
    drain(engine)
    engine.resume(b1.run_id, "go", None)  # b's place frees nothing for a
    drain(engine)
    assert get_run(engine, a2.run_id).status == "pending"
    engine.resume(a1.run_id, "go", None)
    drain(engine)
    assert get_run(engine, a2.run_id).status == "suspended"
    assert active(engine, "per-customer", "a") == 1
    assert active(engine, "per-customer", "b") == -1  # no run counted or waiting: row gone


def test_combined_limits(engine: Durable) -> None:
    held("combined", max_active=2, max_active_per_key=1)
    runs = [
        engine.start("combined", {"n": n}, concurrency_key=key)
        for n, key in enumerate(["a", "a", "b", "c"])
    ]
    assert [r.status for r in runs] == ["running", "pending", "running", "pending"]
    drain(engine)
    engine.resume(runs[0].run_id, "go", None)  # frees a and one workflow place: a's next
    drain(engine)
    assert statuses(engine, [r.run_id for r in runs]) == [
        "completed",
        "suspended",
        "suspended",
        "pending",
    ]
    engine.resume(runs[2].run_id, "go", None)
    drain(engine)
    assert get_run(engine, runs[3].run_id).status == "suspended"
    assert active(engine, "combined") == 2


@pytest.mark.parametrize("compensate", [False, True])
def test_cancel_frees_a_place_and_a_pending_run_cancels_alone(
    engine: Durable, compensate: bool
) -> None:
    held("cancel-me", max_active=1)
    first = engine.start("cancel-me", {"n": 1})
    second = engine.start("cancel-me", {"n": 2})
    third = engine.start("cancel-me", {"n": 3})
    drain(engine)
    engine.cancel(second.run_id, compensate=compensate)  # pending: frees nothing
    assert get_run(engine, second.run_id).status == "canceled"
    assert get_run(engine, third.run_id).status == "pending"
    engine.cancel(first.run_id, compensate=compensate)
    drain(engine, now=far_future())
    assert get_run(engine, first.run_id).status == "canceled"
    assert get_run(engine, third.run_id).status == "suspended"
    assert BEGUN == [1, 3]
    assert active(engine, "cancel-me") == 1


def test_failure_frees_a_place(engine: Durable) -> None:
    def boom(ctx: DurableContext) -> None:
        if ctx.input["n"] == 1:
            msg = "boom"
            raise RuntimeError(msg)

    durable("fails", max_active=1).step("record", record).step("boom", boom, max_retries=1)
    first = engine.start("fails", {"n": 1})
    second = engine.start("fails", {"n": 2})
    assert second.status == "pending"
    drain(engine, now=far_future())
    assert get_run(engine, first.run_id).status == "failed"
    assert get_run(engine, second.run_id).status == "completed"
    assert active(engine, "fails") == 0


def test_a_run_with_on_finish_frees_its_place_at_the_finish(engine: Durable) -> None:
    finished: list[int] = []
    held("hooked", max_active=1).on_finish(lambda ctx: finished.append(ctx.input["n"]))
    first = engine.start("hooked", {"n": 1})
    second = engine.start("hooked", {"n": 2})
    drain(engine)  # first records, suspends
    assert engine.resume(first.run_id, "go", None).accepted
    drain(engine, max=1)  # the signal step ends the steps: the finish job is queued
    assert get_run(engine, first.run_id).status == "running"
    assert get_run(engine, second.run_id).status == "pending"  # not before the finish
    drain(engine)
    assert finished == [1]
    assert get_run(engine, first.run_id).status == "completed"
    assert get_run(engine, second.run_id).status == "suspended"


def test_idempotent_limited_start_counts_once(engine: Durable) -> None:
    held("keyed", max_active=1)
    first = engine.start("keyed", {"n": 1}, idempotency_key="k")
    again = engine.start("keyed", {"n": 1}, idempotency_key="k")
    assert again.run_id == first.run_id
    assert not again.created
    assert active(engine, "keyed") == 1


def test_bad_options_are_refused(engine: Durable) -> None:
    with pytest.raises(DefinitionError, match="max_active"):
        durable("bad", max_active=0)
    held("ok", max_active=1)
    with pytest.raises(PayloadError, match="concurrency_key"):
        engine.start("ok", {"n": 1}, concurrency_key="")
    with pytest.raises(PayloadError, match="priority"):
        engine.start("ok", {"n": 1}, priority=1.5)  # type: ignore[arg-type]
    with pytest.raises(PayloadError, match="debounce= needs debounce_key"):
        engine.start("ok", {"n": 1}, debounce=timedelta(seconds=3))


def test_priority_orders_due_jobs(engine: Durable) -> None:
    durable("prioritized").step("record", record)
    for n, p in enumerate([3, 0, 2, -1]):
        engine.start("prioritized", {"n": n}, priority=p)
    while (job := engine.admin.claim(now=engine.now, worker="t")) is not None:
        engine.admin.run_job(job)
    assert BEGUN == [3, 1, 2, 0]
    with Session(engine.sa_engine) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Slots)) == 0


def test_status_and_list_say_why_a_run_waits(engine: Durable) -> None:
    held("shown", max_active=1, max_active_per_key=1)
    first = engine.start("shown", {"n": 1}, concurrency_key="k")
    by_workflow = engine.start("shown", {"n": 2}, concurrency_key="j", priority=3)
    snap = engine.status(by_workflow.run_id)
    assert snap.status == RunStatus.PENDING
    assert snap.waiting_reason == "limit of workflow 'shown' (1/1 active)"
    assert snap.priority == 3
    assert snap.concurrency_key == "j"
    assert engine.status(first.run_id).waiting_reason is None
    held("keyed-only", max_active_per_key=1)
    engine.start("keyed-only", {"n": 3}, concurrency_key="k")
    by_key = engine.start("keyed-only", {"n": 4}, concurrency_key="k")
    listed = {s.run_id: s for s in engine.list(status="pending")}
    assert set(listed) == {by_workflow.run_id, by_key.run_id}
    assert listed[by_key.run_id].waiting_reason == "limit of key 'k' (1/1 active)"


def test_debounce_collapses_starts_into_one_run_with_the_latest_input(engine: Durable) -> None:
    durable("digest").step("record", record)
    window = timedelta(seconds=30)
    first = engine.start("digest", {"n": 1}, debounce_key="user-7", debounce=window)
    assert (first.status, first.created) == ("pending", True)
    snap = engine.status(first.run_id)
    assert snap.waiting_reason is not None
    assert snap.waiting_reason.startswith("debounce until ")
    clock = engine.now
    again = engine.start("digest", {"n": 2}, debounce_key="user-7", debounce=window)
    assert (again.run_id, again.created, again.status) == (first.run_id, False, "pending")
    other = engine.start("digest", {"n": 9}, debounce_key="user-8", debounce=window)
    assert other.run_id != first.run_id
    assert drain(engine) == 0  # nothing is due inside the window
    # The first window has passed, but the second start moved it on: not yet.
    drain(engine, now=clock + timedelta(seconds=29))
    assert get_run(engine, first.run_id).status == "pending"
    drain(engine, now=clock + timedelta(seconds=31))
    assert get_run(engine, first.run_id).status == "completed"
    assert get_run(engine, first.run_id).input == {"n": 2}
    assert sorted(BEGUN) == [2, 9]
    # A start after the run has begun makes a new run.
    later = engine.start("digest", {"n": 3}, debounce_key="user-7", debounce=window)
    assert later.created
    assert later.run_id != first.run_id


def test_debounce_with_a_limit_begins_under_the_limit(sa_engine: sa.Engine) -> None:
    clock = FakeClock()
    engine = Durable(sa_engine, clock=clock)
    engine.create_tables()
    held("debounced-limited", max_active=1)
    busy = engine.start("debounced-limited", {"n": 1})
    window = timedelta(seconds=5)
    late = engine.start("debounced-limited", {"n": 2}, debounce_key="k", debounce=window)
    drain(engine)
    assert engine.status(late.run_id).waiting_reason == "debounce until 2030-01-01T00:00:05+00:00"
    clock.advance(window)
    drain(engine)
    assert get_run(engine, busy.run_id).status == "suspended"
    assert get_run(engine, late.run_id).status == "pending"
    assert engine.status(late.run_id).waiting_reason == (
        "limit of workflow 'debounced-limited' (1/1 active)"
    )
    engine.resume(busy.run_id, "go", None)
    drain(engine)
    assert get_run(engine, late.run_id).status == "suspended"
    assert BEGUN == [1, 2]


def test_debounce_needs_a_window(engine: Durable) -> None:
    durable("digest").step("record", record)
    with pytest.raises(PayloadError, match="debounce"):
        engine.start("digest", {"n": 1}, debounce_key="k")
    with pytest.raises(PayloadError, match="not both"):
        engine.start(
            "digest", {"n": 1}, debounce_key="k", debounce=timedelta(1), idempotency_key="i"
        )


def test_recover_gives_a_debounced_run_its_lost_begin_job(engine: Durable) -> None:
    held("limited-recover", max_active=1)
    engine.start("limited-recover", {"n": 1})
    waiting = engine.start("limited-recover", {"n": 2})
    debounced = engine.start(
        "limited-recover", {"n": 3}, debounce_key="k", debounce=timedelta(seconds=1)
    )
    clear_jobs(engine)
    assert engine.recover() == 2  # the first run's step and the debounced run's begin
    assert pending_jobs(engine) == 2
    assert get_run(engine, waiting.run_id).status == "pending"  # under the limit: no job
    drain(engine, now=far_future())
    assert get_run(engine, debounced.run_id).status == "pending"  # its window passed


def test_child_runs_are_counted_under_their_workflows_limit(engine: Durable) -> None:
    held("limited-child", max_active=1)
    durable("parent-of-limited").child_workflow("kid", "limited-child")
    first = engine.start("parent-of-limited", {"n": 1})
    second = engine.start("parent-of-limited", {"n": 2})
    drain(engine)
    kids = [engine.status(p.run_id).children[0] for p in (first, second)]
    assert [k.status for k in kids] == ["suspended", "pending"]
    assert kids[1].waiting_reason == "limit of workflow 'limited-child' (1/1 active)"
    engine.resume(kids[0].run_id, "go", None)
    drain(engine)
    assert engine.status(first.run_id).status == "completed"
    assert get_run(engine, kids[1].run_id).status == "suspended"
    engine.cancel(second.run_id)
    assert get_run(engine, kids[1].run_id).status == "canceled"
    assert active(engine, "limited-child") == 0
