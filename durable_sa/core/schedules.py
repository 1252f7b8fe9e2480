"""Schedules, decided: cron ticks in a time zone, what a due schedule starts, and when next.

Pure functions over attrs values; the shell (:mod:`durable_sa.engine.schedules`) locks due
schedule rows, calls :func:`decide_fire` and applies its answer in one transaction.

Rules:
- Cron expressions are parsed by croniter (five fields, or six with seconds first) and
  evaluated on the *local wall clock* of the schedule's IANA time zone; ticks are then
  placed on the UTC time line with :mod:`zoneinfo`.
- Daylight saving: a tick whose local time does not exist (clocks jump forward) fires
  once, at the instant the clocks jump (all the ticks of the skipped hour make that one
  fire, which is also the tick of the first local time after the gap if it has one). A
  local time that happens twice (clocks go back) fires the first time only.
- Lateness: a tick more than the catch-up window late is skipped, never started. The
  window is at least :data:`LATE_GRACE`, the lateness of a busy worker, which is all it
  is without a ``catchup_window``: after a longer downtime no missed tick is started,
  the schedule goes on with its next tick.
- Overlap: ``skip`` starts nothing while the schedule's last run is active; ``allow``
  always starts; ``buffer_one`` keeps at most one tick waiting, started by the first
  firing after the active run ends (workers look at least once per poll interval);
  ``cancel_previous`` cancels the active run and starts the latest tick.
"""

from __future__ import annotations

import enum
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
from croniter import CroniterError, croniter

from durable_sa.errors import InvalidArgumentError

if TYPE_CHECKING:
    from collections.abc import Iterator

LATE_GRACE: Final = timedelta(seconds=10)
"""How late a tick may always be started: a firing's normal lateness, not a catch-up."""

MAX_STARTS_PER_FIRE: Final = 100
"""Ticks one firing starts per schedule at most; the rest wait for the next firing."""

MAX_SCHEDULE_NAME: Final = 200
"""Schedule names are this long at most, so ``schedule:<name>:<ISO time>`` fits its column."""

_TICK: Final = timedelta(microseconds=1)
_NEVER: Final = timedelta(days=36_600)

_SEARCH_LIMIT: Final = 10_000
"""Candidate local times looked at before a cron expression is declared never to match."""

_FIRE_PREFIX: Final = "schedule:"
_FIRED: Final = re.compile(
    rf"{_FIRE_PREFIX}(?P<name>.+):(?P<tick>\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d[^:]*:\d\d)",
    re.DOTALL,
)
"""A :func:`fire_key`: the name, then its tick as ISO 8601 with an offset (``+00:00``)."""


class Overlap(enum.StrEnum):
    """What a tick does while the schedule's last run is still active."""

    SKIP = "skip"
    ALLOW = "allow"
    BUFFER_ONE = "buffer_one"
    CANCEL_PREVIOUS = "cancel_previous"


@attrs.frozen
class Cron:
    """A checked cron expression in a time zone; :meth:`next_after` gives its ticks."""

    expression: str
    timezone: str

    @classmethod
    def parse(cls, expression: str, timezone: str = "UTC") -> Cron:
        """Check ``expression`` (five fields, or six with seconds first) and ``timezone``.

        Raises:
            InvalidArgumentError: not a cron expression croniter accepts, a field count
                other than five or six, or not an IANA time zone name.

        """
        if not isinstance(expression, str) or len(expression.split()) not in {5, 6}:
            msg = (
                f"cron must be five fields (minute hour day month weekday) or six with "
                f"seconds first, not {expression!r}"
            )
            raise InvalidArgumentError(msg)
        expression = " ".join(expression.split())
        try:
            valid = croniter.is_valid(expression, second_at_beginning=True)
        except (CroniterError, ValueError, TypeError):
            valid = False
        if not valid:
            msg = f"cron {expression!r} is not a valid cron expression"
            raise InvalidArgumentError(msg)
        zone(timezone)
        return cls(expression, timezone)

    @property
    def with_seconds(self) -> bool:
        """Six fields: the first is seconds."""
        return len(self.expression.split()) == 6  # noqa: PLR2004 - six fields

    def _local_candidates(self, start: datetime) -> Iterator[datetime]:
        """Naive local times matching the expression, after naive ``start``."""
        it = croniter(self.expression, start, second_at_beginning=self.with_seconds)
        for _ in range(_SEARCH_LIMIT):
            try:
                yield it.get_next(datetime)
            except CroniterError:
                return

    def next_after(self, after: datetime) -> datetime | None:
        """The first tick strictly after aware ``after``, aware UTC; ``None`` if none ever.

        See the module rules for the ticks of skipped and repeated local hours.
        """
        tz = zone(self.timezone)
        local = after.astimezone(tz).replace(tzinfo=None, fold=0)
        # The naive start is an exclusive bound: step back a second so a tick at the
        # local instant of a repeated hour's second pass is still looked at.
        for naive in self._local_candidates(local - timedelta(seconds=1)):
            instant = to_utc(naive, tz)
            if instant > after:
                return instant
        return None

    def ticks(self, after: datetime, until: datetime, limit: int) -> list[datetime]:
        """Ticks in ``(after, until]``, oldest first, at most ``limit`` of them."""
        found: list[datetime] = []
        cursor = after
        while len(found) < limit:
            tick = self.next_after(cursor)
            if tick is None or tick > until:
                break
            found.append(tick)
            cursor = tick
        return found


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``.

    Raises:
        InvalidArgumentError: no such zone.

    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        msg = f"timezone {name!r} is not an IANA time zone name (e.g. 'Europe/Paris', 'UTC')"
        raise InvalidArgumentError(msg) from None


