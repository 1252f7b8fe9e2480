"""The fast lane a worker drives: runs in hand, steps run by slots, commits grouped.

A :class:`FastLane` holds the jobs a worker has claimed and not finished ("in hand"):
those ready to run, those whose step is running on a slot, and those whose checkpoint is
being committed. Slots take ready work and run it; a finished step's write goes to the
committer thread without the slot waiting for it, so the slot runs the next ready step
(of another run) while the commit is in flight. The committer writes everything that
finished meanwhile in one statement and one commit, then hands each run's next step back
as ready work (continue in place).

Per-run guarantees are unchanged: a run's next step starts only after the commit of its
previous step, each step commits atomically, and every job in hand is leased (renewed by
the worker's heartbeat). Only commits of *different* runs are grouped; an idle lane
commits at once, so grouping never adds latency when there is nothing to group.

Anything the lane does not handle itself (compensation, signal timeouts, children,
parallel and loop steps, transactional steps, bad jobs, a run that moved) it gives to
:mod:`durable_sa.handlers`, which decides under a lock and stays the reference.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import attrs

from durable_sa import handlers
from durable_sa.core.decide import decide_step, is_current_advance
from durable_sa.core.definition import SignalStep, SleepStep, TaskStep
from durable_sa.core.jobs import AdvanceJob, decode_payload
from durable_sa.core.outcomes import StepOutcome
from durable_sa.core.status import is_legal_move
from durable_sa.errors import (
    DefinitionChanged,
    InvalidArgumentError,
    PayloadError,
    WorkflowNotRegisteredError,
)
from durable_sa.hotpath.connections import HeldConnection
from durable_sa.hotpath.rows import Claim, ClaimQuery, StepWrite, WriteResult, job_payload
from durable_sa.hotpath.store import store_for
from durable_sa.queue.protocol import ClaimedJob
from durable_sa.results import JobOutcome
from durable_sa.store.apply import log_transition

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime, timedelta

    from durable_sa.core.transition import Transition
    from durable_sa.queue.jobs_table import JobsTableBackend
    from durable_sa.shell import Shell

logger = logging.getLogger(__name__)

MAX_GROUP: Final = 64
"""Most writes in one commit, and most jobs a worker holds in hand."""
_IN_HAND_PER_SLOT: Final = 8
"""Jobs in hand per slot: enough to fill a group while a commit is in flight."""
_MIN_IN_HAND: Final = 16
"""Even one slot holds this many: it runs them while the previous group commits."""
_FAST_STEPS: Final = (TaskStep, SleepStep, SignalStep)


@attrs.define
class LaneStats:
    """How well grouping works (read freely from other threads)."""

    claims: int = 0
    claimed: int = 0
    commits: int = 0
    writes: int = 0
    claim_seconds: collections.deque[float] = attrs.field(
        factory=lambda: collections.deque(maxlen=1000)
    )
    """How long the latest claims took (the statement's round trip and commit)."""


@attrs.frozen
class Deferred:
    """Work a slot must do for a job in hand that is not a step to run (a fallback)."""

    job: ClaimedJob
    action: Callable[[], JobOutcome]


Work = Claim | Deferred


@attrs.frozen
class _Write:
    step: StepWrite
    row: dict[str, Any]
    payload: AdvanceJob
    outcome: StepOutcome


class FastLane:
    """Claims, runs and checkpoints task steps of the jobs-table backend."""

    def __init__(  # noqa: PLR0913 - the worker's settings, keyword-only
        self,
        shell: Shell,
        backend: JobsTableBackend,
        *,
        worker: str,
        lease: timedelta,
        queues: Sequence[str] | None,
        workflows: Callable[[], Mapping[str, str]],
        concurrency: int,
        wake: Callable[[], None],
        on_outcome: Callable[[JobOutcome], None],
        on_claimed: Callable[[int], None] = lambda _count: None,
    ) -> None:
        """Prepare the lane; :meth:`start` starts its committer."""
        self.shell = shell
        self.backend = backend
        self.worker = worker
        self.lease = lease
        self.queues = queues
        self._workflows = workflows
        self._wake = wake
        self._on_outcome = on_outcome
        self._on_claimed = on_claimed
        self.max_in_hand = min(MAX_GROUP, max(_MIN_IN_HAND, _IN_HAND_PER_SLOT * concurrency))
        self.stats = LaneStats()
        store = store_for(shell.dialect)
        if store is None:
            msg = f"the fast lane does not support {shell.dialect}; check FastLane.supports"
            raise InvalidArgumentError(msg)
        self._store = store
        self._claim_sql = store.claim_sql(queues=queues is not None, workflows=True, fifo=False)
        self._claims_conn = HeldConnection(shell, store, synchronous=False)
        self._writes_conn = HeldConnection(shell, store, synchronous=True)
        self._claim_lock = threading.Lock()
        self._lock = threading.Lock()
        self._ready: collections.deque[Work] = collections.deque()
        self._held: dict[int, ClaimedJob] = {}
        self._pending: list[_Write] = []
        self._has_pending = threading.Condition(self._lock)
        self._committing = False
        self._closing = False
        self._committer: threading.Thread | None = None

    @staticmethod
    def supports(shell: Shell, backend: object) -> bool:
        """True when the lane can serve this engine (the jobs table, on a dialect with a store)."""
        from durable_sa.queue.jobs_table import JobsTableBackend  # noqa: PLC0415 - no cycle

        return (
            store_for(shell.dialect) is not None
            and type(backend) is JobsTableBackend
            and shell.crash_before_commit is None
        )

    # ── lifecycle ──────────────────────────────────────────────────────────────

    def start(self) -> None:
        """Start the committer thread."""
        self._committer = threading.Thread(
            target=self._commit_loop, name=f"durable-sa-commit-{self.worker}", daemon=True
        )
        self._committer.start()

    def close(self) -> None:
        """Commit what finished, do the fallbacks left, give back unstarted jobs."""
        with self._lock:
            self._closing = True
            self._has_pending.notify_all()
        if self._committer is not None:
            self._committer.join(timeout=30)
        unstarted: list[int] = []
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
        self._claims_conn.close()
        self._writes_conn.close()

    def held_ids(self) -> list[int]:
        """Ids of every job in hand (the heartbeat renews their leases)."""
        with self._lock:
            return list(self._held)

    @property
    def busy(self) -> bool:
        """True while commits are pending or in flight (their results wake the slots)."""
        with self._lock:
            return bool(self._pending) or self._committing

    # ── taking work ────────────────────────────────────────────────────────────

    def next_work(self, *, may_claim: bool) -> Work | None:
        """Ready work in hand, or newly claimed work; ``None`` when there is none now."""
        with self._lock:
            if self._ready:
                return self._ready.popleft()
        if not may_claim:
            return None
        with self._claim_lock:
            with self._lock:
                if self._ready:  # another slot's claim brought work meanwhile
                    return self._ready.popleft()
                room = self.max_in_hand - len(self._held)
            if room <= 0:
                return None
            claims = self._claim(room)
            with self._lock:
                for claim in claims:
                    self._held[claim.job.id] = claim.job
                self._ready.extend(claims)
                work = self._ready.popleft() if self._ready else None
        if len(claims) > 1:
            self._wake()  # more than this slot can take
        return work

    def _claim(self, limit: int) -> list[Claim]:
        query = ClaimQuery(
            sql=self._claim_sql,
            worker=self.worker,
            lease=self.lease,
            queues=self.queues,
            workflows=self._workflows(),
        )
        began = time.perf_counter()
        try:
            claims = self._store.claim(
                self._claims_conn.get(), query, now=self.shell.now(), limit=limit
            )
        except Exception:
            self._claims_conn.broken()
            raise
        self.stats.claim_seconds.append(time.perf_counter() - began)
        self.stats.claims += 1
        self.stats.claimed += len(claims)
        self._on_claimed(len(claims))
        return claims

    # ── running work on a slot ─────────────────────────────────────────────────

    def process(self, work: Work) -> None:
        """Run ``work`` on the calling slot; a step's checkpoint is committed later."""
        if isinstance(work, Deferred):
            self._finish(work.job, self._guarded(work.job, work.action))
            return
        write = self._guarded_step(work)
        if isinstance(write, JobOutcome):
            self._finish(work.job, write)
            return
        with self._lock:
            # Nothing else to do and nothing to group with: commit here, now (no handoff).
            inline = not (self._committing or self._pending or self._ready)
            if inline:
                self._committing = True
            else:
                self._pending.append(write)
                self._has_pending.notify()
        if inline:
            try:
                self._commit_safely([write])
            finally:
                with self._lock:
                    self._committing = False
                    self._has_pending.notify()

    def _guarded(self, job: ClaimedJob, action: Callable[[], JobOutcome]) -> JobOutcome:
        try:
            return action()
        except Exception as exc:  # noqa: BLE001 - the general path's error handling
            return handlers.job_failed(self.shell, job, exc)

    def _guarded_step(self, claim: Claim) -> _Write | JobOutcome:
        try:
            return self._step(claim)
        except Exception as exc:  # noqa: BLE001 - the general path's error handling
            return handlers.job_failed(self.shell, claim.job, exc)

    def _step(self, claim: Claim) -> _Write | JobOutcome:  # noqa: PLR0911 - one per fallback
        """Run a task step and decide; the write to commit, or the general path's outcome."""
        job, run = claim.job, claim.run
        if job.kind != AdvanceJob.kind or run is None or job.attempts > job.max_attempts:
            return handlers.run_job(self.shell, job)
        try:
            payload = decode_payload(job.kind, job.payload)
            if not isinstance(payload, AdvanceJob) or payload.run_id != job.run_id:
                return handlers.run_job(self.shell, job)
            workflow = handlers.definition_for(run)
        except (PayloadError, WorkflowNotRegisteredError, DefinitionChanged):
            return handlers.run_job(self.shell, job)
        if not is_current_advance(run, payload) or run.current_step >= run.total_steps:
            return handlers.run_job(self.shell, job)
        step = workflow.steps[run.current_step]
        if not isinstance(step, _FAST_STEPS) or (isinstance(step, TaskStep) and step.transactional):
            return handlers.run_job(self.shell, job)

        outcome = handlers.execute_step(run, step, payload.attempt, journal={})
        now = self.shell.now()
        transition = decide_step(
            run, outcome, attempt=payload.attempt, now=now, jitter=self.shell.jitter()
        )
        if not _is_simple(transition):
            return handlers.apply_step_outcome(self.shell, payload, job, outcome)
        lease_until = None if self._closing or not _continues(transition, now) else now + self.lease
        step_write = StepWrite(
            transition=transition, job_id=job.id, now=now, lease_until=lease_until
        )
        row = self._store.write_row(
            step_write, queue=self.backend.queue, max_attempts=self.backend.max_attempts
        )
        return _Write(step=step_write, row=row, payload=payload, outcome=outcome)

    def _finish(self, job: ClaimedJob, outcome: JobOutcome) -> None:
        self._release(job)
        self._on_outcome(outcome)

    def _release(self, job: ClaimedJob) -> None:
        with self._lock:
            self._held.pop(job.id, None)

    # ── the committer ──────────────────────────────────────────────────────────

    def _commit_loop(self) -> None:
        while True:
            with self._lock:
                while (not self._pending or self._committing) and not self._closing:
                    self._has_pending.wait()
                if not self._pending:  # closing, and everything is committed
                    return
                group = self._take_group()
                self._committing = True
            try:
                self._commit_safely(group)
            finally:
                with self._lock:
                    self._committing = False
                    self._has_pending.notify()
                self._wake()

    def _take_group(self) -> list[_Write]:
        """Up to :data:`MAX_GROUP` pending writes of distinct runs (the rest wait)."""
        group: list[_Write] = []
        later: list[_Write] = []
        runs: set[int] = set()
        for write in self._pending:
            run_id = write.step.transition.run_id
            if len(group) < MAX_GROUP and run_id not in runs:
                runs.add(run_id)
                group.append(write)
            else:
                later.append(write)
        self._pending = later
        return group

    def _commit_safely(self, group: list[_Write]) -> None:
        """Commit ``group``; a bug here must not strand its jobs in hand forever."""
        try:
            self._commit(group)
        except Exception as exc:
            logger.exception("committing %d steps failed", len(group))
            with self._lock:
                stranded = [self._held[w.step.job_id] for w in group if w.step.job_id in self._held]
                self._ready.extend(
                    Deferred(job=job, action=_failed(self.shell, job, exc)) for job in stranded
                )

    def _commit(self, group: list[_Write]) -> None:
        results = self._write(group)
        self.stats.commits += 1
        self.stats.writes += len(group)
        ready: list[Work] = []
        queued = False
        with self._lock:
            jobs = [self._held.get(w.step.job_id) or _placeholder(w) for w in group]
        for write, result, job in zip(group, results, jobs, strict=True):
            if isinstance(result, BaseException):
                ready.append(Deferred(job=job, action=_failed(self.shell, job, result)))
            elif not result.applied:  # the run moved meanwhile: decide again under a lock
                ready.append(Deferred(job=job, action=_apply_locked(self.shell, write, job)))
            else:
                log_transition(write.step.transition)
                queued = queued or result.queued
                self._finish(job, JobOutcome.APPLIED)
                following = self._following(write, result)
                if following is not None:
                    ready.append(following)
        with self._lock:
            for work in ready:
                if isinstance(work, Claim):
                    self._held[work.job.id] = work.job
            self._ready.extend(ready)
        if queued:
            self.backend.wake_local()

    def _write(self, group: list[_Write]) -> Sequence[WriteResult | BaseException]:
        now = max(write.step.now for write in group)
        try:
            return self._store.write_group(
                self._writes_conn.get(), [w.row for w in group], worker=self.worker, now=now
            )
        except Exception as exc:  # noqa: BLE001 - retried alone below, or handed to its job
            self._writes_conn.broken()
            if len(group) == 1:
                return [exc]
        # One write failed the group's transaction: apply each alone, so only it fails.
        results: list[WriteResult | BaseException] = []
        for write in group:
            try:
                results.extend(
                    self._store.write_group(
                        self._writes_conn.get(), [write.row], worker=self.worker, now=now
                    )
                )
            except Exception as exc:  # noqa: BLE001 - handed to that write's job
                self._writes_conn.broken()
                results.append(exc)
        return results

    def _following(self, write: _Write, result: WriteResult) -> Claim | None:
        """The run's next step, inserted claimed by this worker: ready to run here."""
        lease_until = write.step.lease_until
        if result.next_job_id is None or lease_until is None:
            return None
        transition = write.step.transition
        spec = transition.jobs[0]
        job = ClaimedJob(
            id=result.next_job_id,
            queue=self.backend.queue,
            kind=spec.kind,
            run_id=spec.run_id,
            payload=job_payload(spec.payload),
            attempts=1,
            max_attempts=self.backend.max_attempts,
            available_at=spec.available_at,
            claimed_until=lease_until,
        )
        after = attrs.evolve(transition.after, revision=transition.before.revision + 1)
        return Claim(job=job, run=after)


def _placeholder(write: _Write) -> ClaimedJob:
    """The job of a write whose hold was lost (cannot happen; keeps the types honest)."""
    return ClaimedJob(
        id=write.step.job_id,
        queue="",
        kind=AdvanceJob.kind,
        run_id=write.payload.run_id,
        payload=job_payload(write.payload),
        attempts=1,
        max_attempts=1,
        available_at=write.step.now,
    )


def _failed(shell: Shell, job: ClaimedJob, exc: BaseException) -> Callable[[], JobOutcome]:
    def action() -> JobOutcome:
        error = exc if isinstance(exc, Exception) else RuntimeError(str(exc))
        return handlers.job_failed(shell, job, error)

    return action


def _apply_locked(shell: Shell, write: _Write, job: ClaimedJob) -> Callable[[], JobOutcome]:
    def action() -> JobOutcome:
        return handlers.apply_step_outcome(shell, write.payload, job, write.outcome)

    return action


def _is_simple(transition: Transition) -> bool:
    """A transition the group write can apply: this run's row and jobs only."""
    before, after = transition.before, transition.after
    return (
        transition.spawn is None
        and transition.settle_parent is None
        and not transition.drop_jobs
        and all(spec.run_id == before.id for spec in transition.jobs)
        and (before.status == after.status or is_legal_move(before.status, after.status))
    )


def _continues(transition: Transition, now: datetime) -> bool:
    """True when the run's only next job is its next step, due now: run it here."""
    jobs = transition.jobs
    return (
        len(jobs) == 1 and isinstance(jobs[0].payload, AdvanceJob) and jobs[0].available_at <= now
    )
