"""The fast lane a worker slot drives: claim with the run, run the step, write once.

:class:`FastLane` owns two database connections of the engine's pool for the worker's
lifetime (claims and step writes) and two :class:`~.batch.GroupExecutor` s over them, so
slots that claim or finish at the same moment share a round trip and a commit. Anything
it does not handle itself it gives to :mod:`durable_sa.handlers`, which decides under a
lock: the fast lane may only ever be a faster way to reach the same rows.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Final

import attrs

from durable_sa import handlers
from durable_sa.core.decide import decide_step, is_current_advance
from durable_sa.core.definition import SignalStep, SleepStep, TaskStep
from durable_sa.core.jobs import AdvanceJob, decode_payload, encode_payload
from durable_sa.core.status import is_legal_move
from durable_sa.errors import DefinitionChanged, PayloadError, WorkflowNotRegisteredError
from durable_sa.hotpath import pg
from durable_sa.hotpath.batch import GroupExecutor
from durable_sa.hotpath.connections import HeldConnection
from durable_sa.hotpath.rows import Claim, StepWrite, WriteResult
from durable_sa.queue.protocol import ClaimedJob
from durable_sa.results import JobOutcome
from durable_sa.store.apply import log_transition

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from datetime import datetime, timedelta

    from durable_sa.core.transition import Transition
    from durable_sa.queue.jobs_table import JobsTableBackend
    from durable_sa.shell import Shell

logger = logging.getLogger(__name__)

MAX_BATCH: Final = 64
_FAST_STEPS: Final = (TaskStep, SleepStep, SignalStep)


@attrs.frozen
class _ClaimRequest:
    now: datetime


class FastLane:
    """Claim, run and checkpoint task steps of the jobs-table backend on PostgreSQL."""

    def __init__(  # noqa: PLR0913 - the worker's settings, keyword-only
        self,
        shell: Shell,
        backend: JobsTableBackend,
        *,
        worker: str,
        lease: timedelta,
        queues: Sequence[str] | None,
        workflows: Callable[[], Mapping[str, str]],
    ) -> None:
        """Prepare the lane; connections open on first use."""
        self.shell = shell
        self.backend = backend
        self.worker = worker
        self.lease = lease
        self.queues = queues
        self._workflows = workflows
        self._claim_sql = pg.claim_sql(queues=queues is not None, workflows=True, fifo=False)
        self._claims_conn = HeldConnection(shell, synchronous_commit=False)
        self._writes_conn = HeldConnection(shell, synchronous_commit=True)
        self._claims: GroupExecutor[_ClaimRequest, Claim | None] = GroupExecutor(
            self._claim_batch, max_batch=MAX_BATCH
        )
        self._writes: GroupExecutor[dict[str, Any], WriteResult] = GroupExecutor(
            self._write_batch, max_batch=MAX_BATCH
        )
        self._lock = threading.Lock()

    @staticmethod
    def supports(shell: Shell, backend: object) -> bool:
        """True when the lane can serve this engine (jobs table on PostgreSQL)."""
        from durable_sa.queue.jobs_table import JobsTableBackend  # noqa: PLC0415 - no cycle

        return (
            shell.dialect == "postgresql"
            and type(backend) is JobsTableBackend
            and shell.crash_before_commit is None
        )

    def close(self) -> None:
        """Give the connections back to the pool."""
        self._claims_conn.close()
        self._writes_conn.close()

    # ── claims ─────────────────────────────────────────────────────────────────

    def claim(self) -> Claim | None:
        """Lease the next due job with its run (grouped with other slots' claims)."""
        return self._claims.submit(_ClaimRequest(now=self.shell.now()))

    def _claim_batch(self, requests: Sequence[_ClaimRequest]) -> list[Claim | None]:
        try:
            claims = pg.claim(
                self._claims_conn.get(),
                self._claim_sql,
                now=max(r.now for r in requests),
                worker=self.worker,
                lease=self.lease,
                limit=len(requests),
                queues=self.queues,
                workflows=self._workflows(),
            )
        except Exception:
            self._claims_conn.broken()
            raise
        padded: list[Claim | None] = list(claims)
        padded.extend([None] * (len(requests) - len(claims)))
        return padded

    # ── steps ──────────────────────────────────────────────────────────────────

    def run(self, claim: Claim, *, may_continue: bool) -> tuple[JobOutcome, Claim | None]:
        """Run the claimed job; returns its outcome and the run's next step, if it is ours."""
        job = claim.job
        try:
            return self._run(claim, may_continue=may_continue)
        except Exception as exc:  # noqa: BLE001 - the general path's error handling
            return handlers.job_failed(self.shell, job, exc), None

    def _run(self, claim: Claim, *, may_continue: bool) -> tuple[JobOutcome, Claim | None]:
        job, run = claim.job, claim.run
        if job.kind != AdvanceJob.kind or run is None or job.attempts > job.max_attempts:
            return handlers.run_job(self.shell, job), None
        try:
            payload = decode_payload(job.kind, job.payload)
            if payload.run_id != job.run_id or not isinstance(payload, AdvanceJob):
                return handlers.run_job(self.shell, job), None
            workflow = handlers.definition_for(run)
        except (PayloadError, WorkflowNotRegisteredError, DefinitionChanged):
            return handlers.run_job(self.shell, job), None
        if not is_current_advance(run, payload) or run.current_step >= run.total_steps:
            return handlers.run_job(self.shell, job), None
        step = workflow.steps[run.current_step]
        if not isinstance(step, _FAST_STEPS) or (isinstance(step, TaskStep) and step.transactional):
            return handlers.run_job(self.shell, job), None

        outcome = handlers.execute_step(run, step, payload.attempt, journal={})
        now = self.shell.now()
        transition = decide_step(
            run, outcome, attempt=payload.attempt, now=now, jitter=self.shell.jitter()
        )
        if not _is_simple(transition):
            return handlers.apply_step_outcome(self.shell, payload, job, outcome), None
        continues = may_continue and _continues(transition, now)
        lease_until = now + self.lease if continues else None
        params = pg.write_params(
            StepWrite(transition=transition, job_id=job.id, now=now, lease_until=lease_until),
            worker=self.worker,
            queue=self.backend.queue,
            max_attempts=self.backend.max_attempts,
        )
        result = self._writes.submit(params)
        if not result.applied:  # the run moved meanwhile: decide again under a lock
            return handlers.apply_step_outcome(self.shell, payload, job, outcome), None
        log_transition(transition)
        if result.queued:
            self.backend.wake_local()
        if result.next_job_id is None or lease_until is None:
            return JobOutcome.APPLIED, None
        spec = transition.jobs[0]
        next_job = ClaimedJob(
            id=result.next_job_id,
            queue=self.backend.queue,
            kind=spec.kind,
            run_id=spec.run_id,
            payload=encode_payload(spec.payload),
            attempts=1,
            max_attempts=self.backend.max_attempts,
            available_at=spec.available_at,
            claimed_until=lease_until,
        )
        after = attrs.evolve(transition.after, revision=transition.before.revision + 1)
        return JobOutcome.APPLIED, Claim(job=next_job, run=after)

    def _write_batch(self, batch: Sequence[dict[str, Any]]) -> list[WriteResult]:
        try:
            return pg.write_batch(self._writes_conn.get(), batch)
        except Exception:
            self._writes_conn.broken()
            if len(batch) == 1:
                raise
        # One write failed the shared transaction: apply each alone, so only it fails.
        results: list[Any] = []
        for params in batch:
            try:
                results.extend(pg.write_batch(self._writes_conn.get(), [params]))
            except Exception as exc:  # noqa: BLE001 - handed to that write's caller
                self._writes_conn.broken()
                results.append(exc)
        return results


def _is_simple(transition: Transition) -> bool:
    """A transition the one-statement write can apply: this run's row and jobs only."""
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
        len(jobs) == 1
        and isinstance(jobs[0].payload, AdvanceJob)
        and jobs[0].available_at <= now
    )
