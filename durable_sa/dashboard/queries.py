"""The dashboard's read models: bounded queries over durable-sa's tables.

Every read here is bounded, so a history of a million runs renders as fast as ten:
listings are keyset-paginated on the primary key (``id < before ... ORDER BY id DESC
LIMIT n``), child counts and worker holdings are read for one page of ids at a time,
and statistics are computed over the most recent runs only (:data:`STATS_SAMPLE`).
What the engine already reads for people (a run's status tree, dead letters, workers,
schedules, rate limits, paused workflows) is read through its public calls, not again.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import attrs
from sqlalchemy import func, or_, select

from durable_sa.core.registry import registry
from durable_sa.core.status import RunStatus
from durable_sa.store.models import jobs_table, journal_table, runs_table, slots_table

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

PAGE_SIZE: Final = 50
"""Runs per page of the runs listing."""
JOURNAL_CAP: Final = 500
"""Journal rows shown for one run (the newest are kept when a run has more)."""
STATS_SAMPLE: Final = 5000
"""How many of the most recent runs the workflows page's throughput and percentiles read."""
COUNT_WINDOW: Final = 100_000
"""The workflows page counts ended runs among this many newest ids (live runs: all)."""
HELD_CAP: Final = 20
"""Jobs shown per worker."""
SLOTS_CAP: Final = 200
"""Concurrency slots shown on the limits page."""

BIGINT_DIGITS: Final = 19
"""Ids with fewer digits fit a BIGINT column; longer ones match no run."""

runs = runs_table


@attrs.frozen(kw_only=True)
class RunFilter:
    """What the runs page is asked for (all optional, combined with AND)."""

    workflow: str | None = None
    status: RunStatus | None = None
    since: datetime | None = None
    key: str | None = None
    """An idempotency or concurrency key, exactly."""
    search: str | None = None
    """A run id, or an idempotency key."""
    top_level: bool = True
    before: int | None = None
    """Keyset: only runs with a smaller id (the next page)."""


@attrs.frozen(kw_only=True)
class RunRow:
    """One line of the runs listing."""

    id: int
    workflow_name: str
    workflow_version: str | None
    status: str
    current_step: int
    total_steps: int
    parent_run_id: int | None
    idempotency_key: str | None
    concurrency_key: str | None
    error: str | None
    wait_kind: str | None
    awaiting_signal: str | None
    created_at: datetime | None
    updated_at: datetime | None
    children: dict[str, int] = attrs.field(factory=dict)
    """The run's direct children, counted by status."""


@attrs.frozen(kw_only=True)
class RunPage:
    """A page of runs and where the next one starts (``None``: this is the last)."""

    rows: list[RunRow]
    next_before: int | None


def _row(row: Any, children: dict[str, int]) -> RunRow:  # noqa: ANN401 - a result row
    return RunRow(
        id=int(row.id),
        workflow_name=row.workflow_name,
        workflow_version=row.workflow_version,
        status=str(row.status),
        current_step=int(row.current_step),
        total_steps=int(row.total_steps),
        parent_run_id=row.parent_run_id,
        idempotency_key=row.idempotency_key,
        concurrency_key=row.concurrency_key,
        error=row.error,
        wait_kind=row.wait_kind,
        awaiting_signal=row.awaiting_signal,
        created_at=row.created_at,
        updated_at=row.updated_at,
        children=children,
    )


_LIST_COLUMNS = (
    runs.c.id,
    runs.c.workflow_name,
    runs.c.workflow_version,
    runs.c.status,
    runs.c.current_step,
    runs.c.total_steps,
    runs.c.parent_run_id,
    runs.c.idempotency_key,
    runs.c.concurrency_key,
    runs.c.error,
    runs.c.wait_kind,
    runs.c.awaiting_signal,
    runs.c.created_at,
    runs.c.updated_at,
)


def run_page(session: Session, wanted: RunFilter, *, size: int = PAGE_SIZE) -> RunPage:
    """One page of runs, newest first, with their children counted by status."""
    stmt = select(*_LIST_COLUMNS).order_by(runs.c.id.desc()).limit(size + 1)
    if wanted.search:
        text = wanted.search.strip()
        clauses = [runs.c.idempotency_key == text]
        if text.isdigit() and len(text) < BIGINT_DIGITS:
            clauses.append(runs.c.id == int(text))
        stmt = stmt.where(or_(*clauses))
    else:
        if wanted.top_level:
            stmt = stmt.where(runs.c.parent_run_id.is_(None))
        if wanted.workflow:
            stmt = stmt.where(runs.c.workflow_name == wanted.workflow)
        if wanted.status is not None:
            stmt = stmt.where(runs.c.status == wanted.status)
        if wanted.since is not None:
            stmt = stmt.where(runs.c.created_at >= wanted.since)
        if wanted.key:
            stmt = stmt.where(
                or_(runs.c.idempotency_key == wanted.key, runs.c.concurrency_key == wanted.key)
            )
    if wanted.before is not None:
        stmt = stmt.where(runs.c.id < wanted.before)
    found = session.execute(stmt).all()
    more = len(found) > size
    found = found[:size]
    counts = child_counts(session, [int(row.id) for row in found])
    rows = [_row(row, counts.get(int(row.id), {})) for row in found]
    return RunPage(rows=rows, next_before=rows[-1].id if more and rows else None)


