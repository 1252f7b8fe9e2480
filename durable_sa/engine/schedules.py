"""Schedules, applied: save them, and fire due ticks in the transaction that advances them.

Rules:
- No leader, no beat process: every worker fires due schedules. Each due row is fired in
  its own transaction that locks it (``SKIP LOCKED`` on PostgreSQL, the one writer on
  SQLite), starts its runs, and advances ``next_fire_at``: a tick is started by exactly
  one transaction, and its run carries the idempotency key ``schedule:<name>:<ISO
  time>`` (:func:`~durable_sa.core.schedules.fire_key`), so even a replayed firing or a
  backfill over fired ticks starts no second run.
- Runs are started and canceled through the engine's one start and cancel path: the
  facade passes its ``start``/``cancel`` here, and they join the firing transaction.
- A tick whose run cannot start (its input callable raised, the input does not fit the
  workflow) is passed over: the schedule advances and keeps the error in ``last_error``
  rather than failing every poll. Database errors propagate (the worker retries).
"""

from __future__ import annotations

import functools
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

import attrs
from sqlalchemy.exc import DBAPIError

from durable_sa.core.codec import to_json_object
from durable_sa.core.schedule_inputs import schedule_inputs
from durable_sa.core.schedules import (
    Cron,
    FiredTick,
    Overlap,
    ScheduleInfo,
    ScheduleState,
    decide_fire,
    fire_key,
    overdue_hint,
)
from durable_sa.errors import InvalidArgumentError, ScheduleNotFoundError
from durable_sa.store import schedules as rows

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping
    from datetime import datetime

    from sqlalchemy import Row
    from sqlalchemy.orm import Session

    from durable_sa.core.codec import JSONObject
    from durable_sa.engine.shell import Shell

    Starter = Callable[[Session, str, JSONObject, str], tuple[int, bool]]
    """Start workflow ``name`` with ``input`` and key in the session: (run id, created)."""
    Canceler = Callable[[Session, int], None]
    """Cancel run ``run_id`` (and its tree) in the session."""

logger = logging.getLogger(__name__)

MAX_BACKFILL: Final = 10_000
"""Ticks one backfill starts at most."""

_MAX_ROWS_PER_PASS: Final = 1000


class _TickFailedError(Exception):
    """A schedule's tick could not start its run (not a database error)."""

    def __init__(self, schedule: str, error: Exception) -> None:
        super().__init__(schedule)
        self.schedule = schedule
        self.error = error


def info(row: Row[Any], *, now: datetime) -> ScheduleInfo:
    """A schedule row as the caller sees it at ``now``, with a hint if no worker fires it.

    Every reader and writer passes its ``now``: what ``engine.schedule`` returns says
    what ``engine.schedules()`` would.
    """
    window = row.catchup_window
    hint = overdue_hint(
        name=row.name,
        workflow_name=row.workflow_name,
        input_callable=bool(row.input_callable),
        paused=bool(row.paused),
        next_fire_at=row.next_fire_at,
        now=now,
    )
    return ScheduleInfo(
        name=row.name,
        workflow_name=row.workflow_name,
        cron=row.cron,
        timezone=row.timezone,
        overlap=Overlap(row.overlap),
        catchup_window=None if window is None else timedelta(seconds=window),
        input=row.input,
        input_callable=bool(row.input_callable),
        paused=bool(row.paused),
        next_fire_at=row.next_fire_at,
        last_fired_at=row.last_fired_at,
        last_run_id=row.last_run_id,
        buffered_at=row.buffered_at,
        last_error=row.last_error,
        created_at=row.created_at,
        updated_at=row.updated_at,
        hint=hint,
    )


def save(  # noqa: PLR0913 - a schedule's parts, keyword-only
    shell: Shell,
    *,
    name: str,
    workflow_name: str,
    cron: Cron,
    input: JSONObject | None,  # noqa: A002 - the contract's name
    input_callable: bool,
    overlap: Overlap,
    catchup_window: timedelta | None,
    session: Session | None = None,
) -> ScheduleInfo:
    """Create schedule ``name``, or update it; its next tick is recomputed if the time changed.

    Raises:
        InvalidArgumentError: ``cron`` never fires (a date no year has, 30 February).

    """
    if cron.next_after(shell.now()) is None:
        msg = (
            f"cron {cron.expression!r} never fires (no date matches its day and month "
            "fields); check them"
        )
        raise InvalidArgumentError(msg)

    def work(tx: Session) -> ScheduleInfo:
        now = shell.now()
        values: dict[str, Any] = {
            "workflow_name": workflow_name,
            "cron": cron.expression,
            "timezone": cron.timezone,
            "input": input,
            "input_callable": input_callable,
            "overlap": overlap.value,
            "catchup_window": None if catchup_window is None else catchup_window.total_seconds(),
            "updated_at": now,
        }
        row = rows.load(tx, name, lock=True)
        if row is None:
            created = {**values, "name": name, "next_fire_at": cron.next_after(now)}
            if rows.insert_row(tx, {**created, "created_at": now}):
                return info(_saved(tx, name), now=now)
            row = rows.load(tx, name, lock=True)  # another caller created it just now
        if row is None:  # pragma: no cover - deleted between the insert and this read
            raise ScheduleNotFoundError(name)
        if (row.cron, row.timezone) != (cron.expression, cron.timezone):
            values["next_fire_at"] = cron.next_after(now)
        rows.update_row(tx, name, values)
        return info(_saved(tx, name), now=now)

    return shell.transaction(work, session=session)


