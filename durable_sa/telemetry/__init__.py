"""Traces and structured logs of the engine, for the application's own observability.

- :mod:`~durable_sa.telemetry.spans`: what the engine asks of tracing (a run's start, a
  step attempt) and the do-nothing answer used when OpenTelemetry is not installed;
- :mod:`~durable_sa.telemetry.otel`: the answer with OpenTelemetry, loaded only when the
  ``durable-sa[otel]`` extra is installed;
- :mod:`~durable_sa.telemetry.tracing`: the one ``tracing`` object the engine uses,
  chosen once at import;
- :mod:`~durable_sa.telemetry.json_logs`: one JSON object per log record, with the
  records' structured fields (``durable-sa worker --log-format json``).

There is no switch: spans go to OpenTelemetry's global tracer provider, which records
nothing until the application sets one (see ``docs/observability.md``).
"""