def child_counts(session: Session, parent_ids: list[int]) -> dict[int, dict[str, int]]:
    """The direct children of ``parent_ids`` (one page), counted by status."""
    if not parent_ids:
        return {}
    stmt = (
        select(runs.c.parent_run_id, runs.c.status, func.count())
        .where(runs.c.parent_run_id.in_(parent_ids))
        .group_by(runs.c.parent_run_id, runs.c.status)
    )
    out: dict[int, dict[str, int]] = defaultdict(dict)
    for parent, status, count in session.execute(stmt):
        out[int(parent)][str(status)] = int(count)
    return dict(out)


@attrs.frozen(kw_only=True)
class JournalUnit:
    """One journal row (a step, a unit of a step, a failed attempt, a compensation)."""

    step_id: str
    status: str
    attempt: int
    result: Any
    error: str | None
    error_type: str | None
    traceback: str | None
    completed_at: datetime
    took: timedelta | None
    """Time since the previous row (or the run's creation): how long the unit ran, at most."""

    @property
    def is_compensation(self) -> bool:
        """Whether the row is a step's rollback (``<step>#compensate``)."""
        return self.step_id.endswith("#compensate")


def journal(session: Session, run_id: int, created_at: datetime | None) -> list[JournalUnit]:
    """The run's journal in order (at most :data:`JOURNAL_CAP` rows: the newest)."""
    stmt = (
        select(journal_table)
        .where(journal_table.c.run_id == run_id)
        .order_by(journal_table.c.id.desc())
        .limit(JOURNAL_CAP)
    )
    rows = list(reversed(session.execute(stmt).mappings().all()))
    units: list[JournalUnit] = []
    previous = created_at
    for row in rows:
        done = row["completed_at"]
        units.append(
            JournalUnit(
                step_id=row["step_id"],
                status=row["status"],
                attempt=int(row["attempt"]),
                result=row["result"],
                error=row["error"],
                error_type=row["error_type"],
                traceback=row["traceback"],
                completed_at=done,
                took=None if previous is None else max(done - previous, timedelta(0)),
            )
        )
        previous = done
    return units


@attrs.frozen(kw_only=True)
class QueuedJob:
    """A job of the jobs-table queue: what a run waits on, or what a worker holds."""

    id: int
    kind: str
    run_id: int
    workflow_name: str
    attempts: int
    available_at: datetime
    claimed_by: str | None
    claimed_until: datetime | None
    last_error: str | None


def _job(row: Any) -> QueuedJob:  # noqa: ANN401 - a result row
    return QueuedJob(
        id=int(row["id"]),
        kind=row["kind"],
        run_id=int(row["run_id"]),
        workflow_name=row["workflow_name"],
        attempts=int(row["attempts"]),
        available_at=row["available_at"],
        claimed_by=row["claimed_by"],
        claimed_until=row["claimed_until"],
        last_error=row["last_error"],
    )


def run_jobs(session: Session, run_id: int) -> list[QueuedJob]:
    """The run's queued or held jobs (jobs-table backend; a handful at most)."""
    stmt = (
        select(jobs_table)
        .where(jobs_table.c.run_id == run_id)
        .order_by(jobs_table.c.id)
        .limit(HELD_CAP)
    )
    return [_job(row) for row in session.execute(stmt).mappings()]


def held_jobs(session: Session, worker_ids: list[str], now: datetime) -> dict[str, list[QueuedJob]]:
    """What each worker holds now: its claimed jobs (at most :data:`HELD_CAP` each)."""
    if not worker_ids:
        return {}
    stmt = (
        select(jobs_table)
        .where(jobs_table.c.claimed_by.in_(worker_ids), jobs_table.c.claimed_until > now)
        .order_by(jobs_table.c.id)
        .limit(HELD_CAP * len(worker_ids))
    )
    out: dict[str, list[QueuedJob]] = defaultdict(list)
    for row in session.execute(stmt).mappings():
        if len(out[row["claimed_by"]]) < HELD_CAP:
            out[row["claimed_by"]].append(_job(row))
    return dict(out)


