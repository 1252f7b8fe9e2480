"""Shared rate limits, decided: may a step begin now, and if not, how long must it wait.

A rate limit ``(name, limit, per)`` lets no more than ``limit`` executions of steps
naming it begin in any window of length ``per``. The shell records every execution it
lets begin as a *grant* (its time by the database's clock) and, with the limit's row
locked, hands this module the grants still inside the window; the answer here is pure:

- the step asks for ``wanted`` grants of a limit (1 for a step; one per entry still to
  run for a parallel step);
- they are granted when the grants in the window ``(now - per, now]`` plus ``wanted``
  are at most ``limit``;
- otherwise the step waits until enough of the oldest grants leave the window: the
  ``k``-th oldest, ``k = in_window + wanted - limit``, leaves at its time plus ``per``.

A step naming a limit nobody set (or one removed since) waits, re-checked every
``unset_recheck``: a limit usually guards somebody else's API, so running unlimited
would be the dangerous way to fail. A parallel step that needs more grants of one
limit at once than the limit allows per window can never begin; it waits too, with a
reason that says so.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import attrs

from durable_sa.core.steps import ParallelStep, StepDefinition, TaskStep
from durable_sa.core.validation import NAME_LIMIT, check_text
from durable_sa.errors import DefinitionError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


def _positive_int(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"a rate limit's {attribute.name}= must be a positive integer, not {value!r}"
        raise ValueError(msg)


def _positive_duration(_inst: object, attribute: attrs.Attribute[timedelta], value: object) -> None:
    if not isinstance(value, timedelta) or value <= timedelta(0):
        msg = f"a rate limit's {attribute.name}= must be a positive timedelta, not {value!r}"
        raise ValueError(msg)


def check_rate_limit_name(name: object, what: str) -> str | None:
    """A step's ``rate_limit=``: ``None`` or a non-empty name that fits the limits table."""
    if name is None:
        return None
    if not isinstance(name, str) or not name.strip():
        msg = f"{what}: rate_limit must be a rate limit's name (a non-empty string), not {name!r}"
        raise DefinitionError(msg)
    check_text(name, f"{what}: rate_limit {name[:40]!r}", limit=NAME_LIMIT)
    return name


@attrs.frozen
class RateLimit:
    """At most ``limit`` executions of the steps naming ``name`` begin per ``per``."""

    name: str
    limit: int = attrs.field(validator=_positive_int)
    per: timedelta = attrs.field(validator=_positive_duration)


@attrs.frozen
class Wait:
    """A step may not begin yet: try again after ``delay``; ``reason`` says why.

    ``misconfigured``: it waits because of a mistake to fix (a limit not set, a limit
    too small for the step), not because the limit is doing its job.
    """

    delay: timedelta
    reason: str
    misconfigured: bool = False


def rate_demand(step: StepDefinition, done: frozenset[str] = frozenset()) -> Mapping[str, int]:
    """How many grants of each limit the step needs to begin: ``{}`` for most steps.

    ``done`` names the parallel entries already journaled as completed: they do not run
    again, so they need no grant.
    """
    if isinstance(step, TaskStep):
        return {step.rate_limit: 1} if step.rate_limit is not None else {}
    if isinstance(step, ParallelStep):
        demand: dict[str, int] = {}
        for entry in step.entries:
            name = entry.rate_limit if entry.rate_limit is not None else step.rate_limit
            if name is not None and entry.name not in done:
                demand[name] = demand.get(name, 0) + 1
        return demand
    return {}


def window_start(limit: RateLimit, now: datetime) -> datetime:
    """Grants at or before this instant are outside the window that ends ``now``."""
    return now - limit.per


def must_leave(limit: RateLimit, *, wanted: int, in_window: int) -> int:
    """How many of the oldest grants in the window must leave it before ``wanted`` fit."""
    return max(0, in_window + wanted - limit.limit)


def decide_grant(  # noqa: PLR0913 - the limit, the demand and the window, keyword-only
    name: str,
    limit: RateLimit | None,
    *,
    wanted: int,
    in_window: int,
    oldest: Sequence[datetime],
    now: datetime,
    unset_recheck: timedelta,
) -> Wait | None:
    """``None``: grant ``wanted`` executions now; else how long to wait and why.

    ``in_window`` counts the grants after :func:`window_start`; ``oldest`` holds the
    times of at least the :func:`must_leave` oldest of them, oldest first (the shell
    reads no more than that, so a high limit costs a count, not a list).
    """
    if limit is None:
        return Wait(
            unset_recheck,
            f"rate limit {name!r} is not set: call engine.set_rate_limit({name!r}, limit=..., "
            "per=...) (the step waits until it is)",
            misconfigured=True,
        )
    if wanted > limit.limit:
        return Wait(
            max(limit.per, unset_recheck),
            f"the step needs {wanted} executions of rate limit {name!r} at once but it "
            f"allows {limit.limit} per {limit.per}: raise the limit",
            misconfigured=True,
        )
    over = must_leave(limit, wanted=wanted, in_window=in_window)
    if over <= 0:
        return None
    frees_at = sorted(oldest)[over - 1] + limit.per
    return Wait(
        max(frees_at - now, timedelta(0)),
        f"rate limit {name!r} ({limit.limit} per {limit.per}) reached",
    )
