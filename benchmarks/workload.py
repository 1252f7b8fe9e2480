"""The workflows every durable-sa scenario runs, and the engine a worker process loads.

``bench3`` is the shape all systems are compared on: three trivial steps, each returning
a small JSON value. ``fanout16`` is one parallel step of sixteen 10 ms sleeps. The first
step of ``bench3`` records ``time.monotonic()`` (system-wide on Linux, so comparable
across processes) so the latency scenario can measure start → first handler call.

The mixed scenario compares ``mixed6``, six steps of the kinds real workflows use (a
plain step, a ``transactional=True`` step writing one row to the application table
``bench_orders``, a parallel step of three entries, a route, a loop of two iterations, a
plain step), with ``plain6``, six plain steps. Nothing in either takes time, so the gap
between them is what the richer step kinds cost the engine. ``bench_orders`` is on its
own :data:`ORDERS_METADATA`, which the program creates before measuring (the DBOS peer
writes the same rows).

The controls scenario adds ``bench3_limited`` (its first step rate-limited),
``bench3_capped`` (``max_active`` and ``max_active_per_key`` far above use) and
``bench3_capped_limited`` (both); the fairness scenario runs ``fair1``, one ~2 ms step with
at most one active run per concurrency key.

A worker process is started as ``python -m benchmarks.durable_worker`` with the database
URL in ``DURABLE_SA_BENCH_URL``. ``DURABLE_SA_BENCH_BACKEND`` picks the queue backend (the
relay scenario): unset or empty for the jobs table, a ``redis://`` URL for Redis Streams,
or ``celery`` for the Celery app of :mod:`benchmarks.relay_celery_app`, whose broker URL
is in ``DURABLE_SA_BENCH_BROKER``.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Final

from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, insert

from durable_sa import Durable, ParallelEntry, durable

if TYPE_CHECKING:
    from collections.abc import Sequence

    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExportResult
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from durable_sa.core.context import DurableContext

URL_ENV: Final = "DURABLE_SA_BENCH_URL"
BACKEND_ENV: Final = "DURABLE_SA_BENCH_BACKEND"
BROKER_ENV: Final = "DURABLE_SA_BENCH_BROKER"
TRACING_ENV: Final = "DURABLE_SA_BENCH_TRACING"
"""``on``: the process sets an OpenTelemetry tracer provider (:func:`trace_in_memory`)."""
CELERY: Final = "celery"
CELERY_APP: Final = "benchmarks.relay_celery_app:app"
FANOUT_ENTRIES: Final = 16
FANOUT_SLEEP_S: Final = 0.010
MIXED_CHECKS: Final = ("stock", "fraud", "address")
"""The entries of ``mixed6``'s parallel step."""
MIXED_LOOP_ITERATIONS: Final = 2
ORDER_CENTS: Final = 4200

ORDERS_METADATA: Final = MetaData()
bench_orders: Final = Table(
    "bench_orders",
    ORDERS_METADATA,
    Column("id", Integer, primary_key=True),
    Column("ref", Integer, nullable=False),
    Column("amount_cents", Integer, nullable=False),
    Column("status", String(16), nullable=False),
)
"""The application's own table: one row per ``mixed6`` run (and per DBOS mixed run)."""


def first(ctx: DurableContext) -> float:
    """Step 1: when it ran (monotonic clock), for the latency scenario."""
    del ctx
    return time.monotonic()


def second(ctx: DurableContext) -> int:
    """Step 2: trivial."""
    del ctx
    return 2


def third(ctx: DurableContext) -> int:
    """Step 3: trivial."""
    del ctx
    return 3


def _nap(ctx: DurableContext) -> int:
    del ctx
    time.sleep(FANOUT_SLEEP_S)
    return 1


def _receive(ctx: DurableContext) -> dict[str, int]:
    """mixed6, step 1 (plain): the order as received."""
    return {"ref": int(ctx.input["i"]), "amount_cents": ORDER_CENTS}


def _record(ctx: DurableContext) -> str:
    """mixed6, step 2 (transactional): one row in the application's table."""
    order = ctx.results["receive"]
    ctx.session.execute(
        insert(bench_orders).values(
            ref=order["ref"], amount_cents=order["amount_cents"], status="new"
        )
    )
    return "recorded"


def _check(ctx: DurableContext) -> bool:
    """mixed6, step 3: each parallel entry is a trivial check."""
    del ctx
    return True


def _carrier(ctx: DurableContext) -> str:
    """mixed6, step 4: the route's resolver picks a branch from the input."""
    return "parcel" if int(ctx.input["i"]) % 2 == 0 else "freight"


def _parcel(ctx: DurableContext) -> dict[str, str]:
    del ctx
    return {"carrier": "parcel"}


def _freight(ctx: DurableContext) -> dict[str, str]:
    del ctx
    return {"carrier": "freight"}


def _first_poll(ctx: DurableContext) -> int:
    del ctx
    return 0


def _poll(value: object, ctx: DurableContext) -> int:
    """mixed6, step 5: a loop body; it runs exactly twice (``max_iterations=2``)."""
    del ctx
    assert isinstance(value, int)
    return value + 1


def _same(result: object) -> object:
    return result


