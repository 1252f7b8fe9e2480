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
- Grant times are the database's clock on PostgreSQL (``clock_timestamp()``, read after
  the lock is held, so grants are ordered as they were decided) and the engine's clock
  on SQLite (one file, one host: there is no other clock to share).
- Whether a workflow is paused is read through :class:`PausedCache`: one cached read
  per ``ttl`` while nothing is paused, and an exact read whenever the cache says a
  workflow is, so unpausing takes effect at once.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

from sqlalchemy import and_, bindparam, delete, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from durable_sa.core.rates import RateLimit, Wait, decide_grant, must_leave, window_start
from durable_sa.store.models import paused_table, rate_grants_table, rate_limits_table
from durable_sa.store.notify import JOBS_CHANNEL

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from sqlalchemy.orm import Session, sessionmaker

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


def take_grants(
    session: Session,
    demand: Mapping[str, int],
    *,
    clock: Callable[[], datetime],
    unset_recheck: timedelta,
) -> Wait | None:
    """Grant the executions ``demand`` asks for, all or none, in ``session``'s transaction.

    ``None``: granted and recorded; else how long the step must wait (nothing recorded).
    ``clock`` is the engine's, read on SQLite only, once the write lock is held. Limits
    are locked in name order, so two steps that need the same limits never wait on each
    other in a cycle.
    """
    names = sorted(demand)
    postgres = session.get_bind().dialect.name == "postgresql"
    if not postgres:  # take SQLite's write lock before reading anything
        session.execute(update(limits).where(limits.c.name.in_(names)).values(limit=limits.c.limit))
    rows = session.execute(
        select(limits.c.name, limits.c.limit, limits.c.per_ms)
        .where(limits.c.name.in_(names))
        .order_by(limits.c.name)
        .with_for_update()
    ).all()
    found = {row.name: _limit(row.name, row.limit, row.per_ms) for row in rows}
    now: datetime | None = None if postgres else clock().astimezone(UTC)
    waits: list[Wait] = []
    for name in names:
        limit = found.get(name)
        in_window, oldest = 0, []
        if limit is not None:
            now, in_window = _count_in_window(session, limit, now)
            over = must_leave(limit, wanted=demand[name], in_window=in_window)
            if 0 < over <= in_window:
                oldest = _oldest(session, limit, now, over)
        wait = decide_grant(
            name,
            limit,
            wanted=demand[name],
            in_window=in_window,
            oldest=oldest,
            now=now or clock(),
            unset_recheck=unset_recheck,
        )
        if wait is not None:
            waits.append(wait)
    if waits or now is None:
        return max(waits, key=lambda wait: wait.delay, default=None)
    for name in names:
        session.execute(
            delete(grants).where(
                grants.c.name == name, grants.c.granted_at <= window_start(found[name], now)
            )
        )
        session.execute(insert(grants), [{"name": name, "granted_at": now}] * demand[name])
    return None


def _count_in_window(
    session: Session, limit: RateLimit, now: datetime | None
) -> tuple[datetime, int]:
    """The decision's instant and how many grants of ``limit`` lie in its window.

    ``now`` is ``None`` on PostgreSQL for the first limit: the database's clock is read
    in the same statement as the count, after the limit's row is locked.
    """
    if now is None:
        clock = select(func.clock_timestamp().label("now")).subquery()
        row = session.execute(
            select(clock.c.now, func.count(grants.c.id))
            .select_from(
                clock.outerjoin(
                    grants,
                    and_(
                        grants.c.name == limit.name,
                        grants.c.granted_at > clock.c.now - bindparam("per", limit.per),
                    ),
                )
            )
            .group_by(clock.c.now)
        ).one()
        return row[0].astimezone(UTC), int(row[1])
    counted = session.execute(
        select(func.count()).where(
            grants.c.name == limit.name, grants.c.granted_at > window_start(limit, now)
        )
    ).scalar_one()
    return now, int(counted)


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


def unpause(session: Session, workflow_name: str) -> bool:
    """Unpause ``workflow_name``; whether it was paused. Wakes PostgreSQL workers on commit."""
    removed = _rowcount(
        session.execute(delete(paused).where(paused.c.workflow_name == workflow_name))
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
    the cached set does not hold counts as running (a pause reaches a relay backend's
    consumers within ``ttl``; the jobs-table claim filters paused workflows itself, in
    its own statement). A workflow the set holds is read again exactly, so a job is
    never held back by a pause that has ended.
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
            with self._sessions() as session:
                names = frozenset(session.execute(select(paused.c.workflow_name)).scalars())
            self._names = names
            self._read_at = time.monotonic()