def exists(naive: datetime, tz: ZoneInfo) -> bool:
    """Whether the local wall time ``naive`` happens in ``tz`` (not in a DST gap)."""
    instant = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    return instant.astimezone(tz).replace(tzinfo=None) == naive


def to_utc(naive: datetime, tz: ZoneInfo) -> datetime:
    """The UTC instant of local wall time ``naive``: its first occurrence, or the gap's end.

    A time in a gap (clocks jumped over it) maps to the instant the clocks jumped, so
    every skipped tick of one gap lands on one instant, and fires once.
    """
    if exists(naive, tz):
        return naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    # In a gap: the jump lies between the two readings of the time; find it to the second.
    low = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)  # the later offset: earlier
    high = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    low, high = min(low, high), max(low, high)
    after_offset = high.astimezone(tz).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        middle = middle.replace(microsecond=0)
        if middle.astimezone(tz).utcoffset() == after_offset:
            high = middle
        else:
            low = middle
    return high


@attrs.frozen(kw_only=True)
class ScheduleState:
    """What a firing knows of one due schedule row."""

    cron: Cron
    overlap: Overlap
    catchup_window: timedelta | None
    next_fire_at: datetime
    """The schedule's earliest tick not yet fired or skipped."""
    buffered_at: datetime | None = None
    """A tick that ``buffer_one`` keeps waiting for the active run to end."""
    last_run_active: bool = False


@attrs.frozen(kw_only=True)
class FirePlan:
    """What one firing does to one schedule: all in the transaction that advances it."""

    starts: tuple[datetime, ...]
    """Fire times to start a run for, oldest first (each the run's idempotency key)."""
    cancel_last: bool = False
    """Cancel the schedule's last run first (``cancel_previous``)."""
    skipped: tuple[datetime, ...] = ()
    """Due ticks not started because they overlap an active run (or a later tick)."""
    missed: bool = False
    """Ticks older than the catch-up window were passed over (not listed)."""
    buffered_at: datetime | None = None
    next_fire_at: datetime | None
    """The next tick to look at; ``None`` when the expression never matches again."""


def decide_fire(state: ScheduleState, now: datetime) -> FirePlan:
    """Which of a schedule's due ticks to start, cancel, buffer or skip at ``now``."""
    window = max(state.catchup_window or LATE_GRACE, LATE_GRACE)
    cursor = state.next_fire_at
    late = cursor < now - window
    if late:  # skipped without listing them: a long downtime may hold millions of ticks
        cursor = state.cron.next_after(now - window - _TICK) or now + _NEVER
    due = state.cron.ticks(cursor - _TICK, now, MAX_STARTS_PER_FIRE)
    nxt = state.cron.next_after(due[-1] if due else cursor - _TICK)
    skipped: list[datetime] = []
    active = state.last_run_active
    buffered = state.buffered_at
    starts: list[datetime] = []
    if buffered is not None and not active:
        starts.append(buffered)
        buffered, active = None, True
    cancel_last = False
    if state.overlap is Overlap.CANCEL_PREVIOUS and due:
        cancel_last = active and not starts
        skipped.extend(due[:-1])
        starts.append(due[-1])
        return FirePlan(
            starts=tuple(starts),
            cancel_last=cancel_last,
            skipped=tuple(skipped),
            missed=late,
            next_fire_at=nxt,
        )
    for tick in due:
        if state.overlap is Overlap.ALLOW or not active:
            starts.append(tick)
            active = True
        elif state.overlap is Overlap.BUFFER_ONE and buffered is None:
            buffered = tick
        else:
            skipped.append(tick)
    return FirePlan(
        starts=tuple(starts),
        skipped=tuple(skipped),
        missed=late,
        buffered_at=buffered,
        next_fire_at=nxt,
    )


