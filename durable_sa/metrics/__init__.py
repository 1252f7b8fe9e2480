"""Prometheus metrics of durable-sa: from SQL at scrape time, and from worker processes.

Needs the ``metrics`` extra (``pip install 'durable-sa[metrics]'``, prometheus-client);
the rest of durable-sa never imports this package, so it costs nothing without it.

- :func:`metrics_app` (ASGI, mounted at ``/metrics``), :func:`serve_metrics` and
  ``durable-sa metrics APP --port 9100``: gauges read from the database (runs by
  workflow and status, due jobs and the oldest one's wait by queue, open dead letters,
  live workers, limits, paused workflows, schedules' lag), by
  :class:`DurableCollector`, cached a few seconds.
- :func:`observe_steps`, :func:`serve_worker_metrics` and ``durable-sa worker
  --metrics-port 9101``: ``durable_sa_step_duration_seconds{workflow,step}`` and
  ``durable_sa_step_attempts_total``, measured in the process that runs the steps.

See the Metrics section of ``docs/observability.md``.
"""

from __future__ import annotations

try:
    import prometheus_client  # noqa: F401 - checked here, used by the modules below
except ImportError:  # pragma: no cover - the extra is installed in the test environment
    from durable_sa.errors import MetricsNotInstalledError

    raise MetricsNotInstalledError from None

from durable_sa.metrics.collector import DurableCollector
from durable_sa.metrics.serving import (
    MetricsApp,
    metrics_app,
    metrics_registry,
    serve_metrics,
    serve_worker_metrics,
)
from durable_sa.metrics.steps import (
    STEP_ATTEMPTS,
    STEP_DURATION,
    STEP_DURATION_BUCKETS,
    observe_steps,
    stop_observing_steps,
)

__all__ = [
    "STEP_ATTEMPTS",
    "STEP_DURATION",
    "STEP_DURATION_BUCKETS",
    "DurableCollector",
    "MetricsApp",
    "metrics_app",
    "metrics_registry",
    "observe_steps",
    "serve_metrics",
    "serve_worker_metrics",
    "stop_observing_steps",
]
