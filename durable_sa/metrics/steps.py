"""Step metrics measured in the process that runs the steps (a worker, ``drain()``).

Rules:
- One histogram, ``durable_sa_step_duration_seconds{workflow,step}``, and one counter,
  ``durable_sa_step_attempts_total{workflow,step,outcome}``, per process, fed by the
  engine's step observer (:mod:`durable_sa.engine.observers`) where a step attempt ends.
- Nothing is observed until :func:`observe_steps` is called: a process that does not
  want metrics pays nothing. Calling it again does nothing more.
- The instruments belong to no registry until :func:`observe_steps` registers them
  (prometheus_client's default ``REGISTRY`` unless told another), so they can also be
  served beside the SQL metrics (``metrics_app``) without clashing.
"""

from __future__ import annotations

import threading
from typing import Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from durable_sa.engine import observers

STEP_DURATION_BUCKETS: Final = (
    *(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5),
    *(1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0),
)
"""Seconds: from a fast in-process step to one that calls slow services for minutes."""

STEP_DURATION: Final = Histogram(
    "durable_sa_step_duration_seconds",
    "Duration of step attempts (the user's handler), by workflow and step.",
    ["workflow", "step"],
    buckets=STEP_DURATION_BUCKETS,
    registry=None,
)
STEP_ATTEMPTS: Final = Counter(
    "durable_sa_step_attempts",
    "Step attempts that ended, by workflow, step and outcome (advance, retry, compensate...).",
    ["workflow", "step", "outcome"],
    registry=None,
)

_lock = threading.Lock()
_registries: list[CollectorRegistry] = []


def record_step(workflow: str, step: str, outcome: str, seconds: float) -> None:
    """The engine's step observer: one attempt of ``step`` ended after ``seconds``."""
    STEP_DURATION.labels(workflow, step).observe(seconds)
    STEP_ATTEMPTS.labels(workflow, step, outcome).inc()


def register_step_metrics(registry: CollectorRegistry) -> None:
    """Serve this process's step metrics from ``registry`` too (once per registry)."""
    with _lock:
        if any(known is registry for known in _registries):
            return
        registry.register(STEP_DURATION)
        registry.register(STEP_ATTEMPTS)
        _registries.append(registry)


def observe_steps(registry: CollectorRegistry | None = REGISTRY) -> None:
    """Measure every step attempt this process runs, from now on.

    ``registry``: where the step metrics are served (prometheus_client's default
    ``REGISTRY``, which ``prometheus_client.start_http_server`` and most web
    integrations serve); ``None`` to register them nowhere more.
    """
    if registry is not None:
        register_step_metrics(registry)
    observers.add_step_observer(record_step)


def stop_observing_steps() -> None:
    """Stop measuring step attempts (what was measured stays in the instruments)."""
    observers.remove_step_observer(record_step)
