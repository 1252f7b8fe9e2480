"""Tracing with OpenTelemetry: imported only when the ``otel`` extra is installed.

Spans go to the global tracer provider, looked up at each span, so an application may
set it after importing durable-sa (and a test may swap it). Until one is set (the API's
proxy provider), no span is made: a start stores the caller's current span context if
there is a valid one (so the trace still crosses processes), and a step costs one
lookup.

How a run is one trace, although it may last hours and be run by many workers:

- ``start()`` opens a short ``durable_sa.start <workflow>`` span, a child of the
  caller's current span (a new trace when there is none: a fired schedule, a start
  outside any span), current while the run row is inserted; its W3C context is stored
  on the row (``trace_context``) in the caller's transaction.
- every step attempt, on any worker, is a ``durable_sa.step <workflow>.<step>`` span
  whose parent is that stored context, current while the handler runs (the handler's
  own spans, SQLAlchemy's included, nest under it). A compensator is one too
  (``<step>#compensate``), and an ``on_finish`` hook (``#finish``). Retries and
  redeliveries after a crash are more children of the same parent, told apart by
  ``durable_sa.attempt``; a retry this process saw fail links to that attempt's span
  (:class:`_FailedAttempts`).
- ``recover()`` giving a run a job is a ``durable_sa.recover <workflow>`` span in the
  run's trace, linked to the span of whoever called it (the operator's request).
- a child run's start is a child of its parent run's stored context: one trace.

No span lasts the whole run: a span is ended by the process that started it, and a run
outlives processes. Its duration is from the start span to the last step span.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Final, Self

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, ProxyTracerProvider, SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from durable_sa.core.outcomes import Failed
from durable_sa.telemetry import spans
from durable_sa.telemetry.spans import NO_STEP_SPAN, RunStart, StepSpan, Tracing

if TYPE_CHECKING:
    from contextvars import Token
    from types import TracebackType

    from opentelemetry.trace import Span, SpanContext, Tracer, TracerProvider

    from durable_sa.core.codec import JSONObject
    from durable_sa.core.outcomes import StepOutcome
    from durable_sa.core.snapshot import RunSnapshot

_W3C: Final = TraceContextTextMapPropagator()
"""W3C trace context whatever propagator the application configured: the row's format
must not change with a process's settings."""

SCOPE: Final = "durable_sa"


def carrier_of(context: Context | None = None) -> JSONObject | None:
    """The W3C headers of ``context``'s span (the current one by default); ``None``: none."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier, context=context)
    return dict(carrier) or None


def context_of(carrier: JSONObject | None) -> Context | None:
    """The context a stored carrier continues (``None`` for none).

    Parsed contexts are kept (a ``Context`` never changes): a worker runs a run's steps
    one after another, each with the same stored context. The key is the two W3C
    headers themselves, the only ones :data:`_W3C` reads: no sorting on the hot path.
    """
    if not carrier:
        return None
    parent = carrier.get("traceparent")
    state = carrier.get("tracestate")
    return _parsed(
        parent if isinstance(parent, str) else None, state if isinstance(state, str) else None
    )


@functools.lru_cache(maxsize=256)
def _parsed(traceparent: str | None, tracestate: str | None) -> Context:
    headers = {"traceparent": traceparent, "tracestate": tracestate}
    return _W3C.extract({k: v for k, v in headers.items() if v is not None}, context=Context())


class _FailedAttempts:
    """The span contexts of the attempts this process saw fail, for their retry's link.

    What a retry can link to without a new write: the span of the attempt before it,
    when this process ran that attempt (one worker, or the same worker again). Kept per
    ``(run, unit)`` until the retry takes it, at most :data:`KEEP`; a retry run by
    another process has no link (its parent, the run's start, is the same either way).
    Written only when an attempt fails: the path of a step that succeeds pays nothing.
    """

    KEEP: Final = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failed: OrderedDict[tuple[int, str], SpanContext] = OrderedDict()

    def failed(self, run_id: int, unit: str, context: SpanContext) -> None:
        """Attempt of ``unit`` of run ``run_id`` in span ``context`` failed; it runs again."""
        with self._lock:
            self._failed[run_id, unit] = context
            if len(self._failed) > self.KEEP:
                self._failed.popitem(last=False)

    def retried(self, run_id: int, unit: str) -> SpanContext | None:
        """The failed attempt's span context a retry links to, if this process ran it."""
        with self._lock:
            return self._failed.pop((run_id, unit), None)


failed_attempts: Final = _FailedAttempts()


class OtelTracing(Tracing):
    """Spans through OpenTelemetry's global tracer provider."""

    def __init__(self) -> None:
        self._provider: TracerProvider | None = None
        self._tracer: Tracer | None = None

    def tracer(self) -> Tracer | None:
        """The tracer of the global provider; ``None`` while none is set."""
        provider = trace.get_tracer_provider()
        if isinstance(provider, ProxyTracerProvider):
            return None
        if provider is not self._provider:
            self._tracer = provider.get_tracer(SCOPE)
            self._provider = provider
        return self._tracer

    def run_start(
        self, workflow: str, inherited: JSONObject | None, *, parent_run_id: int | None = None
    ) -> RunStart:
        """A start span when a provider is set; else the context to hand on, if any."""
        tracer = self.tracer()
        if tracer is not None:
            return _OtelRunStart(tracer, workflow, inherited, parent_run_id)
        if inherited is not None:
            return RunStart(inherited)
        if trace.get_current_span().get_span_context().is_valid:
            return RunStart(carrier_of())
        return RunStart(None)

    def step(self, run: RunSnapshot, step: str, attempt: int) -> StepSpan:
        """The attempt's span, a child of the run's stored context."""
        tracer = self.tracer()
        if tracer is None:
            return NO_STEP_SPAN
        return _OtelStepSpan(tracer, run, step, attempt)

    def recovery(self, run: RunSnapshot, job_kind: str) -> StepSpan:
        """A span in the run's trace, linked to the caller's (the operator's) span."""
        tracer = self.tracer()
        if tracer is None:
            return NO_STEP_SPAN
        return _OtelRecoverySpan(tracer, run, job_kind)

    def current_ids(self) -> tuple[str, str] | None:
        """The current span's W3C ids, whether or not a provider records it."""
        span_context = trace.get_current_span().get_span_context()
        if not span_context.is_valid:
            return None
        return f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}"


