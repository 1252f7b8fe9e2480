"""``decide_start``: the run a start inserts, and the keys it refuses before any write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from durable_sa.core.start import MAX_IDEMPOTENCY_KEY, checked_window, decide_start
from durable_sa.errors import PayloadError

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _start(key: object) -> object:
    return decide_start(
        workflow_name="orders",
        workflow_version="v1",
        total_steps=3,
        input={"sku": "A-1"},
        now=NOW,
        idempotency_key=key,  # type: ignore[arg-type]
    )


def test_a_start_is_a_run_at_step_zero_due_now() -> None:
    new = _start("order-42")
    assert new.workflow_name == "orders"  # type: ignore[attr-defined]
    assert new.due == NOW  # type: ignore[attr-defined]
    assert new.idempotency_key == "order-42"  # type: ignore[attr-defined]
    assert new.first_job(7).payload.step_index == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("key", ["", "k" * (MAX_IDEMPOTENCY_KEY + 1), 42, b"bytes"])
def test_a_key_that_cannot_be_stored_is_refused(key: object) -> None:
    with pytest.raises(PayloadError, match="idempotency_key"):
        _start(key)


def test_the_longest_key_fits() -> None:
    assert _start("k" * MAX_IDEMPOTENCY_KEY) is not None


@pytest.mark.parametrize(
    ("window", "shown"),
    [(30, "not 30"), (timedelta(0), "not 0:00:00"), (None, "not None")],
)
def test_a_debounce_window_that_is_not_a_positive_timedelta_is_named(window, shown) -> None:
    """The user passed debounce=: the message says what it got, not that it is missing."""
    with pytest.raises(PayloadError) as refused:
        checked_window("doc-9", window, None)
    message = str(refused.value)
    assert "debounce must be a positive timedelta" in message
    assert shown in message