def _saved(tx: Session, name: str) -> Row[Any]:
    """The row just written in ``tx``."""
    saved = rows.load(tx, name)
    if saved is None:  # pragma: no cover - written in this transaction
        raise ScheduleNotFoundError(name)
    return saved


def get(shell: Shell, name: str) -> ScheduleInfo:
    """Schedule ``name``.

    Raises:
        ScheduleNotFoundError: no such schedule.

    """
    with shell.reading() as session:
        row = rows.load(session, name)
    if row is None:
        raise ScheduleNotFoundError(name)
    return info(row, now=shell.now())


def every(shell: Shell) -> list[ScheduleInfo]:
    """Every schedule, by name, each with a hint if no worker fires it."""
    now = shell.now()
    with shell.reading() as session:
        return [info(row, now=now) for row in rows.load_all(session)]


def remove(shell: Shell, name: str) -> None:
    """Delete schedule ``name`` (its runs stay).

    Raises:
        ScheduleNotFoundError: no such schedule.

    """
    with shell.sessions.begin() as tx:
        if rows.delete_row(tx, name) == 0:
            raise ScheduleNotFoundError(name)
    schedule_inputs.unregister(name)


def set_paused(shell: Shell, name: str, *, paused: bool) -> ScheduleInfo:
    """Pause schedule ``name``, or resume it from its next tick after now.

    Ticks that came while it was paused are not started, nor is a buffered one.

    Raises:
        ScheduleNotFoundError: no such schedule.

    """

    def work(tx: Session) -> ScheduleInfo:
        row = rows.load(tx, name, lock=True)
        if row is None:
            raise ScheduleNotFoundError(name)
        now = shell.now()
        values: dict[str, Any] = {"paused": paused, "updated_at": now}
        if not paused and row.paused:
            values |= {
                "next_fire_at": Cron(row.cron, row.timezone).next_after(now),
                "buffered_at": None,
            }
        rows.update_row(tx, name, values)
        return info(_saved(tx, name), now=now)

    return shell.transaction(work)


def _input_for(row: Row[Any], fire_time: datetime) -> JSONObject:
    if not row.input_callable:
        return dict(row.input or {})
    maker = schedule_inputs.get(row.name)
    if maker is None:
        msg = (
            f"schedule {row.name!r} takes its input from a callable this process has not "
            f"registered; run engine.schedule({row.name!r}, ...) in this process first"
        )
        raise InvalidArgumentError(msg)
    made: Mapping[str, Any] = maker(fire_time)
    return to_json_object(made, what=f"the input schedule {row.name!r} made for {fire_time}")


def backfill(
    shell: Shell,
    name: str,
    start: datetime,
    end: datetime,
    *,
    starter: Starter,
) -> list[FiredTick]:
    """Start a run for every tick of schedule ``name`` in ``[start, end)``, oldest first.

    Overlap and catch-up do not apply; a tick that has a run already (fired, or
    backfilled before) is reported with ``created=False`` and not started again.

    Raises:
        ScheduleNotFoundError: no such schedule.
        InvalidArgumentError: naive or reversed bounds, an end after now (those ticks
            fire by themselves), or more than :data:`MAX_BACKFILL` ticks.

    """
    for bound in (start, end):
        if bound.tzinfo is None or bound.utcoffset() is None:
            msg = f"backfill needs timezone-aware bounds, not {bound!r}"
            raise InvalidArgumentError(msg)
    if end < start:
        msg = f"backfill's end ({end}) is before its start ({start})"
        raise InvalidArgumentError(msg)
    now = shell.now()
    if end > now:  # a tick started early would take the key of its own firing later
        msg = (
            f"backfill's end ({end.isoformat()}) is after now ({now.isoformat()}): ticks "
            "from now on fire by themselves; end the range at now at the latest"
        )
        raise InvalidArgumentError(msg)

    def work(tx: Session) -> list[FiredTick]:
        row = rows.load(tx, name)
        if row is None:
            raise ScheduleNotFoundError(name)
        cron = Cron(row.cron, row.timezone)
        ticks = [
            t
            for t in cron.ticks(start - timedelta(microseconds=1), end, MAX_BACKFILL + 1)
            if t < end
        ]
        if len(ticks) > MAX_BACKFILL:
            msg = f"backfill of {name!r} would start over {MAX_BACKFILL} runs; split the range"
            raise InvalidArgumentError(msg)
        fired = []
        for tick in ticks:
            run_id, created = starter(
                tx, row.workflow_name, _input_for(row, tick), fire_key(name, tick)
            )
            fired.append(FiredTick(schedule=name, fire_time=tick, run_id=run_id, created=created))
        return fired

    return shell.transaction(work)


