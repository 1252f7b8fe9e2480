"""overdue_hint: what to do about a schedule no worker fires."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from durable_sa.core.schedules import LATE_GRACE, overdue_hint

TICK = datetime(2030, 1, 1, 3, 0, tzinfo=UTC)


def _hint(*, late: timedelta, callable_input: bool = False, paused: bool = False) -> str | None:
    return overdue_hint(
        name="nightly",
        workflow_name="report",
        input_callable=callable_input,
        paused=paused,
        next_fire_at=TICK,
        now=TICK + late,
    )


def test_a_schedule_fired_on_time_or_barely_late_needs_nothing() -> None:
    assert _hint(late=-timedelta(hours=1)) is None
    assert _hint(late=LATE_GRACE) is None  # a busy worker's lateness
    assert _hint(late=timedelta(hours=1), paused=True) is None
    never = overdue_hint(
        name="n", workflow_name="w", input_callable=True, paused=False, next_fire_at=None, now=TICK
    )
    assert never is None


def test_a_late_callable_schedule_says_which_call_a_worker_must_make() -> None:
    hint = _hint(late=LATE_GRACE + timedelta(seconds=1), callable_input=True)
    assert hint is not None
    assert hint.startswith("not fired since 2030-01-01T03:00:00+00:00: ")
    assert "engine.schedule('nightly', ...)" in hint
    assert "the module your workers import" in hint


def test_a_late_stored_input_schedule_asks_for_a_worker_of_its_workflow() -> None:
    hint = _hint(late=timedelta(hours=2))
    assert hint is not None
    assert "no worker that defines workflow 'report' fires schedules" in hint
    assert "durable-sa worker" in hint
