"""Limit bookkeeping, pure: admission decisions, places given back, debounced begins.

The first property plays random starts and ends against a model of the slots table that
decides only with :func:`admits` and admits ``ORDER BY priority, id`` as the shell's
statement does; it holds the limits and "no pending run left behind while it could
begin" after every step. The others check what the core's plans ask of the shell.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from durable_sa.core.admission import (
    Count,
    Limits,
    admits,
    debounce_reason,
    has_room,
    waiting_reason,
)
from durable_sa.core.begin import decide_begin
from durable_sa.core.decide import decide_cancel
from durable_sa.core.endings import HOOK_KEY
from durable_sa.core.jobs import AdvanceJob, BeginJob
from durable_sa.core.plan import plan_transition
from durable_sa.core.snapshot import RunSnapshot
from durable_sa.core.start import decide_start
from durable_sa.core.status import RunStatus
from durable_sa.errors import DefinitionError, PayloadError

NOW = datetime(2030, 1, 1, tzinfo=UTC)
KEYS = [None, "a", "b", "c"]


@attrs.define
class Model:
    """The slots table and the runs of one workflow, as the shell keeps them."""

    limits: Limits
    active: dict[int, str | None] = attrs.field(factory=dict)
    pending: dict[int, tuple[int, str | None]] = attrs.field(factory=dict)
    next_id: int = 1

    def workflow(self) -> Count:
        return Count(active=len(self.active), limit=self.limits.max_active)

    def key(self, key: str | None) -> Count | None:
        if not self.limits.keyed(key):
            return None
        held = sum(1 for k in self.active.values() if k == key)
        return Count(active=held, limit=self.limits.max_active_per_key)

    def admit(self) -> None:
        """Begin pending runs while the workflow has room, lowest (priority, id) first."""
        while self.workflow().has_room:
            ready = [
                (priority, run_id, key)
                for run_id, (priority, key) in self.pending.items()
                if admits(self.workflow(), self.key(key))
            ]
            if not ready:
                return
            _, run_id, key = min(ready)
            del self.pending[run_id]
            self.active[run_id] = key

    def start(self, key: str | None, priority: int) -> int:
        run_id = self.next_id
        self.next_id += 1
        self.pending[run_id] = (priority, key)
        self.admit()
        return run_id

    def end(self, index: int) -> None:
        if self.active:
            run_id = sorted(self.active)[index % len(self.active)]
            del self.active[run_id]
            self.admit()


operations = st.lists(
    st.one_of(
        st.tuples(st.just("start"), st.sampled_from(KEYS), st.integers(-2, 2)),
        st.tuples(st.just("end"), st.integers(0, 50), st.just(0)),
    ),
    max_size=60,
)
limits = st.builds(
    Limits,
    max_active=st.one_of(st.none(), st.integers(1, 4)),
    max_active_per_key=st.one_of(st.none(), st.integers(1, 2)),
).filter(lambda lim: lim.any)


@settings(max_examples=300, deadline=None)
@given(limits, operations)
def test_limits_hold_and_no_pending_run_is_left_behind(lim: Limits, ops: list) -> None:
    model = Model(lim)
    order: list[int] = []
    for op, arg, priority in ops:
        before = set(model.active)
        if op == "start":
            model.start(arg, priority)
        else:
            model.end(arg)
        order.extend(sorted(set(model.active) - before))
        workflow = model.workflow()
        assert lim.max_active is None or workflow.active <= lim.max_active
        for key in KEYS:
            count = model.key(key)
            assert count is None or count.limit is None or count.active <= count.limit
        for _, key in model.pending.values():  # each waits for a reason
            assert not admits(workflow, model.key(key))
    assert len(set(order)) == len(order)  # a run begins once


def test_admission_order_is_priority_then_arrival() -> None:
    model = Model(Limits(max_active=1))
    first = model.start(None, 0)
    late_low = [model.start(None, 5), model.start(None, 5)]
    urgent = model.start(None, -1)
    begun = []
    for _ in range(3):
        model.end(0)
        begun.extend(model.active)
    assert first not in begun
    assert begun == [urgent, *late_low]


def test_counts_and_reasons() -> None:
    assert has_room(0, None)
    assert has_room(1, 2)
    assert not has_room(2, 2)
    full = Count(active=2, limit=2)
    free = Count(active=0, limit=2)
    assert not admits(full, None)
    assert not admits(free, Count(active=1, limit=1))
    assert admits(free, Count(active=0, limit=1))
    assert waiting_reason(full, None, None, "w") == "limit of workflow 'w' (2/2 active)"
    keyed = Count(active=1, limit=1)
    assert waiting_reason(free, keyed, "k", "w") == "limit of key 'k' (1/1 active)"
    assert waiting_reason(full, keyed, "k", "w") == (  # both bind: both are named
        "limit of workflow 'w' (2/2 active) and limit of key 'k' (1/1 active)"
    )
    assert waiting_reason(full, Count(active=0, limit=1), "k", "w") == (
        "limit of workflow 'w' (2/2 active)"
    )
    later = NOW + timedelta(seconds=5)
    assert debounce_reason(later) == "debounce until 2030-01-01T00:00:05+00:00"


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_a_limit_is_a_positive_integer(bad: object) -> None:
    with pytest.raises(DefinitionError, match="max_active"):
        Limits(max_active=bad)  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="max_active_per_key"):
        Limits(max_active_per_key=bad)  # type: ignore[arg-type]


def _run(status: RunStatus, *, limited: bool = True, **changes: object) -> RunSnapshot:
    run = RunSnapshot(
        id=7,
        workflow_name="w",
        status=status,
        total_steps=2,
        limited=limited,
        concurrency_key="k",
        priority=3,
    )
    return attrs.evolve(run, **changes)


@given(
    st.sampled_from([s for s in RunStatus if not s.is_terminal]),
    st.booleans(),
    st.booleans(),
)
def test_an_ending_gives_back_a_place_exactly_when_the_run_held_one(
    status: RunStatus, limited: bool, compensate: bool
) -> None:
    run = _run(status, limited=limited, current_step=1)
    transition = decide_cancel(run, compensate=compensate, now=NOW)
    assert transition is not None
    plan = plan_transition(transition)
    ends = transition.after.status.is_terminal
    holds = limited and status is not RunStatus.PENDING
    assert (plan.release is not None) == (ends and holds)
    if plan.release is not None:
        assert (plan.release.workflow_name, plan.release.concurrency_key) == ("w", "k")
    if status is RunStatus.PENDING:
        assert transition.after.status is RunStatus.CANCELED  # it never began: no hook


def test_a_pending_run_with_a_hook_is_canceled_at_once() -> None:
    run = _run(RunStatus.PENDING, state={HOOK_KEY: True})
    transition = decide_cancel(run, now=NOW)
    assert transition is not None
    assert transition.after.status is RunStatus.CANCELED
    assert transition.jobs == ()


def test_jobs_of_a_run_carry_its_priority() -> None:
    new = decide_start(
        workflow_name="w", workflow_version="v", total_steps=1, input={}, now=NOW, priority=-4
    )
    assert new.first_job(3).priority == -4


def test_debounced_start_is_due_after_its_window_and_checked() -> None:
    window = timedelta(seconds=9)
    new = decide_start(
        workflow_name="w",
        workflow_version="v",
        total_steps=1,
        input={},
        now=NOW,
        debounce_key="k",
        debounce=window,
    )
    assert new.due == NOW + window
    assert not new.plain
    for bad in (None, timedelta(0), 5):
        with pytest.raises(PayloadError, match="debounce"):
            decide_start(
                workflow_name="w",
                workflow_version="v",
                total_steps=1,
                input={},
                now=NOW,
                debounce_key="k",
                debounce=bad,  # type: ignore[arg-type]
            )


@given(st.integers(-60, 60), st.booleans())
def test_a_begin_job_begins_or_looks_again(moved: int, limited: bool) -> None:
    at = NOW
    begin_at = at + timedelta(seconds=moved)
    run = _run(RunStatus.PENDING, limited=limited, begin_at=begin_at)
    transition = decide_begin(run, BeginJob(run_id=run.id, at=at), now=NOW)
    assert transition is not None
    plan = plan_transition(transition)
    if begin_at > at:
        assert transition.after.status is RunStatus.PENDING
        (again,) = transition.jobs
        assert again.payload == BeginJob(run_id=run.id, at=begin_at)
        assert again.available_at == begin_at
        assert plan.admit is None
    elif limited:
        assert transition.after.status is RunStatus.PENDING
        assert transition.jobs == ()
        assert plan.admit == "w"
    else:
        assert transition.after.status is RunStatus.RUNNING
        (first,) = transition.jobs
        assert first.payload == AdvanceJob(run_id=run.id, step_index=0)
        assert first.priority == 3
        assert plan.admit is None
    assert plan.release is None


def test_a_begin_job_of_a_run_that_began_does_nothing() -> None:
    run = _run(RunStatus.RUNNING, begin_at=NOW)
    assert decide_begin(run, BeginJob(run_id=run.id, at=NOW), now=NOW) is None
