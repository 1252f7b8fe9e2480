"""The delivery policy: what becomes of a job that cannot be applied, on every backend.

A malformed job, or one whose attempts ran out (it crashed its consumer each time), is
dead-lettered, leaving the run untouched for ``recover`` (:func:`dead_letter`); a job
whose run's workflow or pinned definition version this process does not have is
deferred: offered again later, no attempt used, never dead-lettered (:func:`defer`); an
unexpected error (a lost connection) gives the job back for a retry, which uses an
attempt (:func:`job_failed`). Each of them survives a database that is gone: the job's
lease then runs out and it comes back.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from durable_sa.execute.failures import describe
from durable_sa.results import JobOutcome

if TYPE_CHECKING:
    from durable_sa.engine.shell import Shell
    from durable_sa.queue.protocol import ClaimedJob

logger = logging.getLogger("durable_sa.engine.runner")
"""The runner's logger, whichever of its modules writes: log filters keep working."""

_RELEASE_BACKOFF: Final = timedelta(seconds=2)
DEFER_DELAY: Final = timedelta(seconds=5)
"""How long a job that no consumer here can run waits before it is offered again."""


def job_failed(shell: Shell, claimed: ClaimedJob, exc: BaseException) -> JobOutcome:
    """An unexpected error (a lost connection, a bug) ran the job: give it back for later.

    The job is released with a growing delay, or dead-lettered once its attempts are used
    up. If even that fails (the database is gone), its lease runs out instead.
    """
    error = describe(exc)
    logger.error(
        "job %s (%s, run %s) failed: %s",
        claimed.id,
        claimed.kind,
        claimed.run_id,
        error,
        exc_info=exc,
        extra={"action": "job_error", "run_id": claimed.run_id},
    )
    if claimed.attempts >= claimed.max_attempts:
        return dead_letter(shell, claimed, error)
    retry_at = shell.now() + _RELEASE_BACKOFF * 2 ** (claimed.attempts - 1)
    try:
        shell.backend.release(claimed, error=error, retry_at=retry_at)
    except Exception:  # the database is gone: the lease runs out instead
        logger.exception("could not release job %s", claimed.id)
    return JobOutcome.RELEASED


def defer(
    shell: Shell,
    claimed: ClaimedJob,
    reason: str,
    *,
    delay: timedelta = DEFER_DELAY,
    level: int = logging.WARNING,
) -> JobOutcome:
    """Give back a job that may not run here now, for later, without using an attempt.

    The delivery policy, the same for every backend: such a job is never dead-lettered
    and uses none of its attempts. A job whose run's definition this process lacks is
    offered again after :data:`DEFER_DELAY`, so a worker that has the definition (a
    deploy in progress, another service's worker) runs it; ``durable-sa status`` shows a
    run that waits for a version no live worker has. A job of a paused workflow, or a
    step over its rate limit, is deferred the same way, by ``delay``
    (:mod:`durable_sa.engine.controls`), logged at ``level``.
    """
    logger.log(
        level,
        "job %s (%s, run %s) deferred: %s",
        claimed.id,
        claimed.kind,
        claimed.run_id,
        reason,
        extra={"action": "defer", "run_id": claimed.run_id},
    )
    try:
        shell.backend.defer(claimed, until=shell.now() + delay, reason=reason)
    except Exception:  # the database is gone: the lease runs out and the job comes back
        logger.exception("could not defer job %s", claimed.id)
        return JobOutcome.RELEASED
    return JobOutcome.DEFERRED


def dead_letter(shell: Shell, claimed: ClaimedJob, error: str) -> JobOutcome:
    """Move ``claimed`` to the dead letters with ``error`` (its run stays as it is)."""
    logger.error(
        "job %s (%s, run %s) dead-lettered: %s",
        claimed.id,
        claimed.kind,
        claimed.run_id,
        error,
        extra={"action": "dead_letter", "run_id": claimed.run_id},
    )
    try:
        shell.backend.dead_letter(claimed, error=error)
    except Exception:  # the database is gone: the lease runs out and the job comes back
        logger.exception("could not dead-letter job %s", claimed.id)
        return JobOutcome.RELEASED
    return JobOutcome.DEAD_LETTERED
