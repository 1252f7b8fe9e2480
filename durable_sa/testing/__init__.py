"""Helpers for testing workflows: run queued jobs inline and inspect the queue.

``drain`` is a deterministic, single-threaded worker: it runs due jobs one at a time,
oldest first, in the calling thread, so a test controls exactly how far a run gets
(``max``) and what time it is for due-ness (``now``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from durable_sa.errors import InvalidArgumentError

if TYPE_CHECKING:
    from datetime import datetime

    from durable_sa.facade import Durable


def drain(engine: Durable, now: datetime | None = None, max: int | None = None) -> int:  # noqa: A002
    """Run due jobs inline, oldest first, one at a time; return how many ran.

    ``now`` (an aware datetime) fixes the clock that decides which jobs are due; the
    engine keeps scheduling from its own clock, so ``now=<an hour ahead>`` carries every
    retry, sleep and signal timeout due within that hour to its end. ``max`` stops after
    that many jobs (a simulated crash between two jobs).
    """
    if now is not None and (now.tzinfo is None or now.utcoffset() is None):
        msg = "drain(now=...) needs a timezone-aware datetime"
        raise InvalidArgumentError(msg)
    done = 0
    while max is None or done < max:
        job = engine.claim(now=now or engine.now, worker="drain", fifo=True)
        if job is None:
            break
        engine.run_job(job)
        done += 1
    return done


def pending_jobs(engine: Durable) -> int:
    """Jobs not finished yet (queued or claimed, due or not; not dead-lettered)."""
    return engine.backend.pending_count()


def clear_jobs(engine: Durable) -> None:
    """Delete every queued job, whatever its state (simulates a lost job)."""
    engine.backend.clear()


__all__ = ["clear_jobs", "drain", "pending_jobs"]
