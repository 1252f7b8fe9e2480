"""Compensators and ``on_finish`` hooks are traced like step attempts, on both databases.

A compensator runs as the unit ``<step>#compensate`` and a hook as ``#finish``: each gets
a ``durable_sa.step`` span, a child of the run's stored context, with the step span's
attributes (workflow, run id, unit as the step, attempt, outcome, error).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace import StatusCode

from durable_sa import Durable, DurableContext, RunStatus, durable
from durable_sa.testing import drain
from tests.integration.helpers import far_future
from tests.integration.telemetry.test_traces import by_name, parent_id

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def _decline(ctx: DurableContext) -> None:
    msg = "card declined"
    raise RuntimeError(msg)


def test_compensators_have_spans_of_their_own(engine: Durable, spans: InMemorySpanExporter) -> None:
    undone: list[str] = []

    def refund_fails(ctx: DurableContext) -> None:
        msg = "bank is down"
        raise ConnectionError(msg)

    durable("saga-traced").step(
        "reserve", lambda ctx: 1, compensate=lambda ctx: undone.append("reserve")
    ).step("ship", lambda ctx: 2, compensate=lambda ctx: undone.append("ship"),
           transactional=True).step(
        "pay", lambda ctx: 3, compensate=refund_fails
    ).step("charge", _decline, max_retries=1)  # fmt: skip
    with trace.get_tracer("the-app").start_as_current_span("checkout") as request:
        run_id = engine.start("saga-traced").run_id
    drain(engine, now=far_future())

    assert engine.status(run_id).status is RunStatus.FAILED
    assert undone == ["ship", "reserve"]
    found = by_name(spans)
    (start,) = found["durable_sa.start saga-traced"]
    (reserve,) = found["durable_sa.step saga-traced.reserve#compensate"]
    (ship,) = found["durable_sa.step saga-traced.ship#compensate"]  # a transactional one
    (pay,) = found["durable_sa.step saga-traced.pay#compensate"]
    trace_id = request.get_span_context().trace_id
    for span in (reserve, ship, pay):
        assert span.context.trace_id == trace_id
        assert parent_id(span) == start.context.span_id
    assert dict(reserve.attributes or {}) == {
        "durable_sa.workflow": "saga-traced",
        "durable_sa.run_id": run_id,
        "durable_sa.step": "reserve#compensate",
        "durable_sa.attempt": 1,
        "durable_sa.outcome": "compensated",
    }
    assert dict(ship.attributes or {})["durable_sa.outcome"] == "compensated"
    assert reserve.status.status_code is StatusCode.UNSET
    failed = dict(pay.attributes or {})
    assert failed["durable_sa.outcome"] == "compensate_failed"
    assert failed["durable_sa.error"] == "ConnectionError: bank is down"
    assert pay.status.status_code is StatusCode.ERROR
    assert [event.name for event in pay.events] == ["exception"]
    # the order of the spans is the rollback's: the last completed step first
    assert pay.start_time is not None
    assert ship.start_time is not None
    assert reserve.start_time is not None
    assert pay.start_time < ship.start_time < reserve.start_time


def test_an_on_finish_hook_has_a_span_per_attempt(
    engine: Durable, spans: InMemorySpanExporter
) -> None:
    attempts: list[int] = []

    def record(ctx: DurableContext) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            msg = "audit table locked"
            raise TimeoutError(msg)

    durable("hooked").step("one", lambda ctx: 1).on_finish(record, max_retries=2)
    with trace.get_tracer("the-app").start_as_current_span("request") as request:
        run_id = engine.start("hooked").run_id
    drain(engine, now=far_future())

    assert engine.status(run_id).status is RunStatus.COMPLETED
    assert attempts == [1, 2]
    found = by_name(spans)
    (start,) = found["durable_sa.start hooked"]
    first, second = sorted(
        found["durable_sa.step hooked.#finish"],
        key=lambda s: (s.attributes or {})["durable_sa.attempt"],
    )
    for span in (first, second):
        assert span.context.trace_id == request.get_span_context().trace_id
        assert parent_id(span) == start.context.span_id
    assert dict(first.attributes or {}) == {
        "durable_sa.workflow": "hooked",
        "durable_sa.run_id": run_id,
        "durable_sa.step": "#finish",
        "durable_sa.attempt": 1,
        "durable_sa.outcome": "retry",
        "durable_sa.error": "TimeoutError: audit table locked",
        "error.type": "TimeoutError",
    }
    assert first.status.status_code is StatusCode.ERROR
    assert dict(second.attributes or {})["durable_sa.outcome"] == "finished"
    assert second.status.status_code is StatusCode.UNSET


def test_a_hooks_last_failed_attempt_says_so(engine: Durable, spans: InMemorySpanExporter) -> None:
    durable("hook-fails").step("one", lambda ctx: 1).on_finish(_decline, max_retries=1)
    run_id = engine.start("hook-fails").run_id
    drain(engine, now=far_future())
    assert engine.status(run_id).status is RunStatus.COMPLETED  # ends without its writes
    (span,) = by_name(spans)["durable_sa.step hook-fails.#finish"]
    assert dict(span.attributes or {})["durable_sa.outcome"] == "finish_failed"
