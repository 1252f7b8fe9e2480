"""What a queued job asks the engine to do: the payload of each job kind.

Rules:
- A job names its run and the exact position it is meant for (step index and attempt,
  compensation cursor, or awaited signal). A job whose position no longer matches the run
  is stale and does nothing, which is what makes redelivery harmless.
- Payloads are stored as JSON through the codec; a payload that does not structure into
  its class is malformed and raises :class:`PayloadError` (the job is dead-lettered).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import ClassVar, Final, TypeAlias

import attrs

from durable_sa.core.codec import JSONObject, from_json, to_json_object
from durable_sa.errors import PayloadError


def _non_negative(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        msg = f"{attribute.name} must be a non-negative integer, not {value!r}"
        raise ValueError(msg)


def _positive(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"{attribute.name} must be a positive integer, not {value!r}"
        raise ValueError(msg)


@attrs.frozen(kw_only=True)
class AdvanceJob:
    """Run step ``step_index`` of the run, as attempt ``attempt`` (1-based)."""

    kind: ClassVar[str] = "advance"
    run_id: int = attrs.field(validator=_positive)
    step_index: int = attrs.field(validator=_non_negative)
    attempt: int = attrs.field(default=1, validator=_positive)


@attrs.frozen(kw_only=True)
class CompensateJob:
    """Undo step ``index`` of a compensating run, then move the cursor down."""

    kind: ClassVar[str] = "compensate"
    run_id: int = attrs.field(validator=_positive)
    index: int = attrs.field(validator=_non_negative)


@attrs.frozen(kw_only=True)
class SignalTimeoutJob:
    """Fail step ``step_index`` if the run still waits there for ``signal``."""

    kind: ClassVar[str] = "signal_timeout"
    run_id: int = attrs.field(validator=_positive)
    step_index: int = attrs.field(validator=_non_negative)
    signal: str


@attrs.frozen(kw_only=True)
class FinishJob:
    """Run the workflow's ``on_finish`` hook and write the run's final status with it.

    Only runs of a workflow with an ``on_finish`` hook get one: their last decision
    journals what it must and leaves the final status pending (see
    :mod:`durable_sa.core.endings`); this job ends the run. ``attempt`` counts the hook's
    attempts, like a step's.
    """

    kind: ClassVar[str] = "finish"
    run_id: int = attrs.field(validator=_positive)
    attempt: int = attrs.field(default=1, validator=_positive)


@attrs.frozen(kw_only=True)
class BeginJob:
    """Begin a debounced run when its window has passed (or look again when it ends).

    Queued once, when the run is created, due at the end of its first window (``at``);
    a later start of the same key moves the run's ``begin_at`` on, and the job, finding
    ``begin_at`` later than its own ``at``, queues itself again for then. Comparing the
    two instants, not a clock, keeps the job from looking again before it is due.
    """

    kind: ClassVar[str] = "begin"
    run_id: int = attrs.field(validator=_positive)
    at: datetime


JobPayload: TypeAlias = AdvanceJob | CompensateJob | SignalTimeoutJob | FinishJob | BeginJob

JOB_KINDS: Final[Mapping[str, type[JobPayload]]] = {
    cls.kind: cls for cls in (AdvanceJob, CompensateJob, SignalTimeoutJob, FinishJob, BeginJob)
}


@attrs.frozen(kw_only=True)
class JobSpec:
    """A job to enqueue in the transaction that decided it, due at ``available_at``."""

    payload: JobPayload
    available_at: datetime
    workflow: str = ""
    """The run's workflow name: a worker claims only jobs of workflows it defines."""
    version: str | None = None
    """The run's pinned definition version: a worker claims only versions it has."""
    priority: int = 0
    """The run's priority: among due jobs of a queue, lower is claimed first."""

    @property
    def kind(self) -> str:
        """The payload's kind, stored in its own column."""
        return self.payload.kind

    @property
    def run_id(self) -> int:
        """The run the job drives, stored in its own column for lookups."""
        return self.payload.run_id


def encode_payload(payload: JobPayload) -> JSONObject:
    """The JSON stored for ``payload`` (its kind is stored beside it)."""
    return to_json_object(payload, what=f"{payload.kind} job payload")


def decode_payload(kind: str, data: object) -> JobPayload:
    """Structure a stored payload of ``kind``.

    Raises:
        PayloadError: unknown kind, or data that does not fit the kind's fields.

    """
    cls = JOB_KINDS.get(kind)
    if cls is None:
        msg = f"unknown job kind {kind!r}; expected one of {', '.join(sorted(JOB_KINDS))}"
        raise PayloadError(msg)
    if not isinstance(data, Mapping):
        msg = f"{kind} job payload is malformed: expected a JSON object, got {data!r}"
        raise PayloadError(msg)
    return from_json(data, cls, what=f"{kind} job payload")
