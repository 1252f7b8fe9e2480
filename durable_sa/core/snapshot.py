"""Frozen views of what is stored: a run row, and one journal entry.

The shell reads rows into these values; the core decides over them and never sees a
database object.
"""

from __future__ import annotations

import enum
from datetime import datetime

import attrs

from durable_sa.core.codec import JSONObject, JSONValue
from durable_sa.core.keys import RESERVED_PREFIX, WAIT_KEY
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
    wake_at: datetime | None = None
    error: str | None = None
    revision: int = 0
    """Bumped by every write of the run row: a decision made on this snapshot may be
    applied without a lock exactly when the row still has this revision."""

    @property
    def public_results(self) -> JSONObject:
        """``state`` without the engine's own keys: what ``ctx.results`` shows."""
        return {k: v for k, v in self.state.items() if not k.startswith(RESERVED_PREFIX)}

    @property
    def waiting_for(self) -> WaitInfo | None:
        """What this run waits for while suspended, if recorded."""
        raw = self.state.get(WAIT_KEY)
        if not isinstance(raw, dict):
            return None
        kind, step = raw.get("kind"), raw.get("step")
        if kind not in WaitKind.__members__.values() or not isinstance(step, str):
            return None
        signal = raw.get("signal")
        return WaitInfo(
            kind=WaitKind(str(kind)),
            step=step,
            signal=signal if isinstance(signal, str) else None,
        )


@attrs.frozen(kw_only=True)
class WaitInfo:
    """What a suspended run waits for (stored under :data:`~durable_sa.core.keys.WAIT_KEY`)."""

    kind: WaitKind
    step: str
    signal: str | None = None

    def to_json(self) -> JSONObject:
        """The stored form."""
        data: JSONObject = {"kind": str(self.kind), "step": self.step}
        if self.signal is not None:
            data["signal"] = self.signal
        return data


@attrs.frozen(kw_only=True)
class JournalRecord:
    """A journaled unit as read back: ``step_id`` is a step, ``step#entry``, ``step#iterN``..."""

    step_id: str
    status: JournalStatus
    result: JSONValue = None
    error: str | None = None
    attempt: int = 1

    @property
    def completed(self) -> bool:
        """True when the unit completed (its result can be reused)."""
        return self.status is JournalStatus.COMPLETED


JournalWrite = JournalRecord
"""A journal row to insert; the same shape as a row read back."""