def fire_key(schedule_name: str, fire_time: datetime) -> str:
    """The idempotency key of the run a schedule starts for ``fire_time``.

    :func:`read_fire_key` reads it back (a name may hold colons: the time ends the key).
    """
    return f"{_FIRE_PREFIX}{schedule_name}:{fire_time.astimezone(UTC).isoformat()}"


def read_fire_key(idempotency_key: str | None) -> tuple[str, datetime] | None:
    """The schedule and tick (UTC) that :func:`fire_key` made ``idempotency_key`` of.

    ``None`` for any other key: one a caller chose, or a schedule's with a malformed time.
    """
    found = _FIRED.fullmatch(idempotency_key or "")
    if found is None:
        return None
    try:
        tick = datetime.fromisoformat(found["tick"])
    except ValueError:
        return None
    if tick.tzinfo is None:
        return None
    return found["name"], tick.astimezone(UTC)


def checked_overlap(value: object) -> Overlap:
    """``value`` as an :class:`Overlap`.

    Raises:
        InvalidArgumentError: not one of the four policies.

    """
    try:
        return Overlap(str(value))
    except ValueError:
        names = ", ".join(repr(o.value) for o in Overlap)
        msg = f"overlap must be one of {names}, not {value!r}"
        raise InvalidArgumentError(msg) from None


def checked_window(value: object) -> timedelta | None:
    """A catch-up window: ``None`` or a non-negative ``timedelta``.

    Raises:
        InvalidArgumentError: anything else.

    """
    if value is None:
        return None
    if not isinstance(value, timedelta) or value < timedelta(0):
        msg = f"catchup_window must be a non-negative timedelta or None, not {value!r}"
        raise InvalidArgumentError(msg)
    return value


@attrs.frozen(kw_only=True)
class ScheduleInfo:
    """A schedule as ``engine.schedules()`` reports it."""

    name: str
    workflow_name: str
    cron: str
    timezone: str
    overlap: Overlap
    catchup_window: timedelta | None
    input: dict[str, object] | None
    """The stored input; ``None`` when a callable makes it (``input_callable``)."""
    input_callable: bool
    paused: bool
    next_fire_at: datetime | None
    """The next tick to fire (``None``: the expression never matches again)."""
    last_fired_at: datetime | None
    last_run_id: int | None
    buffered_at: datetime | None
    last_error: str | None
    """Why the last firing could not start its run (the callable raised, the input did
    not fit the workflow); cleared by the next firing that starts one."""
    created_at: datetime
    updated_at: datetime
    hint: str | None = None
    """What to do about a schedule no worker fires: its next tick is more than
    :data:`LATE_GRACE` late (see :func:`overdue_hint`); ``None`` while it fires."""


def overdue_hint(  # noqa: PLR0913 - the schedule's row, keyword-only
    *,
    name: str,
    workflow_name: str,
    input_callable: bool,
    paused: bool,
    next_fire_at: datetime | None,
    now: datetime,
) -> str | None:
    """What to do about schedule ``name`` if no worker fires it, else ``None``.

    A worker fires a due schedule within moments; one whose tick is more than
    :data:`LATE_GRACE` late (past which an uncaught-up tick is not started at all) has
    no worker able to fire it: none runs that defines the workflow, or, for an input
    made by a callable, none whose process registered that callable (a callable cannot
    be stored, so workers that did not call ``engine.schedule`` leave the schedule to
    others). A paused schedule, or one that never fires again, needs nothing.
    """
    if paused or next_fire_at is None or now - next_fire_at <= LATE_GRACE:
        return None
    since = next_fire_at.astimezone(UTC).isoformat(timespec="seconds")
    if input_callable:
        return (
            f"not fired since {since}: its input is made by a callable, which only a "
            f"worker whose process called engine.schedule({name!r}, ...) can call; make "
            "that call in the module your workers import, or give a JSON mapping as "
            "input (is a worker of workflow "
            f"{workflow_name!r} running?)"
        )
    return (
        f"not fired since {since}: no worker that defines workflow {workflow_name!r} "
        "fires schedules; start one (durable-sa worker APP, without --no-schedules)"
    )


@attrs.frozen(kw_only=True)
class FiredTick:
    """A run a schedule started (or found started) for one tick."""

    schedule: str
    fire_time: datetime
    run_id: int
    created: bool = True
    """False when a run with the tick's idempotency key existed already."""
