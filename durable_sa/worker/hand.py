"""A pipeline's jobs in hand: the work they become, and the state every part shares.

A job a worker holds is *ready* (freshly claimed, or a run's next step handed on in
place: :class:`Ready`), a *redecision* or a give-back the slots must do
(:class:`Deferred`), running on a slot, or *pending*: its plan waits for the committer
(:class:`Pending`). :class:`Hand` declares the state the pipeline's parts share (what
is held, ready, pending, being committed) under its one lock, and the moves between
those states that every part makes. The parts are mixed into
:class:`~durable_sa.worker.pipeline.Pipeline`: claiming
(:mod:`~durable_sa.worker.claiming`), committing (:mod:`~durable_sa.worker.committer`)
and the slots' own work (:mod:`~durable_sa.worker.pipeline`).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

import attrs

from durable_sa.core.plan import WritePlan
from durable_sa.engine.decision import Decision, Done, Open, commit_alone
from durable_sa.engine.delivery import job_failed
from durable_sa.queue.protocol import Claim, ClaimedJob
from durable_sa.results import JobOutcome

if TYPE_CHECKING:
    import threading
    from collections.abc import Mapping, Sequence

    from durable_sa.engine.applier import Applier
    from durable_sa.engine.controls import GrantReserve
    from durable_sa.engine.shell import Shell
    from durable_sa.queue.capabilities import Capabilities
    from durable_sa.queue.protocol import BatchClaims, QueueBackend
    from durable_sa.store.held import HeldConnection
    from durable_sa.worker.stats import PipelineStats

logger = logging.getLogger("durable_sa.worker.pipeline")
"""The pipeline's logger, whichever of its modules writes: log filters keep working."""

MAX_GROUP: Final = 64
"""Most plans in one commit, and most jobs a worker holds in hand."""
_IN_HAND_PER_SLOT: Final = 8
"""Jobs in hand per slot: enough to fill a group while a commit is in flight."""
_MIN_IN_HAND: Final = 16
"""Even one slot holds this many: it runs them while the previous group commits."""


def default_prefetch(concurrency: int) -> int:
    """Jobs a worker holds by default: enough to group commits, at most :data:`MAX_GROUP`."""
    return min(MAX_GROUP, max(_MIN_IN_HAND, _IN_HAND_PER_SLOT * concurrency))


@attrs.frozen
class Ready:
    """A job in hand to run: freshly claimed, or the run's next step handed on in place."""

    claim: Claim
    in_place: bool = False

    @property
    def job(self) -> ClaimedJob:
        """The job in hand."""
        return self.claim.job


@attrs.frozen
class Deferred:
    """Work a slot must do for a job in hand that is not a step to run (a redecision)."""

    job: ClaimedJob
    action: Callable[[], JobOutcome]


Work = Ready | Deferred


@attrs.frozen
class Pending:
    """A job whose plan waits for the committer (lock-free, so it may be grouped)."""

    decision: Decision
    plan: WritePlan
    now: datetime

    @property
    def job(self) -> ClaimedJob:
        """The job the plan acknowledges."""
        job = self.decision.job
        if job is None:  # pragma: no cover - a claimed job always comes with its decision
            msg = "a pending plan lost its job"
            raise RuntimeError(msg)
        return job


def job_failed_action(
    shell: Shell, job: ClaimedJob, exc: BaseException
) -> Callable[[], JobOutcome]:
    """A slot's work: give ``job`` back after ``exc`` (the delivery policy)."""

    def action() -> JobOutcome:
        return job_failed(shell, job, exc)

    return action


def commit_alone_action(
    shell: Shell, decision: Decision, applier: Applier, *, reread: bool
) -> Callable[[], JobOutcome]:
    """A slot's work: commit ``decision`` alone (``reread``: decide on a fresh read)."""

    def action() -> JobOutcome:
        return commit_alone(shell, decision, applier=applier, reread=reread).outcome

    return action


