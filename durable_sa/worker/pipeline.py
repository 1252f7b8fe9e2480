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
(a parent to settle) commits alone, on its slot. A transactional step runs its handler and
writes its checkpoint in a transaction of its own on its slot, and the committer does the
COMMIT (at most :data:`MAX_OPEN` wait for it at once).

A job whose lease ran out (its worker died, maybe because of another job it held) is
taken over only alone: the pipeline stops claiming, lets its hand empty, claims that one
job by itself, and resumes batches once it is done. Claimed alone, a job that kills its
worker is charged for it; the innocent jobs that died with it in company are not (see
:mod:`durable_sa.queue.claims`).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Final

import attrs
from sqlalchemy.orm import Session

from durable_sa.core.plan import WritePlan
from durable_sa.engine import runner
from durable_sa.engine.applier import Applied, Applier, PlanItem
from durable_sa.queue.protocol import BatchClaims, Claim, ClaimedJob, ClaimKind
from durable_sa.queue.single_claims import SingleClaims
from durable_sa.results import JobOutcome
from durable_sa.store.held import HeldConnection

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
    from datetime import timedelta

    from durable_sa.engine.shell import Shell
    from durable_sa.queue.protocol import QueueBackend

logger = logging.getLogger(__name__)

MAX_GROUP: Final = 64
"""Most plans in one commit, and most jobs a worker holds in hand."""
_IN_HAND_PER_SLOT: Final = 8
"""Jobs in hand per slot: enough to fill a group while a commit is in flight."""
_MIN_IN_HAND: Final = 16
"""Even one slot holds this many: it runs them while the previous group commits."""
RELEASE_WAITING_AFTER: Final = 0.5
"""Seconds ready work may wait while every slot is busy before it goes back to the queue."""
MAX_OPEN: Final = 4
"""Transactional steps whose COMMIT may wait for the committer at once (each holds a
connection of the application's pool until then); past it, the slot commits itself."""
_WATCH_INTERVAL: Final = 0.1
"""How often the committer looks for work waiting behind busy slots."""


def default_prefetch(concurrency: int) -> int:
    """Jobs a worker holds by default: enough to group commits, at most :data:`MAX_GROUP`."""
    return min(MAX_GROUP, max(_MIN_IN_HAND, _IN_HAND_PER_SLOT * concurrency))


@attrs.define
class PipelineStats:
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
class _Pending:
    decision: runner.Decision
    plan: WritePlan
    now: datetime

    @property
    def job(self) -> ClaimedJob:
        job = self.decision.job
        if job is None:  # pragma: no cover - a claimed job always comes with its decision
            msg = "a pending plan lost its job"
            raise RuntimeError(msg)
        return job


