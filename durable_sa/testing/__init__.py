"""Testing your workflows: inline draining, a fake clock, fault schedules, a checker.

- :func:`memory_engine` is a private database in memory that the engine runs on
  unchanged: unit tests need no file and no server.
- ``drain`` is a deterministic, single-threaded worker: it runs due jobs one at a time,
  oldest first, in the calling thread, so a test controls exactly how far a run gets
  (``max``) and what time it is for due-ness (``now``).
- :class:`FakeClock` and :class:`Driver` play fault schedules (crashes, duplicate and
  concurrent deliveries, clock jumps, signals) against real runs.
- :func:`check_workflow` property-tests a workflow under generated schedules with
  hypothesis and reports a shrunk, readable failure; :func:`replay` plays one again.
  ``check_workflow(..., exhaustive=True)`` (or :func:`check_every_fault`) plays every
  fault at every job of the fault-free run instead, compensation jobs included.
- For tests on real servers and processes (a queue backend's suite, crash tests):
  :class:`PostgresServer` and :class:`RedisServer` (:mod:`.servers`), child processes
  that are killed and restarted (:mod:`.processes`), a crash-test workload
  (:mod:`.workload`), and the pytest plugin's fixtures (:mod:`.pytest_plugin`).

The hypothesis-based parts and the servers, processes and workload load on first use, so
``drain`` needs no test dependencies and importing this package starts nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final

from durable_sa.errors import InvalidArgumentError
from durable_sa.testing import faults
from durable_sa.testing.clock import FakeClock
from durable_sa.testing.driver import Driver, SimulatedCrash

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
        job = engine.admin.claim(now=now or engine.now, worker="drain", fifo=True)
        if job is None:
            break
        engine.admin.run_job(job)
        done += 1
    return done


def pending_jobs(engine: Durable) -> int:
    """Jobs not finished yet (queued or claimed, due or not; not dead-lettered)."""
    return engine.backend.pending_count()


def clear_jobs(engine: Durable) -> None:
    """Delete every queued job, whatever its state (simulates a lost job)."""
    engine.backend.clear()


_SUBMODULES: Final = frozenset({"processes", "servers", "workload"})
"""Modules loaded on first use, as attributes (``durable_sa.testing.servers``)."""

_LAZY: Final = {
    "check_workflow": "checker",  # needs hypothesis, as the four below
    "replay": "checker",
    "check_every_fault": "exhaustive",
    "schedules": "strategies",
    "Example": "properties",
    "Invariant": "properties",
    "memory_engine": "memory",
    "PostgresServer": "servers",  # only when servers are asked for
    "RedisServer": "servers",
}
"""Names loaded on first use, and the module of this package that defines each."""


def __getattr__(name: str) -> object:
    """Load the hypothesis-based helpers (and the servers) only when they are asked for."""
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


__all__ = [
    "Driver",
    "Example",
    "FakeClock",
    "Invariant",
    "PostgresServer",
    "RedisServer",
    "SimulatedCrash",
    "check_every_fault",
    "check_workflow",
    "clear_jobs",
    "drain",
    "faults",
    "memory_engine",
    "pending_jobs",
    "processes",
    "replay",
    "schedules",
    "servers",
    "workload",
]
