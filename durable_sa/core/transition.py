"""A transition: everything one decision changes, applied by the shell in one transaction.

A transition holds the run as it was (``before``) and as it must become (``after``); the
shell writes the columns that differ. Journal writes are unique per (run, step_id) and
a duplicate is a no-op. ``jobs`` are enqueued in the same transaction; ``drop_jobs``
discards the run's queued jobs first. ``spawn`` inserts a child run with its first job;
``settle_parent`` tells the shell to lock the parent next (child → parent order) and
apply the parent's own decision in the same transaction. ``take_buffered`` names the
signal the run now waits for: with the run row written (and so locked), the shell looks
for a signal already sent and buffered under that name and, if there is one, applies
the core's delivery of it in the same transaction; that delivery's ``consume_signal`` is
the buffered row it deletes.
"""

from __future__ import annotations

import enum
from datetime import datetime

import attrs

from durable_sa.core.admission import Limits
from durable_sa.core.codec import JSONObject
from durable_sa.core.jobs import JobSpec
from durable_sa.core.snapshot import JournalWrite, RunSnapshot
from durable_sa.core.status import RunEvent


class Settlement(enum.StrEnum):
    """How a child run ended, as its parent learns it."""

    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


@attrs.frozen(kw_only=True)
class ChildSpawn:
    """A child run to insert (running, at step 0) together with its first advance job."""

    workflow_name: str
    workflow_version: str | None
    total_steps: int
    input: JSONObject
    parent_run_id: int
    parent_step_id: str
    due: datetime
    """When the child's first step is due: the instant the parent decided to start it."""
    on_finish: bool = False
    """The child's workflow has an ``on_finish`` hook."""
    limits: Limits | None = None
    """The child's workflow's limits: the child starts ``pending`` if it is over them."""
    trace_context: JSONObject | None = None
    """The parent's stored trace context: the child joins the parent's trace."""


@attrs.frozen(kw_only=True)
class ParentSettlement:
    """A child reached a terminal state; its parent may be waiting for it."""

    parent_run_id: int
    child_run_id: int
    child_workflow: str
    child_step_id: str
    settlement: Settlement
    result: JSONObject | None = None
    error: str | None = None


@attrs.frozen(kw_only=True)
class Transition:
    """One decision, ready to apply atomically."""

    event: RunEvent
    before: RunSnapshot
    after: RunSnapshot
    journal: tuple[JournalWrite, ...] = ()
    jobs: tuple[JobSpec, ...] = ()
    drop_jobs: bool = False
    spawn: ChildSpawn | None = None
    settle_parent: ParentSettlement | None = None
    take_buffered: str | None = None
    """The signal a suspending run waits for: deliver the oldest one buffered, if any."""
    consume_signal: int | None = None
    """The id of the buffered signal this transition delivers (its row is deleted)."""

    @property
    def run_id(self) -> int:
        """The run this transition changes."""
        return self.before.id
