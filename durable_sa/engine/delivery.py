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

from sqlalchemy.exc import DBAPIError

from durable_sa.execute.failures import describe
from durable_sa.results import JobOutcome
from durable_sa.store.queries import load_run
from durable_sa.telemetry.log_fields import job_fields

if TYPE_CHECKING:
    from durable_sa.core.snapshot import RunSnapshot
    from durable_sa.engine.shell import Shell
    from durable_sa.queue.protocol import ClaimedJob

logger = logging.getLogger("durable_sa.engine.runner")
"""The runner's logger, whichever of its modules writes: log filters keep working."""

_RELEASE_BACKOFF: Final = timedelta(seconds=2)
DEFER_DELAY: Final = timedelta(seconds=5)
"""How long a job that no consumer here can run waits before it is offered again."""


def _known_run(shell: Shell, claimed: ClaimedJob, run: RunSnapshot | None) -> RunSnapshot | None:
    """The job's run for a record: as given, being handled, or read.

    Read only off the hot path: a job given back before its run was read (a dead letter,
    an unexpected error, a definition this process lacks); a rate limit's or a pause's
    defer is given the run it holds back.

    ``None`` when the job names no run, the run is gone, or the database cannot say.
    """
    if run is not None or claimed.run_id is None:
        return run
    try:
        with shell.reading() as session:
            return load_run(session, claimed.run_id)
    except Exception:  # noqa: BLE001 - the record goes out without the run's fields
        return None


def _fields(claimed: ClaimedJob, run: RunSnapshot | None, action: str) -> dict[str, object]:
    """A record's extras: what it did and the job's run fields."""
    return job_fields(
        claimed.run_id, claimed.kind, claimed.payload, run, job_id=claimed.id, action=action
    )


def job_failed(
    shell: Shell, claimed: ClaimedJob, exc: BaseException, *, run: RunSnapshot | None = None
) -> JobOutcome:
    """An unexpected error (a lost connection, a bug) ran the job: give it back for later.

    The job is released with a growing delay, or dead-lettered once its attempts are used
    up. If even that fails (the database is gone), its lease runs out instead.
    """
    error = describe(exc)
    if not isinstance(exc, DBAPIError):  # a failing database would only make it wait
        run = _known_run(shell, claimed, run)
    logger.error(
        "job %s (%s, run %s) failed: %s",
        claimed.id,
        claimed.kind,
        claimed.run_id,
        error,
        exc_info=exc,
        extra=_fields(claimed, run, "job_error"),
    )
    if claimed.attempts >= claimed.max_attempts:
        return _dead_letter(shell, claimed, error, run)  # the run looked up once
    retry_at = shell.now() + _RELEASE_BACKOFF * 2 ** (claimed.attempts - 1)
    try:
        shell.backend.release(claimed, error=error, retry_at=retry_at)
    except Exception:  # the database is gone: the lease runs out instead
        logger.exception(
            "could not release job %s", claimed.id, extra=_fields(claimed, run, "release_failed")
        )
    return JobOutcome.RELEASED


def defer(  # noqa: PLR0913 - the job, why, and keyword options
    shell: Shell,
    claimed: ClaimedJob,
    reason: str,
    *,
    delay: timedelta = DEFER_DELAY,
    level: int = logging.WARNING,
    run: RunSnapshot | None = None,
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
    run = _known_run(shell, claimed, run)
    logger.log(
        level,
        "job %s (%s, run %s) deferred: %s",
        claimed.id,
        claimed.kind,
        claimed.run_id,
        reason,
        extra=_fields(claimed, run, "defer"),
    )
    try:
        shell.backend.defer(claimed, until=shell.now() + delay, reason=reason)
    except Exception:  # the database is gone: the lease runs out and the job comes back
        logger.exception(
            "could not defer job %s", claimed.id, extra=_fields(claimed, run, "defer_failed")
        )
        return JobOutcome.RELEASED
    return JobOutcome.DEFERRED


def dead_letter(
    shell: Shell, claimed: ClaimedJob, error: str, *, run: RunSnapshot | None = None
) -> JobOutcome:
    """Move ``claimed`` to the dead letters with ``error`` (its run stays as it is)."""
    return _dead_letter(shell, claimed, error, _known_run(shell, claimed, run))


def _dead_letter(
    shell: Shell, claimed: ClaimedJob, error: str, run: RunSnapshot | None
) -> JobOutcome:
    logger.error(
        "job %s (%s, run %s) dead-lettered: %s",
        claimed.id,
        claimed.kind,
        claimed.run_id,
        error,
        extra=_fields(claimed, run, "dead_letter"),
    )
    try:
        shell.backend.dead_letter(claimed, error=error)
    except Exception:  # the database is gone: the lease runs out and the job comes back
        logger.exception(
            "could not dead-letter job %s",
            claimed.id,
            extra=_fields(claimed, run, "dead_letter_failed"),
        )
        return JobOutcome.RELEASED
    return JobOutcome.DEAD_LETTERED
