"""The statements behind shared rate limits and paused workflows.

Rules:
- Limits and paused workflows live in the database (``durable_rate_limits``,
  ``durable_paused_workflows``), so every worker of every process sees the same ones and
  a change takes effect while they run.
- A grant is decided with the limit's row locked (``SELECT ... FOR UPDATE`` on
  PostgreSQL; on SQLite a write to the row first takes the database's one write lock),
  counting the grants still in the window, then recording the new ones: at READ
  COMMITTED with any number of workers, two grants of one limit are never decided on
  the same count. The decision itself is pure (:func:`durable_sa.core.rates.decide_grant`).
- A worker's batch of grants is recorded a little ahead of its time
  (:func:`durable_sa.core.grant_batches.horizon`), so it may keep grants for steps about
  to begin (:mod:`durable_sa.core.grant_batches` says why the limit stays exact); grants
  it never used are deleted (:func:`give_back`).
- Grant times are the database's clock on PostgreSQL (``clock_timestamp()``, read after
  the lock is held, so grants are ordered as they were decided) and the engine's clock
  on SQLite (one file, one host: there is no other clock to share).
- On PostgreSQL a grant is one call of a database function
  (:mod:`durable_sa.store.grant_function`): lock, count and record in one round trip,
  which a worker makes on a connection it holds in autocommit mode.
- Whether a workflow is paused is read through :class:`PausedCache`: one cached read
  per ``ttl`` while nothing is paused, and an exact read whenever the cache says a
  workflow is, so unpausing takes effect at once.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

from sqlalchemy import bindparam, delete, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import ProgrammingError

from durable_sa.core.grant_batches import LimitRoom, horizon
from durable_sa.core.rates import RateLimit, Wait, decide_grant, must_leave, window_start
from durable_sa.store.grant_function import FUNCTION, take_grants_call
from durable_sa.store.models import (
    jobs_table,
    outbox_table,
    paused_table,
    rate_grants_table,
    rate_limits_table,
)
from durable_sa.store.notify import JOBS_CHANNEL

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from sqlalchemy import Connection
    from sqlalchemy.orm import Session, sessionmaker

    from durable_sa.core.grant_batches import Demand

limits = rate_limits_table
grants = rate_grants_table
paused = paused_table

PAUSED_TTL: Final = 1.0
"""Seconds a worker trusts its read that a workflow is not paused (see PausedCache)."""


def _upsert(session: Session) -> type[postgresql.Insert | sqlite.Insert]:
    dialect = session.get_bind().dialect.name
    return postgresql.Insert if dialect == "postgresql" else sqlite.Insert


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _ms(per: timedelta) -> int:
    return max(1, round(per / timedelta(milliseconds=1)))


# ── rate limits ─────────────────────────────────────────────────────────────────


def set_rate_limit(session: Session, limit: RateLimit, *, now: datetime) -> None:
    """Create or change ``limit``; every worker uses it for the next grant it decides."""
    values = {"name": limit.name, "limit": limit.limit, "per_ms": _ms(limit.per), "updated_at": now}
    stmt = _upsert(session)(limits).values(values)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[limits.c.name],
            set_={"limit": limit.limit, "per_ms": _ms(limit.per), "updated_at": now},
        )
    )


def remove_rate_limit(session: Session, name: str) -> bool:
    """Delete the limit ``name`` and its grants; whether it existed."""
    removed = _rowcount(session.execute(delete(limits).where(limits.c.name == name)))
    session.execute(delete(grants).where(grants.c.name == name))
    return bool(removed)


def read_rate_limits(session: Session) -> list[RateLimit]:
    """Every limit set, by name."""
    rows = session.execute(select(limits.c.name, limits.c.limit, limits.c.per_ms).order_by("name"))
    return [_limit(row.name, row.limit, row.per_ms) for row in rows]


def _limit(name: str, limit: int, per_ms: int) -> RateLimit:
    return RateLimit(name, int(limit), timedelta(milliseconds=int(per_ms)))


class GrantRefused(Exception):  # noqa: N818 - not an error: the answer "not now"
    """Raised out of :func:`take_grants` to roll its transaction back: the step must wait."""

    def __init__(self, wait: Wait) -> None:
        """Carry the ``wait``."""
        super().__init__(wait.reason)
        self.wait = wait


def take_grants(
    session: Session,
    demand: Mapping[str, int],
    *,
    clock: Callable[[], datetime],
    unset_recheck: timedelta,
    ahead: bool = False,
) -> tuple[LimitRoom, ...]:
    """Grant the executions ``demand`` asks for, all or none, in ``session``'s transaction.

    Returns what each limit held and when the grants are recorded, once they are (the
    caller commits). Limits are locked in name order, so two steps that need the same
    limits never wait on each other in a cycle. ``clock`` is the engine's, read on SQLite
    only, once the write lock is held. On PostgreSQL the grant is the database
    function's (:func:`grant_pg`).

    Raises:
        GrantRefused: a limit does not let the step begin now (nothing is recorded once
            the caller's transaction rolls back).

    """
    if session.get_bind().dialect.name == "postgresql":
        answer = grant_pg(session.connection(), demand, unset_recheck=unset_recheck, ahead=ahead)
        if isinstance(answer, Wait):
            raise GrantRefused(answer)
        return answer
    names = sorted(demand)
    # take SQLite's write lock before reading anything
    session.execute(update(limits).where(limits.c.name.in_(names)).values(limit=limits.c.limit))
    rows = session.execute(_LOCK, {"names": names}).all()
    found = {row.name: _limit(row.name, row.limit, row.per_ms) for row in rows}
    waits: list[Wait] = []
    rooms: list[LimitRoom] = []
    for name in names:
        limit = found.get(name)
        wanted = demand[name]
        now = clock().astimezone(UTC)
        in_window = 0
        if limit is not None:
            in_window = _count(session, limit, now)
            rooms.append(_room(limit, in_window, now, ahead=ahead))
            _record(session, rooms[-1], wanted, now)
        over = must_leave(limit, wanted=wanted, in_window=in_window) if limit else 0
        wait = decide_grant(
            name,
            limit,
            wanted=wanted,
            in_window=in_window,
            oldest=_oldest(session, limit, now, over) if limit and 0 < over <= in_window else [],
            now=now,
            unset_recheck=unset_recheck,
        )
        if wait is not None:
            waits.append(wait)
    if waits:
        raise GrantRefused(max(waits, key=lambda wait: wait.delay))
    return tuple(rooms)


def _room(limit: RateLimit, in_window: int, now: datetime, *, ahead: bool) -> LimitRoom:
    """What ``limit`` held at ``now``, and when a grant taken then is recorded."""
    return LimitRoom(
        name=limit.name,
        limit=limit.limit,
        per=limit.per,
        in_window=in_window,
        recorded_at=now + horizon(limit.per) if ahead else now,
    )


def give_back(
    conn: Connection | Session, rooms: Sequence[LimitRoom], count: int, demand: Demand
) -> None:
    """Delete ``count`` times ``demand`` of the grants recorded as ``rooms`` say (unused).

    A grant a worker kept and never used is as if never taken: deleting it gives its
    place in the window back. Which rows go does not matter: grants of one limit
    recorded at one instant are alike.
    """
    wanted = dict(demand)
    for room in rooms:
        mine = (
            select(grants.c.id)
            .where(grants.c.name == room.name, grants.c.granted_at == room.recorded_at)
            .limit(count * wanted[room.name])
            .scalar_subquery()
        )
        conn.execute(delete(grants).where(grants.c.id.in_(mine)))


def grant_pg(
    conn: Connection, demand: Mapping[str, int], *, unset_recheck: timedelta, ahead: bool = False
) -> tuple[LimitRoom, ...] | Wait:
    """PostgreSQL: grant ``demand``, all or none, in one call of the database function.

    ``conn`` may be in autocommit mode (the call is atomic by itself) or in a
    transaction. The function records the grants only if every limit has room; the
    pure decision is made here on what it read, and the two must agree. Returns
    what each limit held and when the grants are recorded when granted, else the
    longest wait. ``ahead``: a batch, recorded ahead by the horizon.

    A database without the function (migrated before it existed) makes the step wait,
    as for a limit that is not set, with a reason that says how to create it.

    Raises:
        RuntimeError: the function answered for other limits than asked.

    """
    names = sorted(demand)
    try:
        rows = conn.execute(
            take_grants_call(conn),
            {"names": names, "wanted": [demand[name] for name in names], "ahead": ahead},
        ).all()
    except ProgrammingError as exc:
        if getattr(exc.orig, "sqlstate", None) != _UNDEFINED_FUNCTION:
            raise
        return Wait(unset_recheck, _MISSING_FUNCTION, misconfigured=True)
    waits: list[Wait] = []
    rooms: list[LimitRoom] = []
    for row in rows:
        limit = _limit(row.g_name, row.g_limit, row.g_per_ms) if row.g_found else None
        now = row.g_now.astimezone(UTC)
        if limit is not None:
            rooms.append(_room(limit, int(row.g_in_window), now, ahead=ahead))
        wait = decide_grant(
            row.g_name,
            limit,
            wanted=demand[row.g_name],
            in_window=int(row.g_in_window),
            oldest=list(row.g_oldest or []),
            now=now,
            unset_recheck=unset_recheck,
        )
        if wait is not None:
            waits.append(wait)
    if [row.g_name for row in rows] != names:  # pragma: no cover - the function's contract
        msg = f"{FUNCTION} answered for {[row.g_name for row in rows]}, not {names}"
        raise RuntimeError(msg)
    return max(waits, key=lambda wait: wait.delay) if waits else tuple(rooms)


_UNDEFINED_FUNCTION: Final = "42883"
_MISSING_FUNCTION: Final = (
    f"the database lacks the function {FUNCTION} that rate limits need on PostgreSQL: "
    "run engine.create_tables(), or durable_sa.schema.create_triggers(op) in a migration "
    "(the step waits until it exists)"
)

_LOCK: Final = (
    select(limits.c.name, limits.c.limit, limits.c.per_ms)
    .where(limits.c.name.in_(bindparam("names", expanding=True)))
    .order_by(limits.c.name)
    .with_for_update()
)


def _count(session: Session, limit: RateLimit, now: datetime) -> int:
    """How many grants of ``limit`` lie in the window that ends ``now``."""
    return int(
        session.execute(
            select(func.count()).where(
                grants.c.name == limit.name, grants.c.granted_at > window_start(limit, now)
            )
        ).scalar_one()
    )


def _record(session: Session, room: LimitRoom, wanted: int, now: datetime) -> None:
    """Record ``wanted`` grants (at ``room.recorded_at``); delete those out of the window."""
    start = now - room.per
    session.execute(delete(grants).where(grants.c.name == room.name, grants.c.granted_at <= start))
    session.execute(insert(grants), [{"name": room.name, "granted_at": room.recorded_at}] * wanted)


def _oldest(session: Session, limit: RateLimit, now: datetime, how_many: int) -> list[datetime]:
    """The times of the ``how_many`` oldest grants of ``limit`` in the window ending ``now``."""
    return list(
        session.execute(
            select(grants.c.granted_at)
            .where(grants.c.name == limit.name, grants.c.granted_at > window_start(limit, now))
            .order_by(grants.c.granted_at)
            .limit(how_many)
        ).scalars()
    )


# ── paused workflows ────────────────────────────────────────────────────────────


def pause(session: Session, workflow_name: str, *, now: datetime) -> bool:
    """Pause ``workflow_name``; whether it was running (not paused already)."""
    stmt = _upsert(session)(paused).values(workflow_name=workflow_name, paused_at=now)
    stmt = stmt.on_conflict_do_nothing(index_elements=[paused.c.workflow_name])
    return session.execute(stmt.returning(paused.c.workflow_name)).first() is not None


def paused_reason(workflow_name: str) -> str:
    """What a job held back by a pause records as its ``last_error`` (and the log says)."""
    return f"workflow {workflow_name!r} is paused (engine.unpause or durable-sa unpause)"


def unpause(session: Session, workflow_name: str, *, now: datetime) -> bool:
    """Unpause ``workflow_name``; whether it was paused.

    The jobs a pause gave back (a relay backend's deliveries, or a job claimed just
    before the pause) become due ``now`` instead of at their recheck, in the jobs table
    and in the outbox alike; PostgreSQL workers are woken on commit.
    """
    removed = _rowcount(
        session.execute(delete(paused).where(paused.c.workflow_name == workflow_name))
    )
    reason = paused_reason(workflow_name)
    # A job row not held by a claim, an outbox row not yet published: what waits to run.
    for table, waiting in (
        (jobs_table, jobs_table.c.claimed_until.is_(None)),
        (outbox_table, outbox_table.c.published_at.is_(None)),
    ):
        session.execute(
            update(table)
            .where(
                table.c.workflow_name == workflow_name,
                waiting,
                table.c.last_error == reason,
                table.c.available_at > now,
            )
            .values(available_at=now)
        )
    if removed and session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": JOBS_CHANNEL})
    return bool(removed)


def paused_workflows(session: Session) -> list[str]:
    """The names of the paused workflows, sorted."""
    return list(session.execute(select(paused.c.workflow_name).order_by("workflow_name")).scalars())


class PausedCache:
    """Whether a workflow is paused, for the path every job takes: cheap when none is.

    The set of paused workflows is read at most once per ``ttl`` seconds; a workflow
    the cached set does not hold counts as running, so a pause reaches every process
    within ``ttl`` (``engine.pause`` waits that long before it returns; the jobs-table
    claim also filters paused workflows itself, in its own statement). A workflow the
    set holds is read again exactly, so a job is never held back by a pause that has
    ended.
    """

    def __init__(self, sessions: sessionmaker[Session], *, ttl: float = PAUSED_TTL) -> None:
        """Read through ``sessions``; trust a read for ``ttl`` seconds."""
        self._sessions = sessions
        self._ttl = ttl
        self._lock = threading.Lock()
        self._names: frozenset[str] = frozenset()
        self._read_at = -float("inf")

    def forget(self) -> None:
        """Read again on the next question (this process paused or unpaused something)."""
        self._read_at = -float("inf")

    def is_paused(self, workflow_name: str) -> bool:
        """Whether ``workflow_name`` is paused now (see the class for how exact)."""
        if time.monotonic() - self._read_at >= self._ttl:
            self._refresh()
        if workflow_name not in self._names:
            return False
        with self._sessions() as session:
            found = session.execute(
                select(paused.c.workflow_name).where(paused.c.workflow_name == workflow_name)
            ).first()
        if found is None:
            self._refresh()
        return found is not None

    def _refresh(self) -> None:
        with self._lock:
            began = time.monotonic()  # what the read saw was committed before it began
            with self._sessions() as session:
                names = frozenset(session.execute(select(paused.c.workflow_name)).scalars())
            self._names = names
            self._read_at = began
