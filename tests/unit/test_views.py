"""What a run waits for, in words: the one wording the CLI and the dashboard both show."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from durable_sa import RunStatus
from durable_sa.views import held_by, waits_for
from tests.support.snapshots import snapshot

AT = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


_snap = snapshot


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, []),
        ({"stranded": "dead letter 3: crashed"}, ["stranded, dead letter 3: crashed"]),
        (
            {"status": RunStatus.PENDING, "waiting_reason": "limit of workflow 'order' (1/1)"},
            ["pending: limit of workflow 'order' (1/1)"],
        ),
        ({"waiting_reason": "workflow paused"}, ["waiting: workflow paused"]),
        ({"waiting_for_version": "v1"}, ["waiting for a worker with version v1"]),
        (
            {"status": RunStatus.SUSPENDED, "awaiting_signal": "go", "wait_kind": "signal"},
            ["awaiting signal 'go'"],
        ),
        (
            {"status": RunStatus.SUSPENDED, "awaiting_signal": "go", "wake_at": AT},
            ["awaiting signal 'go', timing out at 2030-01-02T03:04:05+00:00"],
        ),
        (
            {
                "status": RunStatus.SUSPENDED,
                "awaiting_signal": "review",
                "wait_kind": "agent",
                "wait_step": "review",
            },
            ["agent step 'review' awaiting resume 'review'"],
        ),
        (
            {"status": RunStatus.SUSPENDED, "wait_kind": "child", "wait_step": "kid"},
            ["awaiting its child run (step 'kid')"],
        ),
        ({"wake_at": AT}, ["a timer: due at 2030-01-02T03:04:05+00:00"]),
        (
            {"waiting_reason": "workflow paused", "stranded": "dead letter 3: lost", "wake_at": AT},
            [
                "stranded, dead letter 3: lost",
                "waiting: workflow paused",
                "a timer: due at 2030-01-02T03:04:05+00:00",
            ],
        ),
        ({"status": RunStatus.COMPLETED, "waiting_reason": "workflow paused"}, []),
    ],
)
def test_waits_for_says_what_keeps_a_run_most_pressing_first(
    changes: dict[str, Any], expected: list[str]
) -> None:
    assert waits_for(_snap(**changes)) == expected


def test_only_holds_are_what_an_operator_may_act_on() -> None:
    paused = _snap(
        status=RunStatus.SUSPENDED, awaiting_signal="go", waiting_reason="workflow paused"
    )
    assert held_by(paused) == ["waiting: workflow paused"]
    assert waits_for(paused) == ["waiting: workflow paused", "awaiting signal 'go'"]


def test_a_bare_timer_can_be_left_out() -> None:
    retrying = _snap(wake_at=AT, error="attempt 1 of 3 failed: boom")
    assert waits_for(retrying, timers=False) == []
    timed = _snap(status=RunStatus.SUSPENDED, awaiting_signal="go", wake_at=AT)
    assert waits_for(timed, timers=False) == waits_for(timed)  # a signal's timeout stays
