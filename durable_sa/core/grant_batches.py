"""A worker's rate-limit grants in hand: asked for in batches, used within a horizon.

Asking the database for a grant before every rate-limited step costs a round trip per
step, and on a busy worker the slot that waits for it lets the committer run early, so
commits carry fewer plans: the CPU a workflow costs grew by half again and more. A
worker therefore asks for several grants of the same demand at once when the last
answer showed room for them, keeps the ones its step did not use, and lets the next
steps of that demand begin on them without asking again.

What keeps the limit exact: the grants of a batch are *recorded* :func:`horizon` ahead
of the time they were taken (the database's clock), and a kept grant may only let a step
begin before that horizon has passed since before the ask, on a clock that runs with the
one grants are recorded by (the shell's choice: a monotonic clock beside PostgreSQL's,
the engine's own clock on SQLite, whose grants it dates). Every step of a batch
therefore begins at or before the time its grant is recorded at, and the rule of
:mod:`durable_sa.core.rates` (``in_window + wanted <= limit`` over the window that ends
at the ask, counting grants recorded ahead) bounds the steps that *begin* in any window
of length ``per``: take the step of such a window granted last; every other step of the
window began after the window's start, so its record lies inside the window that step's
grant counted. A grant asked for alone is recorded at its time, as it always was, and
lets its own step begin at once.

Batches cost little capacity: they are asked for only while the last answer showed room
for twice the batch, so near the limit every ask is for one grant, recorded at its
time. Grants the horizon overtook are given back (deleted) at the worker's next ask or
sweep (its pipeline sweeps a few times a second) and on its close: a grant never used is
as if never taken. Until then, and for the rest of the window if the worker is killed,
they count. A batch used up before its horizon doubles the next ask (at most
:data:`MAX_BATCH`, and never more than half the room the limits reported); one that
was not shrinks it to what was used.

Everything here is pure: :class:`Batch` is the state a worker keeps per demand, the
functions say what to do next; :mod:`durable_sa.engine.controls` does the asking.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

import attrs

if TYPE_CHECKING:
    from collections.abc import Mapping

HORIZON_SHARE: Final = 10
"""A batch's grants are recorded ``per / HORIZON_SHARE`` ahead of their time (capped by
:data:`MAX_HORIZON`): how long a worker may keep them."""
MAX_HORIZON: Final = timedelta(milliseconds=100)
"""The most a batch is recorded ahead, however long the limit's window."""
MAX_BATCH: Final = 64
"""The most grants of one demand a worker asks for at once."""

Demand = tuple[tuple[str, int], ...]
"""A step's demand as a key: ``(limit name, grants wanted)`` pairs in name order."""


def demand_key(demand: Mapping[str, int]) -> Demand:
    """``demand`` as a hashable key, names in order."""
    return tuple(sorted(demand.items()))


def horizon(per: timedelta) -> timedelta:
    """How far ahead of its time a batch of a limit with window ``per`` is recorded.

    In whole microseconds (``per`` in milliseconds, times 1000, over
    :data:`HORIZON_SHARE`: the database's integer arithmetic exactly), so the shell can
    name the recorded time of a grant it gives back.
    """
    per_ms = per // timedelta(milliseconds=1)
    micros = min(per_ms * 1000 // HORIZON_SHARE, MAX_HORIZON // timedelta(microseconds=1))
    return timedelta(microseconds=micros)


@attrs.frozen
class LimitRoom:
    """What one limit said when it granted: its rule and what its window held."""

    name: str
    limit: int
    per: timedelta
    in_window: int
    """Grants in the window before this ask's."""
    recorded_at: datetime
    """When this ask's grants of the limit are recorded (its time; plus the horizon for a
    batch)."""


@attrs.frozen
class Granted:
    """An ask answered yes: ``count`` times the demand, recorded as ``limits`` say."""

    count: int
    limits: tuple[LimitRoom, ...]


@attrs.frozen
class Batch:
    """The grants of one demand a worker holds, and how many it asks for next."""

    left: int = 0
    """Grants in hand (each lets one step of the demand begin)."""
    until: float | None = None
    """On the shell's clock (seconds): a grant in hand lets a step begin only before this."""
    asked: int = 0
    """How many the batch in hand was granted (``asked - left`` were used)."""
    next_ask: int = 1
    """How many to ask for when the batch in hand is gone."""
    room: int = 1
    """The most the next ask may be, from the room the limits reported."""
    limits: tuple[LimitRoom, ...] = ()
    """The batch's records, to give back what is left."""


def use(batch: Batch, now: float) -> Batch | None:
    """Let one step begin on a grant in hand: the batch after, or ``None`` (ask).

    A batch used up before its horizon doubles the next ask, within its room.
    """
    if batch.left <= 0 or batch.until is None or now >= batch.until:
        return None
    after = attrs.evolve(batch, left=batch.left - 1)
    return after if after.left else attrs.evolve(after, next_ask=_grown(after))


def leftover(batch: Batch, now: float) -> int:
    """How many grants in hand the horizon overtook (to give back before asking)."""
    if batch.left > 0 and batch.until is not None and now >= batch.until:
        return batch.left
    return 0


def emptied(batch: Batch) -> Batch:
    """The batch once its leftovers are given back: the next ask is what was used."""
    if batch.left <= 0:
        return batch
    used = batch.asked - batch.left
    return attrs.evolve(batch, left=0, until=None, next_ask=max(1, used), limits=())


def refused(batch: Batch) -> Batch:
    """An ask was refused: the next asks are for one grant."""
    return attrs.evolve(batch, left=0, until=None, next_ask=1, room=1, limits=())


def granted(batch: Batch, answer: Granted, demand: Demand, *, asked_at: float) -> Batch:
    """An ask was granted, one grant used at once: the batch in hand after it.

    ``asked_at``: the shell's clock (seconds) read before the ask; the grants a batch
    keeps may let a step begin until the shortest horizon of the demand's limits has
    passed since.
    """
    wanted = dict(demand)
    room = min(
        (
            (limit.limit - limit.in_window - answer.count * wanted[limit.name])
            // wanted[limit.name]
            for limit in answer.limits
        ),
        default=0,
    )
    shortest = min((horizon(limit.per) for limit in answer.limits), default=timedelta(0))
    after = attrs.evolve(
        batch,
        left=answer.count - 1,  # one lets the asking step begin at once
        until=asked_at + shortest.total_seconds() if answer.count > 1 else None,
        asked=answer.count,
        room=max(1, room // 2),
        limits=answer.limits,
    )
    return after if after.left else attrs.evolve(after, next_ask=_grown(after))


def _grown(batch: Batch) -> int:
    """The next ask after ``batch`` was used up in time: twice it, within its room."""
    return max(1, min(MAX_BATCH, batch.asked * 2, batch.room))