class Hand:
    """The state a pipeline's parts share, guarded by ``_lock``; set by the pipeline.

    Every attribute is assigned by :class:`~durable_sa.worker.pipeline.Pipeline`'s
    constructor; they are declared here so that each part reads the same names.
    """

    # The worker's settings.
    shell: Shell
    backend: QueueBackend
    capabilities: Capabilities
    claims: BatchClaims
    applier: Applier
    worker: str
    lease: timedelta
    queues: Sequence[str] | None
    concurrency: int
    max_in_hand: int
    commit_timeout: timedelta | None
    release_waiting_after: float
    stats: PipelineStats
    _workflows: Callable[[], Mapping[str, str]]
    _wake: Callable[[], None]
    _on_outcome: Callable[[JobOutcome], None]
    _on_claimed: Callable[[int], None]
    _dialect: str
    _claim_connection: HeldConnection | None
    """PostgreSQL: the held connection claims run on (:mod:`~durable_sa.worker.connections`)."""
    _writes: HeldConnection | None
    """PostgreSQL: the held connection a group that is one statement runs on."""
    _grants: GrantReserve
    """The rate-limit grants the slots take, and the committer sweeps."""

    # The jobs in hand, under ``_lock``.
    _lock: threading.Lock
    _has_pending: threading.Condition
    """Wakes the committer: plans are pending, or the pipeline closes (on ``_lock``)."""
    _claim_lock: threading.Lock
    """Held by the one slot that claims (or waits for a broker's messages)."""
    _ready: collections.deque[Work]
    _held: dict[int, ClaimedJob]
    """Every job in hand (ready, running, pending), by id: the leases the heartbeat renews."""
    _pending: list[Pending]
    _opens: list[tuple[ClaimedJob, Open]]
    """Transactional steps applied in transactions that wait for their COMMIT."""
    _running: dict[int, float]
    """Slots running a job now (thread id → when it started, monotonic)."""
    _running_ids: dict[int, int]
    """Slots running a job now (thread id → the job's id)."""
    _committing: bool
    _committing_ids: set[int]
    """The jobs whose plans the commit in flight applies."""
    _commit_began: float | None
    """When the commit in flight began (monotonic), ``None`` when none is."""
    _admitted_at: float
    """When a group last had to admit a pending run (monotonic; the committer's own)."""
    _committer: threading.Thread | None
    _closing: bool
    _stalled: bool
    """A commit has been blocked past ``commit_timeout``: claim nothing, renew nothing."""
    _isolating: bool
    """A job whose lease ran out waits: claim nothing more until the hand is empty."""
    _alone: int | None
    """The job claimed alone and not finished: no batch is claimed beside it."""

    def _done(self, job: ClaimedJob, done: Done) -> None:
        """``job`` is finished; its run's next step, handed to this worker, is ready."""
        self._finish(job, done.outcome)
        if done.follow is not None:
            self._hand_on([Ready(done.follow, in_place=True)])

    def _finish(self, job: ClaimedJob, outcome: JobOutcome) -> None:
        """``job`` is finished with ``outcome``: no longer in hand, and counted."""
        self._release(job)
        self._on_outcome(outcome)

    def _release(self, job: ClaimedJob) -> None:
        """Stop holding ``job`` (its lease is no longer renewed)."""
        with self._lock:
            self._held.pop(job.id, None)

    def _hand_on(self, ready: list[Work]) -> None:
        """Put ``ready`` in hand, ready for the slots (a run's next step, a redecision)."""
        with self._lock:
            for work in ready:
                if isinstance(work, Ready):
                    self._held[work.job.id] = work.job
            self._ready.extend(ready)

    def _release_ready(self) -> None:
        """Give back every ready job in hand (not the redecisions: those are ours to do)."""
        with self._lock:
            ready = [work for work in self._ready if isinstance(work, Ready)]
            if not ready:
                return
            self._ready = collections.deque(w for w in self._ready if not isinstance(w, Ready))
            for work in ready:
                self._held.pop(work.job.id, None)
        ids = [work.job.id for work in ready]
        try:
            released = self.backend.release_claims(ids, worker=self.worker)
        except Exception:  # their leases run out instead
            logger.warning("could not give back %d waiting jobs", len(ids), exc_info=True)
            return
        logger.info(
            "gave back %d waiting jobs for other workers (every slot is busy)",
            released,
            extra={"action": "release_waiting", "worker": self.worker},
        )
