"""Holding a claimed job back: a paused workflow, a step over its shared rate limit.

Every backend's job passes here, in phase A (:mod:`durable_sa.engine.runner`), before any
user code runs, so the jobs table, Redis and Celery alike honour pause and rate limits.
A job held back is deferred through the one delivery policy
(:func:`~durable_sa.engine.delivery.defer`): released with no attempt used, due again
when it may run, never dead-lettered, holding no worker slot meanwhile.

- A job of a paused workflow (any kind: no step of it runs, nor a compensation, a
  timeout or its finish) is deferred by :data:`PAUSE_RECHECK`, or until ``unpause``.
  The jobs-table claim does not even take such jobs (:mod:`durable_sa.queue.claims`);
  this check catches the relay backends' deliveries and a pause that lands between a
  claim and its run.
- A step that names rate limits (``step(..., rate_limit=)``, a parallel step's
  entries) takes its grants before its handler runs; refused, it is deferred until the
  window lets it begin. Each execution counts: a retry or a redelivery takes a grant
  again. On PostgreSQL a grant is one call of a database function; a worker makes it on
  a connection it holds for grants (:class:`HeldGrants`, one round trip, no pool
  checkout), everyone else in a short transaction of its own, as on SQLite.

Only claimed jobs are held back; a direct call of a job's handler (``engine.admin``)
runs as asked.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from durable_sa.core.rates import rate_demand
from durable_sa.core.steps import ParallelStep
from durable_sa.core.units import entry_unit
from durable_sa.engine.delivery import DEFER_DELAY, defer
from durable_sa.store.controls import GrantRefused, grant_pg, paused_reason, take_grants
from durable_sa.store.held import HeldConnection

if TYPE_CHECKING:
    from collections.abc import Mapping

    from durable_sa.core.rates import Wait
    from durable_sa.core.snapshot import JournalRecord, RunSnapshot
    from durable_sa.core.steps import StepDefinition
    from durable_sa.engine.shell import Shell
    from durable_sa.queue.protocol import ClaimedJob
    from durable_sa.results import JobOutcome

logger = logging.getLogger("durable_sa.engine.runner")

PAUSE_RECHECK: Final = timedelta(seconds=30)
"""How long a job of a paused workflow waits before it is offered again (``unpause``
makes it due at once), so a long pause does not cycle a relay backend's jobs through
the broker every few seconds."""
UNSET_RECHECK: Final = DEFER_DELAY
"""How long a step naming a rate limit that is not set waits before it looks again."""


def held_by_pause(shell: Shell, claimed: ClaimedJob, run: RunSnapshot | None) -> JobOutcome | None:
    """Defer ``claimed`` if its run's workflow is paused: the outcome; else ``None``."""
    if run is None or not shell.paused.is_paused(run.workflow_name):
        return None
    reason = paused_reason(run.workflow_name)
    return defer(shell, claimed, reason, delay=PAUSE_RECHECK, level=logging.DEBUG, run=run)


class HeldGrants:
    """A worker's PostgreSQL connection for rate-limit grants, in autocommit mode.

    A grant is one call of the database function, atomic by itself: on a held
    connection it costs one round trip, where a transaction of its own would check a
    connection out of the pool, and ``BEGIN`` and ``COMMIT`` it. The worker's slots
    share it, one grant at a time (a grant is short; rate-limited steps are throttled
    anyway). A connection that fails is thrown away; the next grant opens another.
    """

    def __init__(self, shell: Shell) -> None:
        """Hold a connection of ``shell``'s engine once the first grant is taken."""
        self._held = HeldConnection(shell.sa_engine)
        self._lock = threading.Lock()

    def take(self, demand: Mapping[str, int]) -> Wait | None:
        """Grant ``demand``, all or none: ``None``, or how long the step must wait."""
        with self._lock:
            try:
                return grant_pg(self._held.get(), demand, unset_recheck=UNSET_RECHECK)
            except Exception:
                self._held.broken()
                raise

    def close(self) -> None:
        """Give the connection back to the pool."""
        with self._lock:
            self._held.close()


def held_grants(shell: Shell) -> HeldGrants | None:
    """A worker's :class:`HeldGrants` on PostgreSQL; ``None`` elsewhere (SQLite)."""
    return HeldGrants(shell) if shell.dialect == "postgresql" else None


def held_by_rate_limit(  # noqa: PLR0913 - the job, its run and step, how to take grants
    shell: Shell,
    claimed: ClaimedJob,
    run: RunSnapshot,
    step: StepDefinition,
    journal: Mapping[str, JournalRecord],
    *,
    grants: HeldGrants | None = None,
) -> JobOutcome | None:
    """Take the step's rate-limit grants; if refused, defer ``claimed``: the outcome.

    The parallel entries ``journal`` holds as completed do not run again: they need no
    grant. ``grants``: a worker's held connection to take them on. ``run`` names the
    deferral's log record.
    """
    done: frozenset[str] = frozenset()
    if isinstance(step, ParallelStep):
        done = frozenset(
            entry.name
            for entry in step.entries
            if (record := journal.get(entry_unit(step.name, entry.name))) and record.completed
        )
    demand = rate_demand(step, done)
    if not demand:
        return None
    if grants is not None:
        wait = grants.take(demand)
    else:
        try:
            shell.transaction(
                lambda session: take_grants(
                    session, demand, clock=shell.now, unset_recheck=UNSET_RECHECK
                )
            )
        except GrantRefused as refused:
            wait = refused.wait
        else:
            wait = None
    if wait is None:
        return None
    level = logging.WARNING if wait.misconfigured else logging.DEBUG
    delay = max(wait.delay, timedelta(0))
    return defer(shell, claimed, wait.reason, delay=delay, level=level, run=run)
