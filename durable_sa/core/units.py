"""The ids of a step's journal units: ``step``, ``step#entry``, ``step#iter2``...

One journal row per unit, unique by (run, unit id): a parallel entry, a loop
iteration, a route's decision, a rollback's record and each failed attempt of a step
that was retried get a row of their own under the step's name. The suffixes the engine
uses itself are built here, and a parallel entry may not take one of them as its name
(an entry called ``compensate`` would read as the step's rollback record).
"""

from __future__ import annotations

import re
from typing import Final

COMPENSATE: Final = "compensate"
FINISH_UNIT: Final = "#finish"
"""The run's ``on_finish`` hook: a unit of the run, not of a step (no step name before
the ``#``, which no step name may hold); its failed attempts are ``#finish#attempt<n>``."""
ROUTE: Final = "route"
RESERVED_ENTRY_NAME: Final = re.compile(r"(compensate|route|iter[0-9]+|attempt[0-9]+)")
"""Entry names the engine's own units take: refused for a parallel entry."""


def entry_unit(step: str, entry: str) -> str:
    """A parallel entry's unit."""
    return f"{step}#{entry}"


def iteration_unit(step: str, index: int) -> str:
    """A loop iteration's unit (0-based)."""
    return f"{step}#iter{index}"


def route_unit(step: str) -> str:
    """A route step's decision."""
    return f"{step}#{ROUTE}"


def compensate_unit(step: str) -> str:
    """The record of a step's rollback."""
    return f"{step}#{COMPENSATE}"


def attempt_unit(step: str, attempt: int) -> str:
    """Failed attempt ``attempt`` of a step that was retried after it."""
    return f"{step}#attempt{attempt}"
