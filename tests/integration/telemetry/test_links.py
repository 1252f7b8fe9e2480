"""Retries and recoveries are linked: what each span can point to without a new write.

- a retry run by the process that saw its attempt fail links to that attempt's span;
- ``recover()`` giving a run a job is a span in the run's trace, linked to the span of
  whoever called it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from durable_sa import Durable, DurableContext, RunStatus, durable
from durable_sa.models import Job
from durable_sa.telemetry.otel import failed_attempts
from durable_sa.testing import drain
from tests.integration.helpers import far_future
from tests.integration.telemetry.test_traces import by_name, parent_id

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def test_a_retry_links_to_the_attempt_it_retries(
    engine: Durable, spans: InMemorySpanExporter
) -> None:
    def flaky(ctx: DurableContext) -> str:
        if ctx.attempt < 3:
            msg = f"timeout {ctx.attempt}"
            raise TimeoutError(msg)
        return "ok"

    durable("linked").step("call", flaky, max_retries=3).step(
        "tx", lambda ctx: 1, transactional=True
    )
    with trace.get_tracer("the-app").start_as_current_span("request"):
        run_id = engine.start("linked").run_id
    drain(engine, now=far_future())
    assert engine.status(run_id).status is RunStatus.COMPLETED

    first, second, third = sorted(
        by_name(spans)["durable_sa.step linked.call"],
        key=lambda s: (s.attributes or {})["durable_sa.attempt"],
    )
    assert first.links == ()
    (to_first,) = second.links
    assert to_first.context.span_id == first.context.span_id
    assert dict(to_first.attributes or {}) == {"durable_sa.link": "previous_attempt"}
    (to_second,) = third.links
    assert to_second.context.span_id == second.context.span_id
    assert parent_id(first) == parent_id(second) == parent_id(third)  # the run's start
    (tx,) = by_name(spans)["durable_sa.step linked.tx"]
    assert tx.links == ()  # a first attempt links to nothing
    assert failed_attempts.retried(run_id, "call") is None  # taken by the retry


def test_a_retry_another_process_saw_fail_has_no_link(
    engine: Durable, spans: InMemorySpanExporter
) -> None:
    def once(ctx: DurableContext) -> int:
        if ctx.attempt == 1:
            msg = "first try"
            raise ValueError(msg)
        return 1

    durable("elsewhere").step("call", once, max_retries=2)
    run_id = engine.start("elsewhere").run_id
    drain(engine, max=1)
    assert failed_attempts.retried(run_id, "call") is not None  # forget it: "another worker"
    drain(engine, now=far_future())
    second = max(
        by_name(spans)["durable_sa.step elsewhere.call"],
        key=lambda s: (s.attributes or {})["durable_sa.attempt"],
    )
    assert second.links == ()
    assert dict(second.attributes or {})["durable_sa.outcome"] == "advance"


def test_a_recovery_is_a_span_in_the_runs_trace_linked_to_its_caller(
    engine: Durable, spans: InMemorySpanExporter
) -> None:
    durable("recovered").step("one", lambda ctx: 1)
    tracer = trace.get_tracer("the-app")
    with tracer.start_as_current_span("POST /orders") as request:
        run_id = engine.start("recovered").run_id
    with engine.sa_engine.begin() as conn:  # its job was lost: rows edited by hand
        conn.execute(sa.delete(Job.__table__))
    with tracer.start_as_current_span("operator: recover") as operator:
        assert engine.recover() == 1
    drain(engine)

    found = by_name(spans)
    (start,) = found["durable_sa.start recovered"]
    (recovery,) = found["durable_sa.recover recovered"]
    (step,) = found["durable_sa.step recovered.one"]
    assert recovery.context.trace_id == request.get_span_context().trace_id
    assert parent_id(recovery) == start.context.span_id
    assert recovery.kind is SpanKind.PRODUCER
    assert dict(recovery.attributes or {}) == {
        "durable_sa.workflow": "recovered",
        "durable_sa.run_id": run_id,
        "durable_sa.job_kind": "advance",
    }
    (link,) = recovery.links
    assert link.context.span_id == operator.get_span_context().span_id
    assert link.context.trace_id == operator.get_span_context().trace_id
    assert dict(link.attributes or {}) == {"durable_sa.link": "recovered_by"}
    assert parent_id(step) == start.context.span_id


def test_a_recovery_outside_any_span_has_no_link(
    engine: Durable, spans: InMemorySpanExporter
) -> None:
    durable("recovered-quietly").step("one", lambda ctx: 1)
    engine.start("recovered-quietly")
    with engine.sa_engine.begin() as conn:
        conn.execute(sa.delete(Job.__table__))
    assert engine.recover() == 1
    (recovery,) = by_name(spans)["durable_sa.recover recovered-quietly"]
    assert recovery.links == ()
    assert recovery.parent is not None  # the run's start span, a trace of its own