def _confirm(ctx: DurableContext) -> str:
    """mixed6, step 6 (plain)."""
    del ctx
    return "confirmed"


def _trivial(ctx: DurableContext) -> int:
    """Each step of plain6."""
    del ctx
    return 1


bench3 = durable("bench3").step("first", first).step("second", second).step("third", third)

BENCH_RATE_LIMIT: Final = "bench-api"
"""The shared rate limit of ``bench3_limited``'s first step (set too high ever to defer)."""
bench3_limited = (
    durable("bench3_limited")
    .step("first", first, rate_limit=BENCH_RATE_LIMIT)
    .step("second", second)
    .step("third", third)
)

BENCH_CAP: Final = 1_000_000
"""``max_active`` and ``max_active_per_key`` of ``bench3_capped``: far above what is ever
active, so no run waits and the figure is what keeping the limits' counts costs."""
LIMITS_KEYS: Final = 8
"""How many concurrency keys the ``limits`` and ``both`` modes spread their starts over."""
bench3_capped = (
    durable("bench3_capped", max_active=BENCH_CAP, max_active_per_key=BENCH_CAP)
    .step("first", first)
    .step("second", second)
    .step("third", third)
)
bench3_capped_limited = (
    durable("bench3_capped_limited", max_active=BENCH_CAP, max_active_per_key=BENCH_CAP)
    .step("first", first, rate_limit=BENCH_RATE_LIMIT)
    .step("second", second)
    .step("third", third)
)
"""``bench3_capped`` whose first step also takes a grant of :data:`BENCH_RATE_LIMIT`."""

FAIRNESS_SLEEP_S: Final = 0.002


def _short_nap(ctx: DurableContext) -> int:
    """fair1's one step: about 2 ms of work that holds the worker's slot."""
    del ctx
    time.sleep(FAIRNESS_SLEEP_S)
    return 1


fair1 = durable("fair1", max_active_per_key=1).step("nap", _short_nap)
"""One short step, at most one active run per key: the fairness scenario's workflow."""

fanout16 = durable("fanout16").parallel(
    "fan", [ParallelEntry(name=f"e{i}", handler=_nap) for i in range(FANOUT_ENTRIES)]
)


mixed6 = (
    durable("mixed6")
    .step("receive", _receive)
    .step("record", _record, transactional=True)
    .parallel("checks", [ParallelEntry(name=name, handler=_check) for name in MIXED_CHECKS])
    .route("ship", _carrier, {"parcel": _parcel, "freight": _freight})
    .loop(
        "poll",
        _poll,
        max_iterations=MIXED_LOOP_ITERATIONS,
        map_input=_first_poll,
        feedback=_same,
    )
    .step("confirm", _confirm)
)

plain6 = (
    durable("plain6")
    .step("s1", _trivial)
    .step("s2", _trivial)
    .step("s3", _trivial)
    .step("s4", _trivial)
    .step("s5", _trivial)
    .step("s6", _trivial)
)


def engine_for(url: str, backend: str | None = None) -> Durable:
    """An engine on ``url`` (the workflows registered themselves at import).

    ``backend``: ``None`` (or empty) for the jobs table, a ``redis://`` URL for Redis
    Streams, ``celery`` for the Celery app of :mod:`benchmarks.relay_celery_app` (named
    by its import path: its broker URL must be in ``DURABLE_SA_BENCH_BROKER``).
    """
    pool = {"pool_size": 20, "max_overflow": 20} if url.startswith("postgresql") else {}
    sa_engine = create_engine(url, **pool)
    if not backend:
        return Durable(sa_engine)
    if backend == CELERY:
        return Durable(sa_engine, backend=CELERY, backend_options={"app": CELERY_APP})
    return Durable(sa_engine, backend=backend)


def trace_in_memory(*, batch: bool) -> InMemorySpanExporter:
    """Set the global tracer provider: spans to memory, batched or one by one.

    The tracing scenario's provider, as an application sets its own (the batch processor
    exports from a thread of its own, whose CPU time the worker's counts).
    """
    from opentelemetry import trace  # noqa: PLC0415 - the tracing scenario only
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import (  # noqa: PLC0415
        BatchSpanProcessor,
        SimpleSpanProcessor,
    )

    exporter = counting_exporter()
    provider = TracerProvider()
    processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    return exporter


def counting_exporter() -> InMemorySpanExporter:
    """An in-memory exporter that counts the spans it is given (``exported``), keeping none.

    An exporter that ships spans (OTLP) keeps none; the SDK's ``InMemorySpanExporter``
    keeps every one, and a worker holding tens of thousands of spans would measure the
    garbage collector walking that list, not tracing. This one keeps the count.
    """
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: PLC0415
        InMemorySpanExporter,
    )

    class Counting(InMemorySpanExporter):
        exported = 0

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            self.exported += len(spans)
            result = super().export(spans)
            self.clear()
            return result

    return Counting()


def engine_from_env() -> Durable:
    """The engine a worker process runs (``DURABLE_SA_BENCH_URL``, ``…_BACKEND``)."""
    return engine_for(os.environ[URL_ENV], os.environ.get(BACKEND_ENV) or None)
