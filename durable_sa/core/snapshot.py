"""Frozen views of what is stored: a run row, and one journal entry.

The shell reads rows into these values; the core decides over them and never sees a
database object.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Final

import attrs

from durable_sa.core.codec import JSONObject, JSONValue
from durable_sa.core.keys import RESERVED_PREFIX
from durable_sa.core.status import RunStatus


class JournalStatus(enum.StrEnum):
    """Whether a journaled unit completed or failed."""

    COMPLETED = "completed"
    FAILED = "failed"


class WaitKind(enum.StrEnum):
    """What a suspended run waits for."""

    SIGNAL = "signal"
    AGENT = "agent"
    CHILD = "child"


@attrs.frozen(kw_only=True)
class RunSnapshot:
    """One run row as the core sees it."""

    id: int
    workflow_name: str
    workflow_version: str | None = None
    status: RunStatus
    current_step: int = 0
    total_steps: int = 0
    attempt: int = 1
    compensation_cursor: int | None = None
    input: JSONObject = attrs.field(factory=dict)
    state: JSONObject = attrs.field(factory=dict)
    result: JSONObject | None = None
    parent_run_id: int | None = None
    parent_step_id: str | None = None
    awaiting_signal: str | None = None
    """The signal a suspended signal step waits for (only signals: an agent step waits
    under ``wait_step``)."""
    wait_kind: WaitKind | None = None
    """What a suspended run waits for: a signal, an agent's resume or a child run."""
    wait_step: str | None = None
    """The step that waits (the signal step, the agent step or the child step)."""
    resume_data: JSONValue = None
    """The payload of the last resume, for ``ctx.resume_data()`` until a step consumes it."""
    wake_at: datetime | None = None
    error: str | None = None
    revision: int = 0
    """Bumped by every write of the run row: a decision made on this snapshot may be
    applied without a lock exactly when the row still has this revision."""
    concurrency_key: str | None = None
    """The key a per-key limit counts the run under."""
    priority: int = 0
    """Lower runs first (pending runs, and the run's jobs among due jobs)."""
    limited: bool = False
    """The run's workflow had limits when it started: while active, it holds a place."""
    begin_at: datetime | None = None
    """A debounced run: when its window ends (the last start of its key plus the window)."""
    trace_context: JSONObject | None = None
    """The W3C trace context (``traceparent``, ``tracestate``) stored when the run started:
    opaque to the core, which only hands it on to a child run; the shell's tracing
    parents the run's step spans to it (:mod:`durable_sa.telemetry`)."""

    @property
    def holds_place(self) -> bool:
        """True when the run counts against its workflow's limits (begun, not ended)."""
        return self.limited and self.status is not RunStatus.PENDING and not self.status.is_terminal

    @property
    def public_results(self) -> JSONObject:
        """``state`` without the engine's own keys: what ``ctx.results`` shows."""
        return {k: v for k, v in self.state.items() if not k.startswith(RESERVED_PREFIX)}

    @property
    def waiting_for(self) -> WaitInfo | None:
        """What this run waits for while suspended, if anything."""
        if self.wait_kind is None or self.wait_step is None:
            return None
        return WaitInfo(kind=self.wait_kind, step=self.wait_step, signal=self.awaiting_signal)

    @property
    def resume_signal(self) -> str | None:
        """The signal ``resume`` accepts now: a signal step's signal, an agent step's name."""
        if self.wait_kind is WaitKind.AGENT:
            return self.wait_step
        return self.awaiting_signal if self.wait_kind is WaitKind.SIGNAL else None


@attrs.frozen(kw_only=True)
class WaitInfo:
    """What a suspended run waits for, as its three wait columns hold it."""

    kind: WaitKind
    step: str
    signal: str | None = None

    def columns(self) -> dict[str, str | None]:
        """The run fields that record this wait (``RunSnapshot``'s names)."""
        return {"wait_kind": self.kind, "wait_step": self.step, "awaiting_signal": self.signal}


NOT_WAITING: Final[dict[str, str | None]] = {
    "wait_kind": None,
    "wait_step": None,
    "awaiting_signal": None,
}
"""The run fields of a run that waits for nothing."""


@attrs.frozen(kw_only=True)
class BufferedSignal:
    """A signal sent to a run that was not waiting for it, kept for its next wait (FIFO)."""

    id: int
    """Its row's id: buffered signals of one name are taken in id order."""
    signal: str
    data: JSONValue = None


@attrs.frozen(kw_only=True)
class JournalRecord:
    """A journaled unit as read back: ``step_id`` is a step, ``step#entry``, ``step#iterN``..."""

    step_id: str
    status: JournalStatus
    result: JSONValue = None
    error: str | None = None
    attempt: int = 1
    error_type: str | None = None
    """A failed unit's exception type."""
    traceback: str | None = None
    """A failed unit's traceback, bounded (written, not read back by the engine)."""

    @property
    def completed(self) -> bool:
        """True when the unit completed (its result can be reused)."""
        return self.status is JournalStatus.COMPLETED


JournalWrite = JournalRecord
"""A journal row to insert; the same shape as a row read back."""
