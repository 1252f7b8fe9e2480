"""Recording spans in tests: a global SDK tracer provider set for one test, and a file.

OpenTelemetry's global provider can be set once per process; :func:`recording` sets one
with an in-memory exporter and :func:`reset_global_provider` forgets it after the test
(as OpenTelemetry's own test utilities do), so no other test records spans.
:class:`JsonLinesExporter` writes finished spans to a file, one JSON object each: how a
worker process started by a test hands its spans back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from opentelemetry.sdk.trace import ReadableSpan


def reset_global_provider() -> None:
    """Forget the global tracer provider: the next ``set_tracer_provider`` takes effect."""
    trace._TRACER_PROVIDER_SET_ONCE = Once()  # as OpenTelemetry's own test utilities do
    trace._TRACER_PROVIDER = None


def recording() -> Iterator[InMemorySpanExporter]:
    """A fixture's body: spans recorded in memory while it is suspended."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reset_global_provider()
    trace.set_tracer_provider(provider)
    yield exporter
    provider.shutdown()
    reset_global_provider()


class JsonLinesExporter(SpanExporter):
    """Finished spans appended to ``path``: name, ids (hex), parent id, kind, attributes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self.path.open("a", encoding="utf-8") as out:
            for span in spans:
                context = span.get_span_context()
                out.write(
                    json.dumps(
                        {
                            "name": span.name,
                            "trace_id": f"{context.trace_id:032x}",
                            "span_id": f"{context.span_id:016x}",
                            "parent_id": None
                            if span.parent is None
                            else f"{span.parent.span_id:016x}",
                            "kind": span.kind.name,
                            "attributes": dict(span.attributes or {}),
                        }
                    )
                    + "\n"
                )
        return SpanExportResult.SUCCESS


def read_spans(path: Path) -> list[dict[str, object]]:
    """The spans a :class:`JsonLinesExporter` wrote to ``path``."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
