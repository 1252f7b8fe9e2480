"""A pipeline's committer: the plans that finished meanwhile, applied in one transaction.

A slot that finishes a job hands its plan over and runs the next ready job (of another
run) while the commit is in flight. The committer thread takes every pending plan of a
distinct run (at most :data:`~durable_sa.worker.hand.MAX_GROUP`), applies them in one
transaction through the applier every other consumer uses, and hands each run's next
step back as ready work (continue in place). A plan whose run moved meanwhile is
decided again, alone, on a fresh read; a plan that fails the group's transaction is
retried alone, so only it fails. Transactional steps whose writes wait for their COMMIT
are committed here too. While a slot waits, the committer also gives ready work back to
the queue when every slot has been busy too long, and gives back the rate-limit grants
kept past their horizon (:meth:`~durable_sa.engine.controls.GrantReserve.sweep`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING, Final

from sqlalchemy.orm import Session

from durable_sa.engine.applier import Applied, PlanItem
from durable_sa.engine.decision import Open, follow
from durable_sa.engine.limits import AdmissionNeededError
from durable_sa.results import JobOutcome
from durable_sa.worker.hand import (
    MAX_GROUP,
    Deferred,
    Hand,
    Pending,
    Ready,
    Work,
    commit_alone_action,
    job_failed_action,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from datetime import datetime

    from durable_sa.core.plan import WritePlan
    from durable_sa.queue.protocol import ClaimedJob
    from durable_sa.store.held import HeldConnection

logger = logging.getLogger("durable_sa.worker.pipeline")
"""The pipeline's logger, whichever of its modules writes: log filters keep working."""

_WATCH_INTERVAL: Final = 0.1
"""How often the committer looks for work waiting behind busy slots."""
_ADMITTING_FOR: Final = 1.0
"""Seconds after a group had to admit a pending run during which groups that end
limited runs go straight to a transaction (see ``_held_may_apply``)."""


class Committer(Hand):
    """Group commits: the committer part of :class:`~durable_sa.worker.pipeline.Pipeline`."""

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
                            self._grants.sweep()
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

    def _take_group(self) -> list[Pending]:
        """Up to :data:`MAX_GROUP` pending plans of distinct runs (the rest wait)."""
        group: list[Pending] = []
        later: list[Pending] = []
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

    def _commit_safely(self, group: list[Pending]) -> None:
        """Commit ``group``; a bug here must not strand its jobs in hand forever."""
        try:
            with self._watched({pending.job.id for pending in group}):
                self._commit(group)
        except Exception as exc:
            logger.exception("committing %d plans failed", len(group))
            with self._lock:
                stranded = [self._held[p.job.id] for p in group if p.job.id in self._held]
                self._ready.extend(
                    Deferred(job=job, action=job_failed_action(self.shell, job, exc))
                    for job in stranded
                )

    def _commit(self, group: list[Pending]) -> None:
        results = self._write(group)
        self.stats.commits += 1
        self.stats.writes += len(group)
        ready: list[Work] = []
        for pending, result in zip(group, results, strict=True):
            job = pending.job
            if isinstance(result, BaseException):
                ready.append(Deferred(job=job, action=job_failed_action(self.shell, job, result)))
            elif not result.applied:  # the run moved meanwhile: decide again on a fresh read
                action = commit_alone_action(
                    self.shell, pending.decision, self.applier, reread=True
                )
                ready.append(Deferred(job=job, action=action))
            else:
                self._finish(job, JobOutcome.APPLIED if pending.plan.run else JobOutcome.STALE)
                following = _following(pending.plan, result)
                if following is not None:
                    ready.append(following)
        self._hand_on(ready)

    def _write(self, group: list[Pending]) -> Sequence[Applied | BaseException]:
        now = max(pending.now for pending in group)
        items = [PlanItem(pending.plan, pending.job) for pending in group]
        try:
            if self._writes is not None and self._held_may_apply(items):
                try:
                    return self._apply_held(self._writes, items, now)
                except AdmissionNeededError:  # nothing applied: again, admitting this time
                    self._admitted_at = time.monotonic()
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

    def _held_may_apply(self, items: list[PlanItem]) -> bool:
        """Whether ``items`` go to the held connection as one statement.

        A group that ends limited runs does too, unless a group had to admit a pending
        run within :data:`_ADMITTING_FOR` seconds: while runs wait for places, most such
        groups must admit, and would be refused on the held connection first.
        """
        if not self.applier.one_statement(items, self._dialect):
            return False
        admitting = time.monotonic() - self._admitted_at < _ADMITTING_FOR
        return not (admitting and any(item.plan.release is not None for item in items))

    def _apply_held(
        self, held: HeldConnection, items: list[PlanItem], now: datetime
    ) -> list[Applied]:
        """Apply a group that is one statement on the held autocommit connection.

        The statement is its own transaction, so it cannot admit pending runs as well:
        if it must, it applies nothing and raises
        :class:`~durable_sa.engine.limits.AdmissionNeededError`.
        """
        try:
            with Session(bind=held.get(), expire_on_commit=False) as session:
                applied = self.applier.apply(session, items, now=now, strict=True)
                session.commit()
        except AdmissionNeededError:
            raise  # the connection is sound: the statement refused, by design
        except Exception:
            held.broken()
            raise
        return applied

    def _apply(self, tx: Session, items: list[PlanItem], now: datetime) -> list[Applied]:
        applied = self.applier.apply(tx, items, now=now)
        self.shell.about_to_commit()
        return applied

    def _commit_open(self, job: ClaimedJob, opened: Open) -> None:
        """COMMIT a transactional step, then hand its run's next step on (in place)."""
        try:
            with self._watched({job.id}):
                done = opened.commit()
        except Exception as exc:  # noqa: BLE001 - rolled back: the job is given back
            self._hand_on([Deferred(job=job, action=job_failed_action(self.shell, job, exc))])
            return
        self._done(job, done)

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


def _following(plan: WritePlan, result: Applied) -> Ready | None:
    """The run's next job, inserted claimed by this worker: ready to run here."""
    claim = follow(plan, result)
    return None if claim is None else Ready(claim, in_place=True)
