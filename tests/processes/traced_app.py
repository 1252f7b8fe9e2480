"""The APP of the traces process test: a worker that writes its spans to a file.

``durable-sa worker tests.processes.traced_app:app`` calls :func:`app`, which sets the
worker's global tracer provider (spans as JSON lines to ``$DURABLE_SA_TEST_SPANS``, as an
application sets its own exporter) and returns the engine on ``$DURABLE_SA_DATABASE_URL``.
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from durable_sa import Durable, DurableContext, durable
from durable_sa.testing.workload import DATABASE_URL_ENV
from tests.support.tracing import JsonLinesExporter

SPANS_ENV = "DURABLE_SA_TEST_SPANS"
WORKFLOW = "traced-proc"


def define() -> None:
    """Register the workflow: its first step opens a span of its own."""

    def charge(ctx: DurableContext) -> str:
        with trace.get_tracer("the-app").start_as_current_span("call the bank"):
            return "charged"

    durable(WORKFLOW).step("charge", charge).step("ship", lambda ctx: "shipped")


def app() -> Durable:
    """The worker's engine, its spans going to the file the test reads."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(os.environ[SPANS_ENV])))
    trace.set_tracer_provider(provider)
    define()
    return Durable(sa.create_engine(os.environ[DATABASE_URL_ENV]))
