"""Hypothesis strategies for fault schedules (they shrink towards short, plain ones).

Shrinking removes events and simplifies the survivors: a crash becomes a plain delivery,
a long clock jump a short one, so a failure is reported with the fewest faults that
still break the property.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hypothesis import strategies as st

from durable_sa.testing.faults import (
    ClockJump,
    ConcurrentDuplicate,
    CrashAfterCommit,
    CrashAfterPhaseA,
    Deliver,
    DuplicateDelivery,
    Event,
    Signal,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from hypothesis.strategies import SearchStrategy

    from durable_sa.core.codec import JSONValue

CLOCK_JUMPS = (1, 5, 30, 60, 600, 3_600, 86_400, 7 * 86_400)
"""Seconds a clock jump may take: past a backoff, a sleep, a day-long deadline."""


def job_faults(*, concurrent: bool = True) -> SearchStrategy[Event]:
    """A fault for the next job; plain delivery first, so shrinking ends there."""
    options: list[SearchStrategy[Event]] = [
        st.just(Deliver()),
        st.just(CrashAfterPhaseA()),
        st.just(CrashAfterCommit()),
        st.just(DuplicateDelivery()),
    ]
    if concurrent:
        options.append(st.just(ConcurrentDuplicate()))
    return st.one_of(options)


def clock_jumps() -> SearchStrategy[Event]:
    """Time moving forward by a realistic step."""
    return st.sampled_from(CLOCK_JUMPS).map(lambda seconds: ClockJump(float(seconds)))


def signals_from(payloads: Mapping[str, SearchStrategy[JSONValue]]) -> SearchStrategy[Event]:
    """A signal sent now, for each name in ``payloads`` (name → strategy of data)."""
    return st.one_of(
        [st.builds(Signal, st.just(name), strategy) for name, strategy in sorted(payloads.items())]
    )


def schedules(
    signals: Mapping[str, SearchStrategy[JSONValue]] | None = None,
    *,
    max_events: int = 12,
    concurrent: bool = True,
) -> SearchStrategy[list[Event]]:
    """Lists of events: job faults, clock jumps and (if given) signals."""
    kinds = [job_faults(concurrent=concurrent), job_faults(concurrent=concurrent), clock_jumps()]
    if signals:
        kinds.append(signals_from(signals))
    return st.lists(st.one_of(kinds), max_size=max_events)
