"""What the engine's public methods return: small frozen values."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import attrs

# Schedules' values, defined beside the decisions that make them; results live here.
from durable_sa.core.schedules import FiredTick, Overlap, ScheduleInfo
from durable_sa.core.status import RunStatus


@attrs.frozen(kw_only=True)
class StartResult:
    """A started run. ``created`` is False when an idempotency key found an existing run."""

    run_id: int
    status: RunStatus
    created: bool = True


class ResumeReason(enum.StrEnum):
    """Why a ``resume`` was accepted or not; members compare equal to their names."""

    ACCEPTED = "accepted"
    """The run waited for that signal: it got it and goes on."""
    NOT_WAITING = "not_waiting"
    """The run is running, sleeping, or suspended on another signal (or a child): nothing
    changed. ``send`` keeps such a signal for the run's next wait instead."""
    TERMINAL = "terminal"
    """The run has ended (completed, failed or canceled), or will never wait again (its
    steps are done and only its ``on_finish`` hook is left, or it is rolling back):
    nothing changed."""


def _resume_reason(result: ResumeResult) -> ResumeReason:
    if result.accepted:
        return ResumeReason.ACCEPTED
    return ResumeReason.TERMINAL if result.status.is_terminal else ResumeReason.NOT_WAITING


@attrs.frozen(kw_only=True)
class ResumeResult:
    """Whether a signal was accepted, why, and the run's status afterwards."""

    accepted: bool
    status: RunStatus
    reason: ResumeReason = attrs.field(
        default=attrs.Factory(_resume_reason, takes_self=True), converter=ResumeReason
    )
    """``"accepted"``, ``"not_waiting"`` or ``"terminal"`` (from ``accepted`` and ``status``
    unless given)."""


@attrs.frozen(kw_only=True)
class SendResult:
    """What ``send`` did with a signal: delivered to a waiting run, or kept for its next wait."""

    run_id: int
    signal: str
    delivered: bool
    """True when the run waited for the signal and got it now (as ``resume`` would); False
    when it was buffered for the run's next ``wait_for_signal`` on it."""
    status: RunStatus
    """The run's status afterwards."""


@attrs.frozen(kw_only=True)
class CancelResult:
    """The runs a cancel moved to ``canceled`` (the run first, then its descendants)."""

    run_id: int
    canceled: tuple[int, ...] = ()


@attrs.frozen(kw_only=True)
class RunStatusSnapshot:
    """A run as an operator sees it, with its child runs (recursively)."""

    run_id: int
    workflow_name: str
    status: RunStatus
    current_step: int
    total_steps: int
    awaiting_signal: str | None
    """The signal ``resume`` accepts now: a signal step's signal, or an agent step's name."""
    wake_at: datetime | None
    results: dict[str, Any]
    error: str | None
    parent_run_id: int | None
    children: list[RunStatusSnapshot] = attrs.field(factory=list)
    workflow_version: str | None = None
    parent_step_id: str | None = None
    attempt: int = 1
    compensation_cursor: int | None = None
    result: dict[str, Any] | None = None
    idempotency_key: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    input: dict[str, Any] = attrs.field(factory=dict)
    """The input the run was started with."""
    wait_kind: str | None = None
    """What a suspended run waits for: ``"signal"``, ``"agent"`` or ``"child"``."""
    wait_step: str | None = None
    """The step that waits (``None`` unless suspended)."""
    stranded: str | None = None
    """Set while the run should progress but has no job because its job was
    dead-lettered: ``dead letter <id>: <error>``. ``recover()`` or requeueing that dead
    letter gets it going again."""
    waiting_for_version: str | None = None
    """Set while the run has work queued that no live worker can run: the definition
    version a worker must have (``workflow_version``) to take it."""
    waiting_reason: str | None = None
    """Why the run waits, when something other than its own steps holds it: for a
    ``pending`` run the limits it waits under (``limit of workflow 'w' (2/2 active)``,
    ``limit of key 'k' (1/1 active)``, both joined by ``and`` when both bind) or its
    debounce window; ``workflow paused`` for any run of a paused workflow that has not
    ended; for a running run whose step a rate limit deferred, the limit and when the
    step is due again (``rate limit 'api' (next at 2030-01-01T00:00:05+00:00)``)."""
    concurrency_key: str | None = None
    """The key the run's workflow's per-key limit counts it under."""
    priority: int = 0
    """Lower runs first: among pending runs, and the run's jobs among due jobs."""
    begin_at: datetime | None = None
    """A debounced run: when its window ends (a later start of its key moves it on)."""

    @property
    def is_terminal(self) -> bool:
        """True once the run is completed, failed or canceled."""
        return self.status.is_terminal


@attrs.frozen(kw_only=True)
class DeadLetterInfo:
    """A job that could not be run, with the reason."""

    id: int
    job_id: int
    queue: str
    kind: str
    run_id: int | None
    payload: Any
    attempts: int
    error: str
    failed_at: datetime
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    """``requeue`` or ``recover`` once the dead letter no longer holds a run back."""


class JobOutcome(enum.StrEnum):
    """What running one job did."""

    APPLIED = "applied"  # the job's decision was committed
    STALE = "stale"  # the job no longer matched its run: nothing to do
    DEAD_LETTERED = "dead_lettered"  # the job cannot be run; kept with its error
    RELEASED = "released"  # an unexpected error: the job will be retried
    DEFERRED = "deferred"  # no definition here for its run: offered again, no attempt used


@attrs.frozen(kw_only=True)
class PruneResult:
    """What a prune deleted (or, with ``dry_run``, would delete), row counts per table.

    ``batches`` is how many transactions the deletion took (or would take); each deleted
    at most ``batch_size`` runs, except that a tree larger than that gets one of its own.
    """

    runs: int = 0
    journal_entries: int = 0
    jobs: int = 0
    dead_letters: int = 0
    signals: int = 0
    """Buffered signals that no wait took (sent to a run that then ended)."""
    batches: int = 0
    dry_run: bool = False


__all__ = [
    "CancelResult",
    "DeadLetterInfo",
    "FiredTick",
    "JobOutcome",
    "Overlap",
    "PruneResult",
    "ResumeReason",
    "ResumeResult",
    "RunStatusSnapshot",
    "ScheduleInfo",
    "SendResult",
    "StartResult",
]
