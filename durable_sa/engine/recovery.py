"""Recovery: give a job back to every run that should progress but has none.

A run can be left without a job when its job was dead-lettered, or when rows were
edited by hand. ``recover_runs`` scans live runs in id order, in batches, asks the
backend which of them have a job, and for each one without gives it the job
:func:`durable_sa.core.decide.decide_recovery` chooses, in a transaction that re-locks
and re-checks the run (so two operators recovering at once enqueue one job).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from sqlalchemy import select

from durable_sa.core.decide import decide_recovery
from durable_sa.core.status import RunStatus
from durable_sa.queue import dead_letters
from durable_sa.store.models import runs_table
from durable_sa.store.queries import lock_run
from durable_sa.telemetry.log_fields import run_fields
from durable_sa.telemetry.tracing import tracing

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from durable_sa.engine.shell import Shell

logger = logging.getLogger(__name__)

RECOVER_BATCH: Final = 500
_LIVE: Final = (
    RunStatus.PENDING,  # a debounced run has a begin job; one under a limit needs none
    RunStatus.RUNNING,
    RunStatus.COMPENSATING,
    RunStatus.SUSPENDED,
)


def recover_runs(shell: Shell, *, batch: int = RECOVER_BATCH) -> int:
    """Enqueue a job for each live run that has none; how many runs got one."""
    recovered = 0
    after_id = 0
    while True:
        with shell.reading() as session:
            candidates = [
                int(r)
                for r in session.execute(
                    select(runs_table.c.id)
                    .where(runs_table.c.id > after_id, runs_table.c.status.in_(_LIVE))
                    .order_by(runs_table.c.id)
                    .limit(batch)
                ).scalars()
            ]
            if not candidates:
                return recovered
            after_id = candidates[-1]
            live = shell.backend.live_run_ids(session, candidates)
        for candidate in candidates:
            if candidate not in live and recover_run(shell, candidate):
                recovered += 1


def recover_run(shell: Shell, run_id: int) -> bool:
    """Give run ``run_id`` its job if it is live and has none; whether it got one."""

    def work(tx: Session) -> bool:
        locked = lock_run(tx, run_id)
        if locked is None or shell.backend.live_run_ids(tx, [run_id]):
            return False
        job = decide_recovery(locked, now=shell.now())
        if job is None:
            return False
        with tracing.recovery(locked, job.kind):  # in the run's trace, linked to the caller
            shell.backend.enqueue(tx, [job])
        dead_letters.resolve_runs(tx, [run_id], by=dead_letters.RECOVER, now=shell.now())
        logger.info(
            "run %s recovered with a %s job",
            run_id,
            job.kind,
            extra={
                **run_fields(locked, attempt=getattr(job.payload, "attempt", None)),
                "action": "recover",
                "job_kind": job.kind,
            },
        )
        return True

    return shell.transaction(work)
