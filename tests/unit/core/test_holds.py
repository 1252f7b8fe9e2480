"""Reading a deferred job's stored refusal back into why its run waits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from durable_sa.core.holds import PAUSED, paused_hold, rate_limit_hold
from durable_sa.core.rates import RateLimit, decide_grant

NOW = datetime(2030, 1, 1, tzinfo=UTC)
DUE = NOW + timedelta(seconds=5)
RECHECK = timedelta(seconds=10)


def _refusal(name: str, limit: RateLimit | None, *, wanted: int = 1, in_window: int = 0) -> str:
    wait = decide_grant(
        name,
        limit,
        wanted=wanted,
        in_window=in_window,
        oldest=[NOW - timedelta(seconds=1)] * in_window,
        now=NOW,
        unset_recheck=RECHECK,
    )
    assert wait is not None
    return wait.reason


@pytest.mark.parametrize("name", ["api", "it's", "a-b.c"])
def test_every_refusal_of_decide_grant_is_read_back(name: str) -> None:
    reached = _refusal(name, RateLimit(name, 2, timedelta(seconds=3)), in_window=2)
    assert rate_limit_hold(reached, DUE) == (
        f"rate limit {name!r} (next at 2030-01-01T00:00:05+00:00)"
    )
    unset = _refusal(name, None)
    assert rate_limit_hold(unset, DUE) == f"{unset} (next look at 2030-01-01T00:00:05+00:00)"
    too_small = _refusal(name, RateLimit(name, 1, timedelta(seconds=3)), wanted=2)
    held = rate_limit_hold(too_small, DUE)
    assert held is not None
    assert held.startswith(too_small)
    assert "raise the limit" in held


@pytest.mark.parametrize(
    "error",
    [
        None,
        "RuntimeError: rate limit 'theirs' (3 per 0:00:01) reached",  # a handler's own error
        "workflow 'w' is paused (engine.unpause or durable-sa unpause)",
        "no definition of workflow 'w' version v2 in this process",
    ],
)
def test_other_stored_errors_are_not_holds(error: str | None) -> None:
    assert rate_limit_hold(error, DUE) is None


def test_a_paused_runs_reason_keeps_what_a_pending_run_waits_for() -> None:
    assert paused_hold(None) == PAUSED == "workflow paused"
    assert paused_hold("limit of key 'k' (1/1 active)") == (
        "workflow paused; then limit of key 'k' (1/1 active)"
    )
