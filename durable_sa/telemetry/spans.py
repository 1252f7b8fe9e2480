"""What the engine asks of tracing, and the answer that does nothing.

The engine's shell opens two kinds of span: a run's start (in the caller's transaction,
where the trace context to store on the run row is made) and a step attempt (around the
user code, wherever and whenever a worker runs it). This module names their attributes
and gives the do-nothing versions, used when OpenTelemetry is not installed or no
tracer provider is set: shared objects, so the hot path pays one method call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Self

if TYPE_CHECKING:
    from types import TracebackType

    from durable_sa.core.codec import JSONObject
    from durable_sa.core.outcomes import StepOutcome
    from durable_sa.core.snapshot import RunSnapshot

WORKFLOW: Final = "durable_sa.workflow"
RUN_ID: Final = "durable_sa.run_id"
PARENT_RUN_ID: Final = "durable_sa.parent_run_id"
STEP: Final = "durable_sa.step"
ATTEMPT: Final = "durable_sa.attempt"
OUTCOME: Final = "durable_sa.outcome"
"""``advance``, ``sleep``, ``await_signal``, ..., or for a failed attempt ``retry`` (it
runs again) or ``compensate`` (the run rolls back). A compensator's span
(``<step>#compensate``): ``compensated`` or ``compensate_failed`` (the rollback goes on);
an ``on_finish`` hook's (``#finish``): ``finished``, ``retry`` or ``finish_failed`` (the
run ends without the hook's writes)."""
ERROR: Final = "durable_sa.error"
"""A failed attempt's error, ``Type: message`` as stored on the run."""
CREATED: Final = "durable_sa.created"
"""On a start span: False when the idempotency key named an existing run."""

JOB_KIND: Final = "durable_sa.job_kind"
"""On a recovery span: the kind of job the run was given (``advance``, ``compensate``...)."""
LINK: Final = "durable_sa.link"
"""On a span link: what the linked span is (``previous_attempt``, ``recovered_by``)."""

START_SPAN: Final = "durable_sa.start"
STEP_SPAN: Final = "durable_sa.step"
RECOVER_SPAN: Final = "durable_sa.recover"


class RunStart:
    """A run's start while its row is inserted: the trace context to store on the row.

    Used as a context manager around the insert; ``created`` tells what it inserted.
    This do-nothing version stores the context it was given (a child's parent's).
    """

    def __init__(self, carrier: JSONObject | None) -> None:
        self.carrier = carrier
        """The W3C trace context (``traceparent``, ``tracestate``) for the run row."""

    def created(self, run_id: int | None) -> None:
        """The insert made run ``run_id`` (``None``: its idempotency key existed)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


class StepSpan:
    """A step attempt's span, current while the handler runs. This one does nothing.

    A compensator and an ``on_finish`` hook are attempts too, of the units
    ``<step>#compensate`` and ``#finish``: same span, same attributes.
    """

    def record(self, outcome: StepOutcome, label: str) -> None:
        """The attempt ended with ``outcome``, named ``label`` (see :data:`OUTCOME`)."""

    def record_unit(self, label: str, error: str | None = None) -> None:
        """A compensator's attempt ended as ``label``; ``error``: what it raised."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


NO_STEP_SPAN: Final = StepSpan()


class Tracing:
    """The engine's tracing; this base records nothing (OpenTelemetry is not installed)."""

    def run_start(
        self, workflow: str, inherited: JSONObject | None, *, parent_run_id: int | None = None
    ) -> RunStart:
        """The start of a run of ``workflow``: a child hands on its parent's context."""
        del workflow, parent_run_id
        return RunStart(inherited)

    def step(self, run: RunSnapshot, step: str, attempt: int) -> StepSpan:
        """The span of ``attempt`` of ``run``'s ``step``, joined to the run's trace."""
        del run, step, attempt
        return NO_STEP_SPAN

    def recovery(self, run: RunSnapshot, job_kind: str) -> StepSpan:
        """The span of ``recover()`` giving ``run`` a ``job_kind`` job, in the run's trace."""
        del run, job_kind
        return NO_STEP_SPAN

    def current_ids(self) -> tuple[str, str] | None:
        """The current span's trace and span ids (hex), for log records; ``None``: none."""
        return None