def earliest(shell: Shell, workflows: Collection[str]) -> datetime | None:
    """The earliest next tick of the unpaused schedules of ``workflows`` this process fires."""
    with shell.reading() as session:
        return rows.earliest_fire(session, workflows=workflows, callables=schedule_inputs.names())


def fire_due(
    shell: Shell,
    *,
    workflows: Collection[str],
    starter: Starter,
    canceler: Canceler,
    now: datetime | None = None,
) -> list[FiredTick]:
    """Fire every due schedule of ``workflows`` that no other worker is firing now.

    Each schedule in its own transaction (see the module rules); returns the runs started.
    """
    fired: list[FiredTick] = []
    passed: set[str] = set()  # looked at in this pass: left to others, or failed
    for _ in range(_MAX_ROWS_PER_PASS):
        at = now or shell.now()
        try:
            name, started = shell.transaction(
                functools.partial(
                    _fire_one,
                    now=at,
                    workflows=workflows,
                    passed=passed,
                    starter=starter,
                    canceler=canceler,
                )
            )
        except _TickFailedError as failed:  # one bad tick must not stop the others
            passed.add(failed.schedule)
            _pass_over(shell, failed.schedule, at, failed.error)
            continue
        if name is None:
            break
        fired.extend(started)  # committed: a retried transaction reports its runs once
        passed.add(name)
    return fired


def _fire_one(  # noqa: PLR0913 - one firing's parts
    tx: Session,
    *,
    now: datetime,
    workflows: Collection[str],
    passed: set[str],
    starter: Starter,
    canceler: Canceler,
) -> tuple[str | None, list[FiredTick]]:
    """Fire one due schedule row in ``tx``: its name and runs; no name when none is due."""
    due = rows.lock_due(tx, now=now, workflows=workflows, passed=passed, limit=1)
    if not due:
        return None, []
    row = due[0]
    if row.input_callable and schedule_inputs.get(row.name) is None:
        return str(row.name), []  # left to a worker that registered its callable
    try:
        started = _apply(tx, row, now, starter, canceler)
    except DBAPIError:
        raise
    except Exception as exc:
        raise _TickFailedError(str(row.name), exc) from exc
    return str(row.name), started


def _apply(
    tx: Session, row: Row[Any], now: datetime, starter: Starter, canceler: Canceler
) -> list[FiredTick]:
    status = rows.run_status(tx, row.last_run_id)
    cron = Cron(row.cron, row.timezone)
    window = row.catchup_window
    state = ScheduleState(
        cron=cron,
        overlap=Overlap(row.overlap),
        catchup_window=None if window is None else timedelta(seconds=window),
        next_fire_at=row.next_fire_at if row.next_fire_at is not None else now,
        buffered_at=row.buffered_at,
        last_run_active=status is not None and not status.is_terminal,
    )
    plan = decide_fire(state, now)
    if row.next_fire_at is None:  # only a buffered tick brought it here
        plan = attrs.evolve(plan, next_fire_at=None)
    if plan.cancel_last and row.last_run_id is not None:
        canceler(tx, row.last_run_id)
    started: list[FiredTick] = []
    for tick in plan.starts:
        key = fire_key(row.name, tick)
        run_id, created = starter(tx, row.workflow_name, _input_for(row, tick), key)
        started.append(FiredTick(schedule=row.name, fire_time=tick, run_id=run_id, created=created))
    values: dict[str, Any] = {
        "next_fire_at": plan.next_fire_at,
        "buffered_at": plan.buffered_at,
        "last_error": None,
        "updated_at": now,
    }
    if started:
        values |= {"last_fired_at": started[-1].fire_time, "last_run_id": started[-1].run_id}
    rows.update_row(tx, row.name, values)
    if plan.missed or plan.skipped:
        logger.info(
            "schedule %s passed over %s tick(s)%s",
            row.name,
            len(plan.skipped),
            " and every tick older than its catch-up window" if plan.missed else "",
            extra={"action": "schedule_skipped", "schedule": row.name},
        )
    return started


def _pass_over(shell: Shell, name: str, now: datetime, error: Exception) -> None:
    """Advance schedule ``name`` past the ticks due at ``now`` and keep ``error``."""
    logger.error(
        "schedule %s could not start its run: %s: %s",
        name,
        type(error).__name__,
        error,
        extra={"action": "schedule_failed", "schedule": name},
    )

    def work(tx: Session) -> None:
        row = rows.load(tx, name, lock=True)
        if row is None:
            return
        rows.update_row(
            tx,
            name,
            {
                "next_fire_at": Cron(row.cron, row.timezone).next_after(now),
                "buffered_at": None,
                "last_error": f"{type(error).__name__}: {error}"[:2000],
                "updated_at": now,
            },
        )

    shell.transaction(work)
