from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from durable_sa.core.backoff import BACKOFF_STRATEGIES, backoff_delay

HOUR = timedelta(hours=1)


def test_strategies() -> None:
    assert frozenset({"exponential", "linear"}) == BACKOFF_STRATEGIES


@pytest.mark.parametrize("attempt", range(1, 12))
def test_exponential_is_two_to_the_attempt_seconds(attempt: int) -> None:
    assert backoff_delay(attempt, "exponential") == timedelta(seconds=2**attempt)
    assert backoff_delay(attempt, "exponential", 0.0) == timedelta(seconds=2**attempt)


@pytest.mark.parametrize("jitter", [0.0, 0.25, 0.5, 0.999])
def test_exponential_adds_the_jitter(jitter: float) -> None:
    assert backoff_delay(1, "exponential", jitter) == timedelta(seconds=2 + jitter)
    assert backoff_delay(3, "exponential", jitter) == timedelta(seconds=8 + jitter)


def test_exponential_examples() -> None:
    assert backoff_delay(1, "exponential") == timedelta(seconds=2)
    assert backoff_delay(2, "exponential") == timedelta(seconds=4)
    assert backoff_delay(11, "exponential") == timedelta(seconds=2048)


@pytest.mark.parametrize("attempt", range(1, 20))
def test_linear_is_attempt_times_five_seconds(attempt: int) -> None:
    assert backoff_delay(attempt, "linear") == timedelta(seconds=5 * attempt)


def test_linear_ignores_jitter() -> None:
    assert backoff_delay(2, "linear", 0.7) == timedelta(seconds=10)


@pytest.mark.parametrize("attempt", [12, 13, 16, 17, 64, 1000, 10**6])
def test_exponential_is_capped_at_one_hour(attempt: int) -> None:
    assert backoff_delay(attempt, "exponential") == HOUR
    assert backoff_delay(attempt, "exponential", 0.9) == HOUR


def test_linear_is_capped_at_one_hour() -> None:
    assert backoff_delay(719, "linear") == timedelta(seconds=3595)
    assert backoff_delay(720, "linear") == HOUR
    assert backoff_delay(721, "linear") == HOUR
    assert backoff_delay(10**6, "linear") == HOUR


@settings(max_examples=100, deadline=None)
@given(
    attempt=st.integers(1, 10_000),
    strategy=st.sampled_from(["exponential", "linear"]),
    jitter=st.floats(0, 1, exclude_max=True),
)
def test_delay_is_positive_bounded_and_monotone(attempt: int, strategy: str, jitter: float) -> None:
    delay = backoff_delay(attempt, strategy, jitter)  # type: ignore[arg-type]
    assert timedelta(0) < delay <= HOUR
    assert backoff_delay(attempt + 1, strategy, jitter) >= delay  # type: ignore[arg-type]
