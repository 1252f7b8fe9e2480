"""The reference scenarios as workflows, for the backend conformance suite.

They live in an importable module of their own, not in a test file, because a backend
whose consumers are other processes (Celery workers) must define the same workflows
there: such a process calls :func:`define_scenarios` at import time.

Every handler is pure (its result depends on the input only), so a test can check a
run's results whichever process ran its steps, and however many times.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from durable_sa.core.definition import ParallelEntry, durable
from durable_sa.core.registry import registry

if TYPE_CHECKING:
    from durable_sa.core.context import DurableContext

SEQUENTIAL: Final = "conformance-sequential"
PARALLEL: Final = "conformance-parallel"
SIGNAL: Final = "conformance-signal"
SLEEP: Final = "conformance-sleep"
CHILD: Final = "conformance-child"
CHILD_PARENT: Final = "conformance-child-parent"
SAGA: Final = "conformance-saga"
SLEEP_SECONDS: Final = 0.3
ALL: Final = (SEQUENTIAL, PARALLEL, SIGNAL, SLEEP, CHILD, CHILD_PARENT, SAGA)


def _add(amount: int) -> Any:  # noqa: ANN401 - a handler factory
    def handler(ctx: DurableContext) -> int:
        return int(ctx.input.get("n", 0)) + amount

    return handler


def _fail(ctx: DurableContext) -> None:
    msg = f"run {ctx.run_id}: the saga's last step fails on purpose"
    raise RuntimeError(msg)


def _undo(ctx: DurableContext) -> None:
    """A compensator: its journal row is the evidence that it ran."""


def define_scenarios() -> None:
    """Register the scenario workflows (idempotent: a second call does nothing)."""
    if SEQUENTIAL in registry.names():
        return
    durable(SEQUENTIAL).step("one", _add(1)).step("two", _add(2)).step("three", _add(3))
    durable(PARALLEL).step("before", _add(1)).parallel(
        "fan", [ParallelEntry("left", _add(10)), ParallelEntry("right", _add(20))]
    ).step("after", _add(2))
    durable(SIGNAL).step("ask", _add(1)).wait_for_signal(
        "answer", "approve", timeout=timedelta(minutes=5)
    ).step("done", _add(2))
    durable(SLEEP).step("before", _add(1)).sleep("nap", SLEEP_SECONDS).step("after", _add(2))
    durable(CHILD).step("inner", _add(100))
    durable(CHILD_PARENT).step("first", _add(1)).child_workflow("kid", CHILD).step("last", _add(2))
    (
        durable(SAGA)
        .step("reserve", _add(1), compensate=_undo)
        .step("charge", _add(2), compensate=_undo)
        # Two attempts: the failure is still retried through the backend (a delayed
        # job), after one backoff of 2-3 s instead of the default's three (about 7 s).
        .step("ship", _fail, max_retries=2)
    )


def unregister_scenarios() -> None:
    """Forget the scenario workflows (a test suite that cleans its registry)."""
    for name in ALL:
        if name in registry.names():
            registry.unregister(name)