@attrs.frozen(kw_only=True)
class Bucket:
    """One hour of a workflow's recent runs: how many ended, and how long they took."""

    start: datetime
    finished: int
    p50: float | None
    p95: float | None
    p99: float | None


@attrs.frozen(kw_only=True)
class WorkflowStats:
    """A workflow: its runs counted by status, and its recent throughput and durations."""

    name: str
    counts: dict[str, int]
    buckets: list[Bucket]
    paused: bool = False


def percentile(values: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile of ``values`` (``None`` for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(fraction * len(ordered)), 1)
    return ordered[rank - 1]


def _counts(session: Session, *, floor: int) -> dict[str, dict[str, int]]:
    """Runs by workflow and status: every live run, and the ended ones above id ``floor``.

    Live runs are found on the ``(status, id)`` index and are as many as the work in
    flight; ended runs are counted only among the newest ids (a primary-key range), so
    the count stays bounded however long the history.
    """
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    live = [s for s in RunStatus if not s.is_terminal]
    ended = [s for s in RunStatus if s.is_terminal]
    for wanted, extra in ((live, None), (ended, runs.c.id > floor)):
        stmt = (
            select(runs.c.workflow_name, runs.c.status, func.count())
            .where(runs.c.status.in_(wanted))
            .group_by(runs.c.workflow_name, runs.c.status)
        )
        if extra is not None:
            stmt = stmt.where(extra)
        for name, status, count in session.execute(stmt):
            counts[name][str(status)] = int(count)
    return counts


def workflow_stats(
    session: Session, *, now: datetime, hours: int = 6, paused: frozenset[str] = frozenset()
) -> list[WorkflowStats]:
    """Each workflow's status counts, and per hour over ``hours`` its finished runs' durations.

    Counts: every live run, and ended runs among the newest :data:`COUNT_WINDOW` ids.
    Throughput and percentiles read only the :data:`STATS_SAMPLE` most recent runs.
    """
    top = session.execute(select(func.max(runs.c.id))).scalar() or 0
    counts = _counts(session, floor=int(top) - COUNT_WINDOW)
    recent = session.execute(
        select(runs.c.workflow_name, runs.c.status, runs.c.created_at, runs.c.updated_at)
        .order_by(runs.c.id.desc())
        .limit(STATS_SAMPLE)
    ).all()
    start = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(
        hours=hours - 1
    )
    durations: dict[tuple[str, int], list[float]] = defaultdict(list)
    for name, status, created, updated in recent:
        counts.setdefault(name, {})
        if not RunStatus(status).is_terminal or updated is None or created is None:
            continue
        index = int((updated - start).total_seconds() // 3600)
        if 0 <= index < hours:
            durations[name, index].append(max((updated - created).total_seconds(), 0.0))
    out = []
    for name in sorted(counts):
        buckets = []
        for index in range(hours):
            values = durations.get((name, index), [])
            buckets.append(
                Bucket(
                    start=start + timedelta(hours=index),
                    finished=len(values),
                    p50=percentile(values, 0.5),
                    p95=percentile(values, 0.95),
                    p99=percentile(values, 0.99),
                )
            )
        out.append(
            WorkflowStats(name=name, counts=counts[name], buckets=buckets, paused=name in paused)
        )
    return out


def workflow_names(session: Session) -> list[str]:
    """Workflows to filter by: those registered here and those of the newest runs."""
    newest = select(runs.c.workflow_name).order_by(runs.c.id.desc()).limit(STATS_SAMPLE)
    recent = session.execute(select(newest.subquery().c.workflow_name).distinct()).scalars()
    return sorted(set(recent) | set(registry.names()))


@attrs.frozen(kw_only=True)
class Slot:
    """A concurrency slot: how many runs of a workflow (and key) hold one now."""

    workflow_name: str
    concurrency_key: str
    active: int


def slots(session: Session) -> list[Slot]:
    """The busiest concurrency slots (at most :data:`SLOTS_CAP`)."""
    stmt = (
        select(slots_table)
        .where(slots_table.c.active > 0)
        .order_by(slots_table.c.active.desc())
        .limit(SLOTS_CAP)
    )
    return [
        Slot(
            workflow_name=row["workflow_name"],
            concurrency_key=row["concurrency_key"],
            active=int(row["active"]),
        )
        for row in session.execute(stmt).mappings()
    ]


def status_totals(stats: list[WorkflowStats]) -> Counter[str]:
    """The runs of every workflow, counted by status."""
    total: Counter[str] = Counter()
    for workflow in stats:
        total.update(workflow.counts)
    return total
