"""``Admin``: what operators, test drivers and backends do to an engine, apart from its users.

An application's code starts, resumes, cancels and reads runs through
:class:`durable_sa.Durable`. Everything else lives here, reached as ``engine.admin``:
the dead-letter queue and its requeue, pruning finished runs, the live workers, dropping
the schema, and the single-job verbs (claim one job, run one job, call a job handler
directly) that the testing toolkit, the Celery backend and debugging sessions use.

Nothing here is a second implementation: each verb calls the same shell, runner and
backend that the worker uses.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from durable_sa.core.ids import id_in_range
from durable_sa.core.jobs import AdvanceJob, CompensateJob
from durable_sa.engine import runner
from durable_sa.errors import DeadLetterNotFoundError
from durable_sa.queue import dead_letters as letters
from durable_sa.retention import prune_runs
from durable_sa.runtime.presence import WorkerInfo, live_workers
from durable_sa.store.models import metadata
from durable_sa.views import find_dead_letter, list_dead_letters

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime, timedelta

    from durable_sa.engine.shell import Shell
    from durable_sa.queue.protocol import ClaimedJob
    from durable_sa.results import DeadLetterInfo, JobOutcome, PruneResult

logger = logging.getLogger(__name__)


class Admin:
    """Operator and driver verbs over one engine's shell (``engine.admin``)."""

    def __init__(self, shell: Shell) -> None:
        """Act on the engine wired by ``shell``."""
        self.shell = shell

    def __repr__(self) -> str:
        return f"<Admin {self.shell.sa_engine.url!r} backend={self.shell.backend.name}>"

    # ── dead letters ───────────────────────────────────────────────────────────

    def dead_letters(
        self, limit: int | None = None, *, include_resolved: bool = False
    ) -> list[DeadLetterInfo]:
        """Open dead letters, newest first, with the error that put them there.

        ``include_resolved`` adds those already requeued or whose run was recovered
        (``resolved_by``), so an operator can read what happened.
        """
        with self.shell.reading() as session:
            return list_dead_letters(session, limit=limit, include_resolved=include_resolved)

    def dead_letter(self, dead_letter_id: int) -> DeadLetterInfo:
        """Dead letter ``dead_letter_id``, open or resolved, whole.

        Raises:
            DeadLetterNotFoundError: there is no such dead letter.

        """
        if id_in_range(dead_letter_id, "a dead letter id") is None:
            raise DeadLetterNotFoundError(dead_letter_id)
        with self.shell.reading() as session:
            found = find_dead_letter(session, dead_letter_id)
        if found is None:
            raise DeadLetterNotFoundError(dead_letter_id)
        return found

    def requeue(self, dead_letter_id: int) -> int:
        """Put a dead-lettered job back on the queue; the new job's id.

        Raises:
            DeadLetterNotFoundError: no dead letter ``dead_letter_id`` (or its run is gone).

        """
        if id_in_range(dead_letter_id, "a dead letter id") is None:
            raise DeadLetterNotFoundError(dead_letter_id)
        job_id = self.shell.backend.requeue(dead_letter_id, now=self.shell.now())
        if job_id is None:
            raise DeadLetterNotFoundError(dead_letter_id)
        logger.info(
            "dead letter %s requeued as job %s",
            dead_letter_id,
            job_id,
            extra={"action": "requeue"},
        )
        return job_id

    def dismiss_dead_letter(self, dead_letter_id: int) -> None:
        """Mark open dead letter ``dead_letter_id`` resolved without requeueing it.

        For a dead letter an operator dealt with another way (the run was fixed by
        hand, or its work is no longer wanted): it leaves ``durable_sa_dead_letters_open``
        and the open list, and stays readable with ``include_resolved`` (``resolved_by``
        ``"dismiss"``). Canceling a run resolves its dead letters by itself.

        Raises:
            DeadLetterNotFoundError: no open dead letter ``dead_letter_id``.

        """
        if id_in_range(dead_letter_id, "a dead letter id") is None:
            raise DeadLetterNotFoundError(dead_letter_id)
        with self.shell.sessions.begin() as session:
            found = letters.dismiss(session, dead_letter_id, now=self.shell.now())
        if not found:
            raise DeadLetterNotFoundError(dead_letter_id)
        logger.info(
            "dead letter %s dismissed (not requeued)",
            dead_letter_id,
            extra={"action": "dismiss"},
        )

    # ── retention and schema ───────────────────────────────────────────────────

    def prune(
        self, older_than: timedelta, *, batch_size: int = 1000, dry_run: bool = False
    ) -> PruneResult:
        """Delete runs that finished more than ``older_than`` ago, so the tables stay small.

        A completed, failed or canceled run whose last update (when it finished) is older
        than ``now - older_than`` is deleted with its journal entries, leftover jobs and
        dead letters. Trees stay whole: a child run goes only with its root, and a root
        only once every run below it has finished that long ago too. Live runs are never
        touched. Work is done in transactions of at most ``batch_size`` runs, so workers
        keep running alongside; ``dry_run`` counts what would go and deletes nothing.

        Raises:
            InvalidArgumentError: ``older_than`` is not a non-negative ``timedelta`` or
                ``batch_size`` is below 1.

        """
        return prune_runs(self.shell, older_than=older_than, batch_size=batch_size, dry_run=dry_run)

    def drop_tables(self) -> None:
        """Drop durable-sa's tables (all runs, journal and jobs are lost)."""
        metadata.drop_all(self.shell.sa_engine, checkfirst=True)

    # ── workers ────────────────────────────────────────────────────────────────

    def workers(self) -> list[WorkerInfo]:
        """Live workers, as their heartbeats describe them."""
        with self.shell.reading() as session:
            return live_workers(session, now=self.shell.now())

    # ── single jobs ────────────────────────────────────────────────────────────

    def claim(  # noqa: PLR0913 - every option is keyword-only
        self,
        *,
        now: datetime | None = None,
        worker: str = "inline",
        queues: Sequence[str] | None = None,
        workflows: Mapping[str, str] | None = None,
        fifo: bool = False,
        lease: timedelta | None = None,
    ) -> ClaimedJob | None:
        """Lease the next due job for this process (``None`` when nothing is due)."""
        return self.shell.backend.claim(
            now=now or self.shell.now(),
            worker=worker,
            lease=lease or self.shell.lease,
            queues=queues,
            workflows=workflows,
            fifo=fifo,
        )

    def run_job(self, job: ClaimedJob) -> JobOutcome:
        """Run a claimed job as a worker would: bad jobs dead-lettered, failing ones released."""
        return runner.run_job(self.shell, job)

    def advance(self, run_id: int, step_index: int, attempt: int = 1) -> JobOutcome:
        """The advance job's handler: run step ``step_index`` of the run, then commit.

        A call that does not match the run (another step, an older attempt, a run that
        is not running) does nothing and returns ``JobOutcome.STALE``.
        """
        job = AdvanceJob(run_id=run_id, step_index=step_index, attempt=attempt)
        return runner.run_payload(self.shell, job)

    def compensate(self, run_id: int, index: int) -> JobOutcome:
        """The compensate job's handler: undo step ``index`` and move the cursor down."""
        return runner.run_payload(self.shell, CompensateJob(run_id=run_id, index=index))