class _OtelRunStart(RunStart):
    """The ``durable_sa.start`` span, current while the run row is inserted."""

    def __init__(
        self,
        tracer: Tracer,
        workflow: str,
        inherited: JSONObject | None,
        parent_run_id: int | None,
    ) -> None:
        attributes: dict[str, str | int] = {spans.WORKFLOW: workflow}
        if parent_run_id is not None:
            attributes[spans.PARENT_RUN_ID] = parent_run_id
        self._span = tracer.start_span(
            f"{spans.START_SPAN} {workflow}",
            context=context_of(inherited),
            kind=SpanKind.PRODUCER,
            attributes=attributes,
        )
        self._context = trace.set_span_in_context(self._span)
        self._token: Token[Context] | None = None
        super().__init__(carrier_of(self._context))

    def created(self, run_id: int | None) -> None:
        if run_id is None:
            self._span.set_attribute(spans.CREATED, value=False)
        else:
            self._span.set_attribute(spans.RUN_ID, run_id)

    def __enter__(self) -> Self:
        self._token = otel_context.attach(self._context)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            otel_context.detach(self._token)
        _end(self._span, exc)


class _OtelStepSpan(StepSpan):
    """The ``durable_sa.step`` span of one attempt, current while the handler runs."""

    def __init__(self, tracer: Tracer, run: RunSnapshot, step: str, attempt: int) -> None:
        self._tracer = tracer
        self._run = run
        self._step = step
        self._attempt = attempt
        self._span: Span | None = None
        self._token: Token[Context] | None = None

    def __enter__(self) -> Self:
        run = self._run
        links = None
        if self._attempt > 1 and (previous := failed_attempts.retried(run.id, self._step)):
            links = (Link(previous, {spans.LINK: "previous_attempt"}),)
        self._span = self._tracer.start_span(
            f"{spans.STEP_SPAN} {run.workflow_name}.{self._step}",
            context=context_of(run.trace_context),
            kind=SpanKind.CONSUMER,
            attributes={
                spans.WORKFLOW: run.workflow_name,
                spans.RUN_ID: run.id,
                spans.STEP: self._step,
                spans.ATTEMPT: self._attempt,
            },
            links=links,
        )
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self

    def record(self, outcome: StepOutcome, label: str) -> None:
        span = self._span
        if span is None:  # pragma: no cover - recorded inside the with block
            return
        span.set_attribute(spans.OUTCOME, label)
        if isinstance(outcome, Failed):
            _failed(span, outcome.failure, outcome.error_type, outcome.traceback)
            if label == "retry":
                failed_attempts.failed(self._run.id, self._step, span.get_span_context())

    def record_unit(self, label: str, error: str | None = None) -> None:
        span = self._span
        if span is None:  # pragma: no cover - recorded inside the with block
            return
        span.set_attribute(spans.OUTCOME, label)
        if error is not None:
            _failed(span, error, None, None)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            otel_context.detach(self._token)
        if self._span is not None:
            _end(self._span, exc)


class _OtelRecoverySpan(StepSpan):
    """``durable_sa.recover <workflow>``: a run given a job again, seen in its trace."""

    def __init__(self, tracer: Tracer, run: RunSnapshot, job_kind: str) -> None:
        caller = trace.get_current_span().get_span_context()
        links = (Link(caller, {spans.LINK: "recovered_by"}),) if caller.is_valid else None
        self._span = tracer.start_span(
            f"{spans.RECOVER_SPAN} {run.workflow_name}",
            context=context_of(run.trace_context),
            kind=SpanKind.PRODUCER,
            attributes={
                spans.WORKFLOW: run.workflow_name,
                spans.RUN_ID: run.id,
                spans.JOB_KIND: job_kind,
            },
            links=links,
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _end(self._span, exc)


def _failed(span: Span, error: str, error_type: str | None, traceback: str | None) -> None:
    """Mark ``span`` failed: its error attribute, an ``exception`` event, an error status."""
    span.set_attribute(spans.ERROR, error)
    if error_type is not None:
        span.set_attribute("error.type", error_type)
    span.add_event(
        "exception",
        {
            "exception.type": error_type or "",
            "exception.message": error,
            "exception.stacktrace": traceback or "",
        },
    )
    span.set_status(StatusCode.ERROR, error)


def _end(span: Span, exc: BaseException | None) -> None:
    """End ``span``; an exception that escapes the engine marks it as an error."""
    if exc is not None:
        span.record_exception(exc)
        span.set_status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}")
    span.end()