class Pipeline:
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
        self.claims: BatchClaims = (
            backend if isinstance(backend, BatchClaims) else SingleClaims(backend)
        )
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
        self._running: dict[int, float] = {}
        """Slots running a job now (thread id → when it started, monotonic)."""
        self._running_ids: dict[int, int] = {}
        """Slots running a job now (thread id → the job's id)."""
        self._committing_ids: set[int] = set()
        """The jobs whose plans the commit in flight applies."""
        self._commit_began: float | None = None
        """When the commit in flight began (monotonic), ``None`` when none is."""
        self._stalled = False
        self._isolating = False
        """A job whose lease ran out waits: claim nothing more until the hand is empty."""
        self._alone: int | None = None
        """The job claimed alone and not finished: no batch is claimed beside it."""
        self.stats = PipelineStats()
        self._claim_lock = threading.Lock()
        self._lock = threading.Lock()
        self._ready: collections.deque[Work] = collections.deque()
        self._held: dict[int, ClaimedJob] = {}
        self._pending: list[_Pending] = []
        self._opens: list[tuple[ClaimedJob, runner.Open]] = []
        """Transactional steps applied in transactions that wait for their COMMIT."""
        self._has_pending = threading.Condition(self._lock)
        self._committing = False
        self._closing = False
        self._committer: threading.Thread | None = None
        self._dialect = shell.dialect
        self._claim_connection = (
            HeldConnection(
                shell.sa_engine,
                settings=[
                    "SET synchronous_commit TO OFF",
                    "SET enable_seqscan TO OFF",
                    "SET enable_bitmapscan TO OFF",
                ],
                resets=[
                    "RESET synchronous_commit",
                    "RESET enable_seqscan",
                    "RESET enable_bitmapscan",
                ],
            )
            if self._dialect == "postgresql" and self.claims.claims_on_connection
            else None
        )
        """PostgreSQL: claims run on a held autocommit connection that does not wait for
        the WAL flush (a lost claim only makes a job claimable again). On it the planner
        reads the due jobs in the order of their index (no table or bitmap scan): with
        statistics taken when the jobs table was small (a backlog that grew faster than
        autovacuum analyzes it), it would otherwise scan and sort the whole backlog on
        every claim, since ``FOR UPDATE`` keeps it from sorting only the first rows."""
        bound = _timeout_settings(commit_timeout)
        self._writes = (
            HeldConnection(shell.sa_engine, settings=bound[0], resets=bound[1])
            if self._dialect == "postgresql"
            else None
        )
        """PostgreSQL: a group that is one statement runs on a held autocommit connection
        (one round trip, and the server keeps it prepared)."""

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
        for held in (self._claim_connection, self._writes):
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
        if self.claims.claims_wait and self._claim_lock.locked():
            return True
        with self._lock:
            return bool(self._pending or self._opens) or self._committing

    # ── taking work ────────────────────────────────────────────────────────────

    def look_for_lapsed(self) -> None:
        """Called by the heartbeat: if a job's lease ran out, go and take it over alone."""
        if self._isolating or self._stalled:
            return
        if self.claims.has_lapsed(
            now=self.shell.now(), queues=self.queues, workflows=self._workflows()
        ):
            self._isolating = True
            logger.info(
                "a job's lease ran out: finishing the jobs in hand, then taking it over alone",
                extra={"action": "isolate", "worker": self.worker},
            )

    def abandon(self, job_id: int) -> None:
        """Stop counting a job that ran past its timeout as in hand (its lease runs out)."""
        with self._lock:
            self._held.pop(job_id, None)

    def next_work(self, *, may_claim: bool) -> Work | None:
        """Ready work in hand, or newly claimed work; ``None`` when there is none now."""
        with self._lock:
            if self._ready:
                return self._ready.popleft()
        if not may_claim or self._stalled:
            return None
        # A broker's read may wait for messages: one slot waits there, the others idle
        # until what it reads (or a commit) wakes them.
        waits = self.claims.claims_wait
        if not self._claim_lock.acquire(blocking=not waits):
            return None
        try:
            claims = self._claim_into_hand()
            with self._lock:
                work = self._ready.popleft() if self._ready else None
        finally:
            self._claim_lock.release()
        if len(claims) > 1 or (claims and waits):
            self._wake()  # more than this slot can take, or another slot must read on
        return work

    def _claim_into_hand(self) -> list[Claim]:
        """Claim what the hand has room for (the claim lock is held); the claims."""
        with self._lock:
            if self._ready:  # another slot's claim brought work meanwhile
                return []
            room = self.max_in_hand - len(self._held)
            empty = not self._held
            # Wait for a broker only when nothing in hand can become ready meanwhile.
            wait = not (self._pending or self._opens or self._committing)
            if self._alone is not None and self._alone in self._held:
                return []  # nothing is claimed beside a job taken over alone
        if self._isolating and not empty:
            return []  # the hand empties first
        claims = self._take_over() if self._isolating else []
        if not claims and room > 0:
            claims = self._claim(room, wait=wait)
            if not claims and empty:  # nothing new: a lapsed lease, maybe
                claims = self._take_over()
        with self._lock:
            for claim in claims:
                self._held[claim.job.id] = claim.job
            self._ready.extend(Ready(claim) for claim in claims)
        return claims

    def _take_over(self) -> list[Claim]:
        """Claim one job whose lease ran out, alone (the hand is empty)."""
        claims = self._claim(1, kind=ClaimKind.RECOVERED)
        self._isolating = bool(claims)  # look again once it is done, until none is left
        self._alone = claims[0].job.id if claims else None
        return claims

    def _claim(
        self, limit: int, *, kind: ClaimKind = ClaimKind.BATCH, wait: bool = False
    ) -> list[Claim]:
        began = time.perf_counter()
        try:
            claims = self.claims.claim_batch(
                now=self.shell.now(),
                worker=self.worker,
                lease=self.lease,
                limit=limit,
                queues=self.queues,
                workflows=self._workflows(),
                connection=None if self._claim_connection is None else self._claim_connection.get(),
                kind=kind,
                wait=wait,
            )
        except Exception:
            if self._claim_connection is not None:
                self._claim_connection.broken()
            raise
        self.stats.claim_seconds.append(time.perf_counter() - began)
        self.stats.claims += 1
        self.stats.claimed += len(claims)
        self._on_claimed(len(claims))
        return claims

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
        prepared = runner.prepare(
            self.shell,
            job,
            work.claim.run,
            in_place=work.in_place,
            applier=self.applier,
            lease=lease,
            keep_open=self._dialect == "postgresql",
        )
        if isinstance(prepared, runner.Open):
            self._hand_over(job, prepared)
            return
        if isinstance(prepared, runner.Done):
            self._done(job, prepared)
            return
        now = self.shell.now()
        try:
            plan = prepared.plan(prepared.run, now=now, lease=lease)
        except Exception as exc:  # noqa: BLE001 - a decision that fails gives the job back
            self._finish(job, runner.job_failed(self.shell, job, exc))
            return
        if plan is None:  # pragma: no cover - a claimed job always has a plan
            self._finish(job, JobOutcome.STALE)
            return
        if not plan.lock_free:
            action = _alone(self.shell, prepared, self.applier, reread=False)
            self._finish(job, self._guarded(job, action))
            return
        pending = _Pending(decision=prepared, plan=plan, now=now)
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

    def _hand_over(self, job: ClaimedJob, opened: runner.Open) -> None:
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

    def _commit_open(self, job: ClaimedJob, opened: runner.Open) -> None:
        """COMMIT a transactional step, then hand its run's next step on (in place)."""
        try:
            with self._watched({job.id}):
                done = opened.commit()
        except Exception as exc:  # noqa: BLE001 - rolled back: the job is given back
            self._hand_on([Deferred(job=job, action=_failed(self.shell, job, exc))])
            return
        self._done(job, done)

    def _done(self, job: ClaimedJob, done: runner.Done) -> None:
        """``job`` is finished; its run's next step, handed to this worker, is ready."""
        self._finish(job, done.outcome)
        if done.follow is not None:
            self._hand_on([Ready(done.follow, in_place=True)])

    @contextlib.contextmanager
    def _watched(self, job_ids: set[int]) -> Iterator[None]:
        """A commit in flight for ``job_ids``: what the stall watch (``held_ids``) sees."""
        with self._lock:
            self._committing_ids = job_ids
        self._commit_began = time.monotonic()
        try:
            yield
        finally:
            self._commit_began = None
            self._stalled = False
            with self._lock:
                self._committing_ids = set()

    def _guarded(self, job: ClaimedJob, action: Callable[[], JobOutcome]) -> JobOutcome:
        try:
            return action()
        except Exception as exc:  # noqa: BLE001 - the job is given back
            return runner.job_failed(self.shell, job, exc)

    def _finish(self, job: ClaimedJob, outcome: JobOutcome) -> None:
        self._release(job)
        self._on_outcome(outcome)

    def _release(self, job: ClaimedJob) -> None:
        with self._lock:
            self._held.pop(job.id, None)

    def _hand_on(self, ready: list[Work]) -> None:
        with self._lock:
            for work in ready:
                if isinstance(work, Ready):
                    self._held[work.job.id] = work.job
            self._ready.extend(ready)

    # ── the committer ──────────────────────────────────────────────────────────

    def _commit_loop(self) -> None:
        while True:
            with self._lock:
                while (
                    not (self._pending or self._opens) or self._committing
                ) and not self._closing:
                    self._has_pending.wait(_WATCH_INTERVAL)
                    if not (self._pending or self._opens) or self._committing:
                        self._lock.release()
                        try:
                            self._release_waiting()
                        finally:
                            self._lock.acquire()
                if not (self._pending or self._opens):  # closing, and everything is committed
                    return
                group = self._take_group()
                opens, self._opens = self._opens, []
                self._committing = True
            try:
                for job, opened in opens:
                    self._commit_open(job, opened)
                if group:
                    self._commit_safely(group)
            finally:
                with self._lock:
                    self._committing = False
                    self._has_pending.notify()
                self._wake()

    def _take_group(self) -> list[_Pending]:
        """Up to :data:`MAX_GROUP` pending plans of distinct runs (the rest wait)."""
        group: list[_Pending] = []
        later: list[_Pending] = []
        runs: set[int] = set()
        for pending in self._pending:
            run_id = pending.decision.payload.run_id
            if len(group) < MAX_GROUP and run_id not in runs:
                runs.add(run_id)
                group.append(pending)
            else:
                later.append(pending)
        self._pending = later
        return group

    def _release_waiting(self) -> None:
        """Give ready work back when every slot has been busy for too long.

        A slow step must not hold quick runs in hand while other workers sit idle: after
        ``release_waiting_after`` seconds with every slot busy, the ready jobs go back to
        the queue (their claims released at once), for whichever worker is free.
        """
        with self._lock:
            if not self._ready or len(self._running) < self.concurrency:
                return
            busy_since = max(self._running.values(), default=time.monotonic())
            if time.monotonic() - busy_since < self.release_waiting_after:
                return
        self._release_ready()

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

    def _commit_safely(self, group: list[_Pending]) -> None:
        """Commit ``group``; a bug here must not strand its jobs in hand forever."""
        try:
            with self._watched({pending.job.id for pending in group}):
                self._commit(group)
        except Exception as exc:
            logger.exception("committing %d plans failed", len(group))
            with self._lock:
                stranded = [self._held[p.job.id] for p in group if p.job.id in self._held]
                self._ready.extend(
                    Deferred(job=job, action=_failed(self.shell, job, exc)) for job in stranded
                )

    def _commit(self, group: list[_Pending]) -> None:
        results = self._write(group)
        self.stats.commits += 1
        self.stats.writes += len(group)
        ready: list[Work] = []
        for pending, result in zip(group, results, strict=True):
            job = pending.job
            if isinstance(result, BaseException):
                ready.append(Deferred(job=job, action=_failed(self.shell, job, result)))
            elif not result.applied:  # the run moved meanwhile: decide again on a fresh read
                action = _alone(self.shell, pending.decision, self.applier, reread=True)
                ready.append(Deferred(job=job, action=action))
            else:
                self._finish(job, JobOutcome.APPLIED if pending.plan.run else JobOutcome.STALE)
                following = _following(pending.plan, result)
                if following is not None:
                    ready.append(following)
        self._hand_on(ready)

    def _write(self, group: list[_Pending]) -> Sequence[Applied | BaseException]:
        now = max(pending.now for pending in group)
        items = [PlanItem(pending.plan, pending.job) for pending in group]
        try:
            if self._writes is not None and self.applier.one_statement(items, self._dialect):
                return self._apply_held(self._writes, items, now)
            return self.shell.transaction(lambda tx: self._apply(tx, items, now))
        except Exception as exc:  # noqa: BLE001 - retried alone below, or handed to its job
            if len(group) == 1:
                return [exc]
        # One plan failed the group's transaction: apply each alone, so only it fails.
        results: list[Applied | BaseException] = []
        for item in items:

            def by_itself(tx: Session, item: PlanItem = item) -> list[Applied]:
                return self._apply(tx, [item], now)

            try:
                results.extend(self.shell.transaction(by_itself))
            except Exception as exc:  # noqa: BLE001 - handed to that plan's job
                results.append(exc)
        return results

    def _apply_held(
        self, held: HeldConnection, items: list[PlanItem], now: datetime
    ) -> list[Applied]:
        """Apply a group that is one statement on the held autocommit connection."""
        try:
            with Session(bind=held.get(), expire_on_commit=False) as session:
                applied = self.applier.apply(session, items, now=now)
                session.commit()
        except Exception:
            held.broken()
            raise
        return applied

    def _apply(self, tx: Session, items: list[PlanItem], now: datetime) -> list[Applied]:
        applied = self.applier.apply(tx, items, now=now)
        self.shell.about_to_commit()
        return applied


def _timeout_settings(timeout: timedelta | None) -> tuple[list[str], list[str]]:
    """PostgreSQL session settings that make a blocked write fail after ``timeout``."""
    if timeout is None:
        return [], []
    ms = max(1, int(timeout.total_seconds() * 1000))
    return (
        [f"SET lock_timeout = {ms}", f"SET statement_timeout = {ms}"],
        ["RESET lock_timeout", "RESET statement_timeout"],
    )


def _following(plan: WritePlan, result: Applied) -> Ready | None:
    """The run's next job, inserted claimed by this worker: ready to run here."""
    claim = runner.follow(plan, result)
    return None if claim is None else Ready(claim, in_place=True)


def _failed(shell: Shell, job: ClaimedJob, exc: BaseException) -> Callable[[], JobOutcome]:
    def action() -> JobOutcome:
        return runner.job_failed(shell, job, exc)

    return action


def _alone(
    shell: Shell, decision: runner.Decision, applier: Applier, *, reread: bool
) -> Callable[[], JobOutcome]:
    def action() -> JobOutcome:
        return runner.commit_alone(shell, decision, applier=applier, reread=reread).outcome

    return action
