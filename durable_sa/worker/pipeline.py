"""A worker's jobs in hand: claimed in batches, run by slots, committed in groups.

A :class:`Pipeline` holds the jobs a worker has claimed and not finished: those ready to
run, those whose user code is running on a slot, and those whose plan is being
committed. Slots take ready work and run its phase A (:func:`durable_sa.engine.runner.
prepare`); a finished job's plan goes to the committer thread without the slot waiting
for it, so the slot runs the next ready job (of another run) while the commit is in
flight. The committer applies every plan that finished meanwhile in one transaction,
through the same applier every other consumer uses, then hands each run's next step back
as ready work (continue in place).

Per-run guarantees are those of a job committed alone: a run's next step starts only
after the commit of its previous step, each plan commits atomically, and every job in
hand is leased (renewed by the worker's heartbeat). Only plans of *different* runs are
grouped, and only plans the core marks lock-free; an idle pipeline commits at once, so
grouping never adds latency when there is nothing to group with. A plan that needs a lock
(a parent to settle) commits alone, on its slot; one that ends a limited run joins the
group, which gives back all its places at once (:mod:`durable_sa.engine.limits`). A
transactional step runs its handler and writes its checkpoint in a transaction of its
own on its slot, and the committer does the COMMIT (at most :data:`MAX_OPEN` wait for
it at once).

A job whose lease ran out (its worker died) is taken over only alone, once the hand is
empty (:mod:`~durable_sa.worker.claiming` says why).

The pipeline is one object with one lock, made of parts that each have a module:
:mod:`~durable_sa.worker.hand` (the jobs in hand and the state the parts share),
:mod:`~durable_sa.worker.claiming` (taking work), :mod:`~durable_sa.worker.committer`
(the committer thread) and :mod:`~durable_sa.worker.connections` (its held PostgreSQL
connections). Its slots take rate-limit grants from one
:class:`~durable_sa.engine.controls.GrantReserve`, which asks in batches and gives back
what it did not use when the pipeline closes. This module holds the pipeline itself:
its settings, its lifecycle and what a slot does with the work it takes.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import TYPE_CHECKING, Final, cast

from durable_sa.engine.applier import Applier
from durable_sa.engine.controls import GrantReserve
from durable_sa.engine.decision import Done, Open
from durable_sa.engine.delivery import job_failed
from durable_sa.engine.runner import prepare
from durable_sa.queue.single_claims import SingleClaims
from durable_sa.results import JobOutcome
from durable_sa.worker.claiming import Claiming
from durable_sa.worker.committer import Committer
from durable_sa.worker.connections import claim_connection, write_connection
from durable_sa.worker.hand import Deferred, Pending, Work, commit_alone_action, default_prefetch
from durable_sa.worker.stats import PipelineStats

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from datetime import timedelta

    from durable_sa.engine.shell import Shell
    from durable_sa.queue.protocol import BatchClaims, ClaimedJob, QueueBackend

logger = logging.getLogger(__name__)

RELEASE_WAITING_AFTER: Final = 0.5
"""Seconds ready work may wait while every slot is busy before it goes back to the queue."""
MAX_OPEN: Final = 4
"""Transactional steps whose COMMIT may wait for the committer at once (each holds a
connection of the application's pool until then); past it, the slot commits itself."""


class Pipeline(Claiming, Committer):
    """Claims, runs and commits a worker's jobs, from the jobs table or a broker."""

    def __init__(  # noqa: PLR0913 - the worker's settings, keyword-only
        self,
        shell: Shell,
        backend: QueueBackend,
        *,
        worker: str,
        lease: timedelta,
        queues: Sequence[str] | None,
        workflows: Callable[[], Mapping[str, str]],
        concurrency: int,
        wake: Callable[[], None],
        on_outcome: Callable[[JobOutcome], None],
        on_claimed: Callable[[int], None] = lambda _count: None,
        prefetch: int | None = None,
        commit_timeout: timedelta | None = None,
        release_waiting_after: float = RELEASE_WAITING_AFTER,
    ) -> None:
        """Prepare the pipeline; :meth:`start` starts its committer.

        ``prefetch`` bounds the jobs held (default :func:`default_prefetch`).
        ``commit_timeout`` bounds how long a commit may block (a row lock an
        application holds, a half-open connection): past it, the statement fails on
        PostgreSQL, and the pipeline gives up the leases of everything it holds so that
        other workers take it over. Ready work that has waited ``release_waiting_after``
        seconds while every slot is busy goes back to the queue for other workers.
        """
        self.shell = shell
        self.backend = backend
        self.capabilities = backend.capabilities
        batch = self.capabilities.batch_claims
        self.claims = cast("BatchClaims", backend) if batch else SingleClaims(backend)
        self.worker = worker
        self.lease = lease
        self.queues = queues
        self.applier = Applier(backend, worker=worker)
        self._workflows = workflows
        self._wake = wake
        self._on_outcome = on_outcome
        self._on_claimed = on_claimed
        self.concurrency = concurrency
        self.max_in_hand = prefetch if prefetch is not None else default_prefetch(concurrency)
        self.commit_timeout = commit_timeout
        self.release_waiting_after = release_waiting_after
        self._running = {}
        self._running_ids = {}
        self._committing_ids = set()
        self._commit_began = None
        self._admitted_at = float("-inf")
        self._stalled = False
        self._isolating = False
        self._alone = None
        self.stats = PipelineStats()
        self._claim_lock = threading.Lock()
        self._lock = threading.Lock()
        self._ready = collections.deque()
        self._held = {}
        self._pending = []
        self._opens = []
        self._has_pending = threading.Condition(self._lock)
        self._committing = False
        self._closing = False
        self._committer = None
        self._dialect = shell.dialect
        self._claim_connection = claim_connection(shell)
        self._writes = write_connection(shell, commit_timeout)
        self._grants = GrantReserve(shell)

    # ── lifecycle ──────────────────────────────────────────────────────────────

    def start(self) -> None:
        """Start the committer thread."""
        self._committer = threading.Thread(
            target=self._commit_loop, name=f"durable-sa-commit-{self.worker}", daemon=True
        )
        self._committer.start()

    def close(self) -> None:
        """Commit what finished, do the redecisions left, give back unstarted jobs."""
        with self._lock:
            self._closing = True
            self._has_pending.notify_all()
        if self._committer is not None:
            self._committer.join(timeout=30)
        unstarted: list[int] = []
        with self._lock:
            left, self._opens = self._opens, []
        for job, opened in left:  # the committer is gone: roll back, give the job back
            opened.abandon()
            unstarted.append(job.id)
            self._release(job)
        while True:
            with self._lock:
                if not self._ready:
                    break
                work = self._ready.popleft()
            if isinstance(work, Deferred):
                self.process(work)
            else:
                unstarted.append(work.job.id)
                self._release(work.job)
        if unstarted:
            try:
                self.backend.release_claims(unstarted, worker=self.worker)
            except Exception:  # their leases run out instead
                logger.warning("could not give back %d jobs", len(unstarted), exc_info=True)
        for held in (self._claim_connection, self._writes, self._grants):
            if held is not None:
                held.close()

    def held_ids(self) -> list[int]:
        """Ids of the jobs in hand whose leases the heartbeat renews.

        While a commit has been blocked past ``commit_timeout``, none: the worker gives
        up everything it holds (its ready work is released now, the rest lapses with
        its lease), so other workers take the runs over. The commit's plans are
        compare-and-set: if it ever completes, it cannot undo what others did since.
        """
        if self._commit_blocked():
            self._give_up()
            with self._lock:
                running = set(self._running_ids.values()) - self._committing_ids
                return [job_id for job_id in self._held if job_id in running]
        with self._lock:
            return list(self._held)

    @property
    def stalled(self) -> bool:
        """True while a commit is blocked past ``commit_timeout``."""
        return self._stalled

    def _commit_blocked(self) -> bool:
        began = self._commit_began
        return (
            self.commit_timeout is not None
            and began is not None
            and time.monotonic() - began > self.commit_timeout.total_seconds()
        )

    def _give_up(self) -> None:
        """A commit is blocked: stop claiming, give back ready work, let leases lapse."""
        if not self._stalled:
            self._stalled = True
            logger.error(
                "a commit has been blocked for more than %s: giving up the %d jobs this "
                "worker holds so that other workers take them over",
                self.commit_timeout,
                len(self._held),
                extra={"action": "commit_blocked", "worker": self.worker},
            )
        self._release_ready()

    @property
    def busy(self) -> bool:
        """True while commits are pending or in flight (their results wake the slots).

        Also while another slot waits for a broker's messages: what it reads wakes them.
        """
        if self.capabilities.claims_wait and self._claim_lock.locked():
            return True
        with self._lock:
            return bool(self._pending or self._opens) or self._committing

    # ── taking work ────────────────────────────────────────────────────────────

    def abandon(self, job_id: int) -> None:
        """Stop counting a job that ran past its timeout as in hand (its lease runs out)."""
        with self._lock:
            self._held.pop(job_id, None)

    # ── running work on a slot ─────────────────────────────────────────────────

    def process(self, work: Work) -> None:
        """Run ``work`` on the calling slot; a lock-free plan is committed later."""
        slot = threading.get_ident()
        with self._lock:
            self._running[slot] = time.monotonic()
            self._running_ids[slot] = work.job.id
        try:
            self._process(work)
        except BaseException:
            # Even giving the job back failed (the database is gone, or a lock outlasted
            # the write timeout): stop holding it, so its lease runs out and another
            # worker takes it over, instead of renewing it here forever.
            self._release(work.job)
            raise
        finally:
            with self._lock:
                self._running.pop(slot, None)
                self._running_ids.pop(slot, None)

    def _process(self, work: Work) -> None:
        if isinstance(work, Deferred):
            self._finish(work.job, self._guarded(work.job, work.action))
            return
        job = work.job
        lease = None if self._closing else self.lease
        prepared = prepare(
            self.shell,
            job,
            work.claim.run,
            in_place=work.in_place,
            applier=self.applier,
            lease=lease,
            keep_open=self._dialect == "postgresql",
            grants=self._grants,
        )
        if isinstance(prepared, Open):
            self._hand_over(job, prepared)
            return
        if isinstance(prepared, Done):
            self._done(job, prepared)
            return
        now = self.shell.now()
        try:
            plan = prepared.plan(prepared.run, now=now, lease=lease)
        except Exception as exc:  # noqa: BLE001 - a decision that fails gives the job back
            self._finish(job, job_failed(self.shell, job, exc))
            return
        if plan is None:  # pragma: no cover - a claimed job always has a plan
            self._finish(job, JobOutcome.STALE)
            return
        if not plan.lock_free:
            action = commit_alone_action(self.shell, prepared, self.applier, reread=False)
            self._finish(job, self._guarded(job, action))
            return
        pending = Pending(decision=prepared, plan=plan, now=now)
        with self._lock:
            # Nothing else to do and nothing to group with: commit here, now (no handoff).
            inline = not (self._committing or self._pending or self._opens or self._ready)
            if inline:
                self._committing = True
            else:
                self._pending.append(pending)
                self._has_pending.notify()
        if inline:
            try:
                self._commit_safely([pending])
            finally:
                with self._lock:
                    self._committing = False
                    self._has_pending.notify()

    def _hand_over(self, job: ClaimedJob, opened: Open) -> None:
        """Give a transactional step's COMMIT to the committer; the slot goes on at once."""
        with self._lock:
            queued = (
                self._committer is not None and not self._closing and len(self._opens) < MAX_OPEN
            )
            if queued:
                self._opens.append((job, opened))
                self._has_pending.notify()
        if not queued:
            self._commit_open(job, opened)

    def _guarded(self, job: ClaimedJob, action: Callable[[], JobOutcome]) -> JobOutcome:
        try:
            return action()
        except Exception as exc:  # noqa: BLE001 - the job is given back
            return job_failed(self.shell, job, exc)
