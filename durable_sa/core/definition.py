"""Workflow definitions, as users write them: :func:`durable` and the step classes.

``durable(name)`` builds a :class:`DurableWorkflow` and registers it at once (replacing
an earlier definition of that name); each builder method adds to that same object and
returns it, so chaining is optional. Every mistake that can be seen while a workflow is
being declared raises :class:`~durable_sa.errors.DefinitionError` there and then, never
later inside a worker.

This module is the public home of the names a definition is made of (``durable_sa``
and the documentation point here); they are built one layer down, so that the registry
can name the workflow type without importing this module back:

- :mod:`durable_sa.core.steps`: the step kinds, as frozen values;
- :mod:`durable_sa.core.validation`: the checks made at definition time;
- :mod:`durable_sa.core.workflow`: :class:`DurableWorkflow`, the builder;
- :mod:`durable_sa.core.registry`: where :func:`durable` puts it.
"""

from __future__ import annotations

from durable_sa.core.registry import registry
from durable_sa.core.steps import (
    ChildStep,
    LoopStep,
    ParallelEntry,
    ParallelStep,
    RouteStep,
    SignalStep,
    SleepStep,
    StepDefinition,
    StepType,
    TaskStep,
)
from durable_sa.core.workflow import DurableWorkflow

__all__ = [
    "ChildStep",
    "DurableWorkflow",
    "LoopStep",
    "ParallelEntry",
    "ParallelStep",
    "RouteStep",
    "SignalStep",
    "SleepStep",
    "StepDefinition",
    "StepType",
    "TaskStep",
    "durable",
]


def durable(
    name: str,
    *,
    version: str | None = None,
    input_type: object = None,
    max_active: int | None = None,
    max_active_per_key: int | None = None,
) -> DurableWorkflow:
    """Create the workflow ``name`` and register it, replacing an earlier definition.

    With ``input_type`` (an attrs class, dataclass or pydantic model) ``ctx.input`` is a
    value of that type, and ``start()`` refuses an input that does not structure as it.
    With ``max_active`` at most that many runs are active (begun and not ended) at once;
    with ``max_active_per_key``, at most that many per ``start(concurrency_key=...)``.
    Starts over a limit are accepted and wait ``pending`` (docs/queues.md).
    """
    return registry.register(
        DurableWorkflow(
            name,
            version=version,
            input_type=input_type,
            max_active=max_active,
            max_active_per_key=max_active_per_key,
        )
    )
