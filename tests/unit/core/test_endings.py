"""Pure decisions of how a run ends: on_finish hooks, cancel with compensation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest

from durable_sa.core.decide import (
    decide_cancel,
    decide_compensation,
    decide_recovery,
    decide_step,
    is_current_advance,
)
from durable_sa.core.endings import (
    CANCEL_KEY,
    FINISH_KEY,
    HOOKED_STATE,
    pending_finish,
)
from durable_sa.core.finish import decide_finish, is_current_finish
from durable_sa.core.jobs import AdvanceJob, CompensateJob, FinishJob
from durable_sa.core.outcomes import Advance, Failed
from durable_sa.core.snapshot import JournalStatus, RunSnapshot, WaitInfo, WaitKind
from durable_sa.core.status import RunStatus as S
from durable_sa.core.transition import Settlement

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def make_run(**changes: Any) -> RunSnapshot:
    base = RunSnapshot(
        id=7,
        workflow_name="orders",
        status=S.RUNNING,
        current_step=1,
        total_steps=2,
        state={"reserve": 1, **HOOKED_STATE},
    )
    return attrs.evolve(base, **changes)


def last_step_done(run: RunSnapshot) -> Advance:
    return Advance(journal=(), result_patch={"pay": 2})


def test_a_hooked_run_waits_for_its_finish_job_instead_of_completing() -> None:
    run = make_run()
    t = decide_step(run, last_step_done(run), attempt=1, now=NOW)
    assert t.after.status is S.RUNNING
    assert t.settle_parent is None
    assert [job.payload for job in t.jobs] == [FinishJob(run_id=7)]
    pending = pending_finish(t.after)
    assert pending is not None
    assert pending.status is S.COMPLETED
    stale = AdvanceJob(run_id=7, step_index=t.after.current_step)
    assert not is_current_advance(t.after, stale)
    assert t.after.public_results == {"reserve": 1, "pay": 2}


def test_a_run_without_hook_completes_as_before() -> None:
    run = make_run(state={"reserve": 1})
    t = decide_step(run, last_step_done(run), attempt=1, now=NOW)
    assert t.after.status is S.COMPLETED
    assert t.jobs == ()


def test_finish_writes_the_final_status_and_settles_the_parent() -> None:
    run = make_run(parent_run_id=3, parent_step_id="sub")
    pending = decide_step(run, last_step_done(run), attempt=1, now=NOW).after
    pending = attrs.evolve(pending, revision=1)
    t = decide_finish(pending, FinishJob(run_id=7), now=NOW)
    assert t is not None
    assert t.after.status is S.COMPLETED
    assert t.after.result == {"reserve": 1, "pay": 2}
    assert FINISH_KEY not in t.after.state
    assert [(w.step_id, w.status) for w in t.journal] == [("#finish", JournalStatus.COMPLETED)]
    assert t.settle_parent is not None
    assert t.settle_parent.settlement is Settlement.COMPLETED
    assert decide_finish(t.after, FinishJob(run_id=7), now=NOW) is None  # terminal: stale


def failed_hook(max_attempts: int) -> Failed:
    return Failed(
        step_name="#finish",
        journal=(),
        failure="RuntimeError: down",
        backoff="linear",
        max_attempts=max_attempts,
        error_type="RuntimeError",
    )


def test_a_failing_hook_is_retried_then_the_run_ends_with_the_failure_journaled() -> None:
    run = make_run()
    pending = decide_step(run, last_step_done(run), attempt=1, now=NOW).after
    retry = decide_finish(pending, FinishJob(run_id=7), now=NOW, failure=failed_hook(2))
    assert retry is not None
    assert retry.after.status is S.RUNNING
    assert [w.step_id for w in retry.journal] == ["#finish#attempt1"]
    (again,) = retry.jobs
    assert again.payload == FinishJob(run_id=7, attempt=2)
    assert again.available_at > NOW
    assert not is_current_finish(retry.after, FinishJob(run_id=7, attempt=1))
    end = decide_finish(
        retry.after, FinishJob(run_id=7, attempt=2), now=NOW, failure=failed_hook(2)
    )
    assert end is not None
    assert end.after.status is S.COMPLETED
    (row,) = end.journal
    assert (row.step_id, row.status, row.error) == ("#finish", "failed", "RuntimeError: down")


def test_a_failed_hooked_run_finishes_failed_from_compensating() -> None:
    run = make_run(status=S.COMPENSATING, compensation_cursor=0, error="boom")
    t = decide_compensation(run, index=0, journal=(), now=NOW)
    assert t.after.status is S.COMPENSATING
    assert t.after.compensation_cursor == -1
    assert decide_recovery(t.after, now=NOW) is not None
    end = decide_finish(t.after, FinishJob(run_id=7), now=NOW)
    assert end is not None
    assert end.after.status is S.FAILED
    assert end.after.error == "boom"


@pytest.mark.parametrize("status", [S.RUNNING, S.SUSPENDED], ids=["running", "suspended"])
def test_cancel_with_compensation_rolls_back_from_the_current_step(status: S) -> None:
    run = make_run(state={"reserve": 1}, status=status, wake_at=NOW + timedelta(hours=1))
    if status is S.SUSPENDED:
        run = attrs.evolve(run, **WaitInfo(kind=WaitKind.SIGNAL, step="s", signal="go").columns())
    t = decide_cancel(run, compensate=True, now=NOW)
    assert t is not None
    assert t.after.status is S.COMPENSATING
    assert t.after.wait_kind is None
    assert t.after.wake_at is None
    assert t.drop_jobs
    assert [job.payload for job in t.jobs] == [CompensateJob(run_id=7, index=1)]
    done = decide_compensation(
        attrs.evolve(t.after, compensation_cursor=0), index=0, journal=(), now=NOW
    )
    assert done.after.status is S.CANCELED
    assert done.after.error is None
    assert CANCEL_KEY in t.after.state


def test_cancel_of_a_finishing_run_is_refused_and_plain_cancel_is_unchanged() -> None:
    run = make_run()
    pending = decide_step(run, last_step_done(run), attempt=1, now=NOW).after
    assert decide_cancel(pending, now=NOW) is None
    plain = decide_cancel(make_run(state={}))
    assert plain is not None
    assert plain.after.status is S.CANCELED
