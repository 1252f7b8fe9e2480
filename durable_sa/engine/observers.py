"""Instruments told when a step attempt ends: none by default, so the engine pays nothing.

Rules:
- :func:`~durable_sa.engine.execution.execute_step` calls :func:`step_ended` once per
  attempt of a step, after its log line, with the run's workflow, the step's name, the
  outcome's label as logs and spans give it (``advance``, ``sleep``..., a failure as
  ``retry`` or ``compensate``: :func:`~durable_sa.engine.execution.outcome_label`) and
  the attempt's duration in seconds.
- With no observer registered the engine skips the call with one truth test of a tuple:
  an application without metrics (``durable_sa.metrics``) pays nothing for them.
- The observers are a tuple replaced whole on every change, so a worker's threads read
  it without a lock.
- An observer that raises is logged and ignored: an instrument never fails a step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

StepObserver = Callable[[str, str, str, float], None]
"""``observer(workflow, step, outcome, seconds)``, called when a step attempt ends."""

step_observers: tuple[StepObserver, ...] = ()
"""The registered observers (read by the engine on every step attempt)."""


def add_step_observer(observer: StepObserver) -> None:
    """Call ``observer`` when any step attempt of this process ends (once, however often added)."""
    global step_observers  # noqa: PLW0603 - a copy-on-write tuple, read without a lock
    if observer not in step_observers:
        step_observers = (*step_observers, observer)


def remove_step_observer(observer: StepObserver) -> None:
    """Stop calling ``observer`` (nothing happens if it was not added)."""
    global step_observers  # noqa: PLW0603 - a copy-on-write tuple, read without a lock
    step_observers = tuple(each for each in step_observers if each is not observer)


def step_ended(workflow: str, step: str, outcome: str, seconds: float) -> None:
    """Tell every observer that an attempt of ``step`` ended with ``outcome``."""
    for observer in step_observers:
        try:
            observer(workflow, step, outcome, seconds)
        except Exception:  # an instrument must never fail the step it measures
            logger.exception("step observer %r failed; the step is unaffected", observer)
