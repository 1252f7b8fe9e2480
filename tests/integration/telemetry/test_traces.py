"""OpenTelemetry traces: a run started under a span is one trace, whoever runs its steps.

In-process on both databases (``drain`` runs the production runner); the same with a
real worker process is ``tests/processes/test_traces_process.py``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags
from sqlalchemy.orm import Session

from durable_sa import Durable, DurableContext, WorkflowRun, durable
from durable_sa.testing import FakeClock, drain
from tests.integration.helpers import far_future

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def stored_context(engine: Durable, run_id: int) -> dict[str, str] | None:
    with Session(engine.sa_engine) as session:
        return session.scalar(sa.select(WorkflowRun.trace_context).where(WorkflowRun.id == run_id))


def by_name(spans: InMemorySpanExporter) -> dict[str, list[ReadableSpan]]:
    found: dict[str, list[ReadableSpan]] = {}
    for span in spans.get_finished_spans():
        found.setdefault(span.name, []).append(span)
    return found


def parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def test_a_run_started_under_a_span_is_one_trace(
    engine: Durable, spans: InMemorySpanExporter
) -> None:
    durable("traced").step("one", lambda ctx: 1).step("two", lambda ctx: 2)
    tracer = trace.get_tracer("the-app")
    with tracer.start_as_current_span("POST /orders") as request:
        run_id = engine.start("traced", {"n": 1}).run_id
    drain(engine)

    found = by_name(spans)
    (root,) = found["POST /orders"]
    (start,) = found["durable_sa.start traced"]
    (one,) = found["durable_sa.step traced.one"]
    (two,) = found["durable_sa.step traced.two"]
    trace_id = request.get_span_context().trace_id
    assert {s.context.trace_id for s in (root, start, one, two)} == {trace_id}
    assert parent_id(start) == root.context.span_id
    assert parent_id(one) == parent_id(two) == start.context.span_id
    assert start.kind is SpanKind.PRODUCER
    assert one.kind is SpanKind.CONSUMER
    assert dict(start.attributes or {}) == {
        "durable_sa.workflow": "traced",
        "durable_sa.run_id": run_id,
    }
    assert dict(one.attributes or {}) == {
        "durable_sa.workflow": "traced",
        "durable_sa.run_id": run_id,
        "durable_sa.step": "one",
        "durable_sa.attempt": 1,
        "durable_sa.outcome": "advance",
    }
    assert two.status.status_code is StatusCode.UNSET
    # the W3C context on the run row is the start span's
    stored = stored_context(engine, run_id)
    assert stored is not None
    assert stored["traceparent"].startswith(f"00-{trace_id:032x}-{start.context.span_id:016x}-")


def test_the_context_is_stored_in_the_callers_transaction(
    engine: Durable, spans: InMemorySpanExporter
) -> None:
    durable("in-tx").step("one", lambda ctx: 1)
    tracer = trace.get_tracer("the-app")
    with Session(engine.sa_engine) as session, tracer.start_as_current_span("handler") as parent:
        run_id = engine.start("in-tx", session=session).run_id
        session.commit()
    stored = stored_context(engine, run_id)
    assert stored is not None
    assert f"-{parent.get_span_context().trace_id:032x}-" in stored["traceparent"]


def test_a_rolled_back_start_leaves_no_context_and_an_ended_start_span(
    engine: Durable, spans: InMemorySpanExporter
) -> None:
    durable("in-tx").step("one", lambda ctx: 1)
    tracer = trace.get_tracer("the-app")
    with tracer.start_as_current_span("committed"):
        kept = engine.start("in-tx").run_id
    with (
        Session(engine.sa_engine) as session,
        tracer.start_as_current_span("rolled back") as parent,
    ):
        run_id = engine.start("in-tx", session=session).run_id
        # ended when start() returned: it cannot know what the caller does next
        (start,) = [
            s
            for s in by_name(spans)["durable_sa.start in-tx"]
            if s.parent == parent.get_span_context()
        ]
        session.rollback()
    trace_id = parent.get_span_context().trace_id
    assert start.context.trace_id == trace_id
    assert dict(start.attributes or {})["durable_sa.run_id"] == run_id
    assert start.status.status_code is StatusCode.UNSET
    # the context went with the row: no run carries the rolled-back trace
    with Session(engine.sa_engine) as session:
        stored = dict(session.execute(sa.select(WorkflowRun.id, WorkflowRun.trace_context)).all())
    assert set(stored) == {kept}
    assert f"-{trace_id:032x}-" not in stored[kept]["traceparent"]
    drain(engine)
    (one,) = by_name(spans)["durable_sa.step in-tx.one"]  # the kept run's; none in the other trace
    assert one.context.trace_id != trace_id


def test_a_failed_attempt_is_an_error_span_and_its_retry_a_sibling(
    engine: Durable, spans: InMemorySpanExporter
) -> None:
    calls: list[int] = []

    def flaky(ctx: DurableContext) -> str:
        calls.append(ctx.attempt)
        if ctx.attempt == 1:
            msg = "card declined"
            raise ValueError(msg)
        return "ok"

    durable("retried").step("charge", flaky, max_retries=3)
    with trace.get_tracer("the-app").start_as_current_span("checkout"):
        engine.start("retried")
    drain(engine, now=far_future())

    first, second = sorted(
        by_name(spans)["durable_sa.step retried.charge"],
        key=lambda s: (s.attributes or {})["durable_sa.attempt"],
    )
    assert calls == [1, 2]
    assert parent_id(first) == parent_id(second)  # both children of the run's start
    assert first.context.trace_id == second.context.trace_id
    attributes = dict(first.attributes or {})
    assert attributes["durable_sa.attempt"] == 1
    assert attributes["durable_sa.outcome"] == "retry"
    assert attributes["durable_sa.error"] == "ValueError: card declined"
    assert attributes["error.type"] == "ValueError"
    assert first.status.status_code is StatusCode.ERROR
    (event,) = first.events
    assert event.name == "exception"
    assert "card declined" in str((event.attributes or {})["exception.stacktrace"])
    assert dict(second.attributes or {})["durable_sa.outcome"] == "advance"
    assert second.status.status_code is StatusCode.UNSET


def test_a_last_failed_attempt_says_the_run_rolls_back(
    engine: Durable, spans: InMemorySpanExporter
) -> None:
    def boom(ctx: DurableContext) -> None:
        msg = "no stock"
        raise RuntimeError(msg)

    durable("doomed").step("reserve", boom, max_retries=1)
    engine.start("doomed")
    drain(engine, now=far_future())
    (span,) = by_name(spans)["durable_sa.step doomed.reserve"]
    assert dict(span.attributes or {})["durable_sa.outcome"] == "compensate"
    assert span.parent is not None  # a start outside any span is a new trace: its root
    (start,) = by_name(spans)["durable_sa.start doomed"]
    assert start.parent is None
    assert span.parent.span_id == start.context.span_id


def test_a_child_run_joins_its_parents_trace(engine: Durable, spans: InMemorySpanExporter) -> None:
    durable("kid").step("double", lambda ctx: ctx.input["n"] * 2)
    durable("mum").child_workflow("sub", "kid", map_input=lambda ctx: {"n": 21}).step(
        "after", lambda ctx: ctx.results["sub"]
    )
    with trace.get_tracer("the-app").start_as_current_span("request") as request:
        run_id = engine.start("mum").run_id
    drain(engine)

    found = by_name(spans)
    (mum_start,) = found["durable_sa.start mum"]
    (kid_start,) = found["durable_sa.start kid"]
    (double,) = found["durable_sa.step kid.double"]
    trace_id = request.get_span_context().trace_id
    assert {s.context.trace_id for s in (mum_start, kid_start, double)} == {trace_id}
    assert parent_id(kid_start) == mum_start.context.span_id
    assert parent_id(double) == kid_start.context.span_id
    assert dict(kid_start.attributes or {})["durable_sa.parent_run_id"] == run_id
    assert {s.context.trace_id for s in found["durable_sa.step mum.sub"]} == {trace_id}


def test_the_handlers_own_spans_nest_under_the_step_span(
    engine: Durable, spans: InMemorySpanExporter
) -> None:
    def work(ctx: DurableContext) -> int:
        with trace.get_tracer("the-app").start_as_current_span("call the bank"):
            return 1

    durable("nested").step("work", work).step("tx", lambda ctx: 2, transactional=True)
    engine.start("nested")
    drain(engine)
    found = by_name(spans)
    (inner,) = found["call the bank"]
    (step,) = found["durable_sa.step nested.work"]
    assert parent_id(inner) == step.context.span_id
    assert inner.context.trace_id == step.context.trace_id
    (tx,) = found["durable_sa.step nested.tx"]  # a transactional step is traced too
    assert dict(tx.attributes or {})["durable_sa.outcome"] == "advance"


def test_start_async_captures_the_callers_span(
    sqlite_engine: sa.Engine, spans: InMemorySpanExporter
) -> None:
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine  # noqa: PLC0415

    Durable(sqlite_engine).create_tables()
    durable("async-traced").step("one", lambda ctx: 1)
    async_engine = create_async_engine(str(sqlite_engine.url.set(drivername="sqlite+aiosqlite")))
    engine = Durable(async_engine)

    async def start() -> tuple[int, int]:
        tracer = trace.get_tracer("the-app")
        with tracer.start_as_current_span("async handler") as handler:
            async with AsyncSession(async_engine) as session:
                result = await engine.start_async("async-traced", session=session)
                await session.commit()
        await async_engine.dispose()
        return result.run_id, handler.get_span_context().trace_id

    run_id, trace_id = asyncio.run(start())
    stored = stored_context(Durable(sqlite_engine), run_id)
    assert stored is not None
    assert f"-{trace_id:032x}-" in stored["traceparent"]


def test_without_a_provider_no_span_is_made_but_the_callers_context_is_kept(
    engine: Durable,
) -> None:
    durable("untraced").step("one", lambda ctx: 1)
    plain = engine.start("untraced").run_id
    assert stored_context(engine, plain) is None  # no span anywhere: nothing stored
    incoming = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    with trace.use_span(NonRecordingSpan(incoming)):
        propagated = engine.start("untraced").run_id
    assert stored_context(engine, propagated) == {
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    }
    assert drain(engine) == 2


def test_a_fired_schedules_run_is_the_root_of_its_own_trace(
    sa_engine: sa.Engine, spans: InMemorySpanExporter
) -> None:
    clock = FakeClock(datetime(2030, 1, 1, tzinfo=UTC))
    engine = Durable(sa_engine, clock=clock)
    engine.create_tables()
    durable("nightly").step("report", lambda ctx: 1)
    engine.schedule("every-hour", "nightly", cron="0 * * * *")
    clock.advance(timedelta(hours=1, seconds=1))
    (fired,) = engine.fire_schedules()
    drain(engine)
    found = by_name(spans)
    (start,) = found["durable_sa.start nightly"]
    (step,) = found["durable_sa.step nightly.report"]
    assert start.parent is None  # no caller: a trace of its own
    assert dict(start.attributes or {})["durable_sa.run_id"] == fired.run_id
    assert parent_id(step) == start.context.span_id
