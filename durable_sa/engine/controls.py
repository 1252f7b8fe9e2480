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
  again. A worker takes grants through its :class:`GrantReserve`, in batches it keeps
  for its next steps (:mod:`durable_sa.core.grant_batches`); on PostgreSQL an ask is
  one call of a database function on a connection the worker holds. Everyone else
  asks for one grant in a short transaction of its own.

Only claimed jobs are held back; a direct call of a job's handler (``engine.admin``)
runs as asked.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from durable_sa.core.grant_batches import (
    Batch,
    Granted,
    demand_key,
    emptied,
    granted,
    leftover,
    refused,
    use,
)
from durable_sa.core.rates import Wait, rate_demand
from durable_sa.core.steps import ParallelStep
from durable_sa.core.units import entry_unit
from durable_sa.engine.delivery import DEFER_DELAY, defer
from durable_sa.store.controls import (
    GrantRefused,
    give_back,
    grant_pg,
    paused_reason,
    take_grants,
)
from durable_sa.store.held import HeldConnection

if TYPE_CHECKING:
    from collections.abc import Mapping

    from durable_sa.core.grant_batches import Demand
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


class GrantReserve:
    """A worker's rate-limit grants: asked for in batches, kept for its next steps.

    The pure rules are :mod:`durable_sa.core.grant_batches` (why a grant kept in hand
    keeps the limit exact, how big a batch is); this applies them. On PostgreSQL an ask
    is one call of the database function on a connection held in autocommit mode (one
    round trip, no pool checkout), when ``hold`` is set (a worker); elsewhere, and on
    SQLite, an ask is a short transaction of its own. The worker's slots share it, one
    ask at a time (an ask is short; rate-limited steps are throttled anyway). A
    connection that fails is thrown away; the next ask opens another.
    """

    def __init__(self, shell: Shell, *, hold: bool = True) -> None:
        """Grants for ``shell``'s engine; ``hold``: keep a PostgreSQL connection for them."""
        self._shell = shell
        held = hold and shell.dialect == "postgresql"
        self._held = HeldConnection(shell.sa_engine) if held else None
        self._lock = threading.Lock()
        self._batches: dict[Demand, Batch] = {}

    def _clock(self) -> float:
        """Seconds on the clock grants are dated by: kept grants expire on it.

        PostgreSQL dates grants by its own clock: a monotonic clock runs with it (never
        the engine's, which an application may replace or freeze). SQLite's grants are
        dated by the engine's clock, so kept grants expire on that one.
        """
        if self._shell.dialect == "postgresql":
            return time.monotonic()
        return self._shell.now().timestamp()

    def take(self, demand: Mapping[str, int]) -> Wait | None:
        """Let one step of ``demand`` begin: ``None``, or how long it must wait."""
        key = demand_key(demand)
        with self._lock:
            self._sweep(self._clock())
            now = self._clock()  # after the sweep's round trips, before the ask
            batch = self._batches.get(key, Batch())
            kept = use(batch, now)
            if kept is not None:
                self._batches[key] = kept
                return None
            answer = self._ask(key, batch.next_ask)
            if isinstance(answer, Wait) and batch.next_ask > 1:
                answer = self._ask(key, 1)  # the batch may be what did not fit
            if isinstance(answer, Wait):
                self._batches[key] = refused(batch)
                return answer
            self._batches[key] = granted(batch, answer, key, asked_at=now)
            return None

    def sweep(self) -> None:
        """Give back the kept grants time overtook (a worker calls it a few times a second).

        Never waits: while a slot asks (and sweeps itself), the caller goes on.
        """
        if not self._lock.acquire(blocking=False):
            return
        try:
            self._sweep(self._clock())
        finally:
            self._lock.release()

    def _sweep(self, now: float) -> None:
        for key, batch in list(self._batches.items()):
            if leftover(batch, now):
                # emptied first: a give-back that fails is never repeated (it could delete
                # the grants of steps that began, recorded at the same instant)
                self._batches[key] = emptied(batch)
                self._give_back(batch, key)

    def _ask(self, key: Demand, count: int) -> Granted | Wait:
        """Ask for ``count`` times the demand ``key``, all or none."""
        scaled = {name: wanted * count for name, wanted in key}
        if self._held is not None:
            try:
                answer = grant_pg(
                    self._held.get(), scaled, unset_recheck=UNSET_RECHECK, ahead=count > 1
                )
            except Exception:
                self._held.broken()
                raise
        else:
            try:
                answer = self._shell.transaction(
                    lambda session: take_grants(
                        session,
                        scaled,
                        clock=self._shell.now,
                        unset_recheck=UNSET_RECHECK,
                        ahead=count > 1,
                    )
                )
            except GrantRefused as refusal:
                answer = refusal.wait
        return answer if isinstance(answer, Wait) else Granted(count, answer)

    def _give_back(self, batch: Batch, key: Demand) -> None:
        """Delete the grants of ``batch`` left unused (best effort: they age out anyway)."""
        try:
            if self._held is not None:
                give_back(self._held.get(), batch.limits, batch.left, key)
            else:
                self._shell.transaction(
                    lambda session: give_back(session, batch.limits, batch.left, key)
                )
        except Exception:  # kept, they only count against the limit until they leave it
            if self._held is not None:
                self._held.broken()
            logger.debug("giving back %d unused grants failed", batch.left, exc_info=True)

    def close(self) -> None:
        """Give back the grants in hand, and the connection to the pool."""
        with self._lock:
            batches, self._batches = self._batches, {}
            for key, batch in batches.items():
                if batch.left > 0:
                    self._give_back(batch, key)
            if self._held is not None:
                self._held.close()


def held_by_rate_limit(  # noqa: PLR0913 - the job, its run and step, how to take grants
    shell: Shell,
    claimed: ClaimedJob,
    run: RunSnapshot,
    step: StepDefinition,
    journal: Mapping[str, JournalRecord],
    *,
    grants: GrantReserve | None = None,
) -> JobOutcome | None:
    """Take the step's rate-limit grants; if refused, defer ``claimed``: the outcome.

    The parallel entries ``journal`` holds as completed do not run again: they need no
    grant. ``grants``: a worker's reserve to take them from (else a single grant, in a
    transaction of its own). ``run`` names the deferral's log record.
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
    reserve = grants if grants is not None else GrantReserve(shell, hold=False)
    wait = reserve.take(demand)
    if wait is None:
        return None
    level = logging.WARNING if wait.misconfigured else logging.DEBUG
    delay = max(wait.delay, timedelta(0))
    return defer(shell, claimed, wait.reason, delay=delay, level=level, run=run)
