"""Retry delays between the attempts of a failing step.

As in the reference: exponential is ``2**attempt`` seconds plus up to 1 s of jitter,
linear is ``attempt * 5`` seconds. Jitter is an argument, so the function stays pure.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final, Literal, TypeAlias

Backoff: TypeAlias = Literal["exponential", "linear"]

BACKOFF_STRATEGIES: Final[frozenset[str]] = frozenset({"exponential", "linear"})

_LINEAR_STEP_SECONDS: Final = 5
_MAX_DELAY: Final = timedelta(hours=1)


def backoff_delay(attempt: int, strategy: Backoff, jitter: float = 0.0) -> timedelta:
    """Delay before attempt ``attempt + 1`` after attempt ``attempt`` failed.

    ``jitter`` is a number in [0, 1) drawn by the caller; it spreads exponential retries
    so many runs failing together do not retry together. Capped at one hour.
    """
    if strategy == "linear":
        delay = timedelta(seconds=attempt * _LINEAR_STEP_SECONDS)
    else:
        delay = timedelta(seconds=2 ** min(attempt, 16) + jitter)
    return min(delay, _MAX_DELAY)
