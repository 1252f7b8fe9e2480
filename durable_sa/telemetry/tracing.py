"""The engine's one tracing object, chosen once at import.

With the ``otel`` extra installed it is :class:`~durable_sa.telemetry.otel.OtelTracing`
(spans to the global tracer provider, none until the application sets one); without it
the do-nothing :class:`~durable_sa.telemetry.spans.Tracing`, and OpenTelemetry is never
imported.
"""

from __future__ import annotations

from durable_sa.telemetry.spans import Tracing


def _choose() -> Tracing:
    try:
        from durable_sa.telemetry.otel import OtelTracing  # noqa: PLC0415 - optional extra
    except ImportError:
        return Tracing()
    return OtelTracing()


tracing: Tracing = _choose()
"""What the shell opens spans with: ``tracing.run_start(...)``, ``tracing.step(...)``."""
