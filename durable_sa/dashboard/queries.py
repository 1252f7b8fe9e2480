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
from sqlalchemy import Select, func, or_, select

from durable_sa.core.admission import WORKFLOW_KEY
from durable_sa.core.registry import registry
from durable_sa.core.snapshot import WaitKind
from durable_sa.core.status import RunStatus
from durable_sa.core.steps import SignalStep
from durable_sa.core.units import compensate_unit
from durable_sa.results import RunStatusSnapshot
from durable_sa.store.models import (
    dead_letters_table,
    jobs_table,
    journal_table,
    runs_table,
    signals_table,
    slots_table,
)
from durable_sa.views import SNAPSHOT_COLUMNS, held_by, mark_waits, snapshot_of

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from durable_sa.views import LiveRunIds

PAGE_SIZE: Final = 50
"""Runs per page of the runs listing."""
JOURNAL_CAP: Final = 500
"""Journal rows shown for one run (the newest are kept when a run has more)."""
STATS_SAMPLE: Final = 5000
"""How many of each workflow's most recent ended runs its throughput and percentiles read."""
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
    problem: str | None = None
    """One of :data:`PROBLEMS`: runs stuck that way (at every level, children too)."""
    before: int | None = None
    """Keyset: only runs with a smaller id (the next page)."""


PROBLEMS: Final = {
    "dead-lettered": "dead-lettered (stranded until a recover)",
    "compensation-failed": "a compensator failed",
}
"""The runs page's ``problem`` filter: its values, and what each means in words."""

_COMPENSATE_SUFFIX: Final = compensate_unit("")


@attrs.frozen(kw_only=True)
class RunRow:
    """One line of the runs listing: the run as the CLI's status read marks it."""

    snap: RunStatusSnapshot
    children: dict[str, int] = attrs.field(factory=dict)
    """The run's direct children, counted by status."""
    compensation_failed: bool = False
    """A ``<step>#compensate`` row of the run is ``failed``: something was not undone."""

    @property
    def id(self) -> int:
        """The run's id."""
        return self.snap.run_id

    @property
    def mark(self) -> str | None:
        """A word for the status column: ``stranded``, ``compensation failed`` or ``waiting``."""
        if self.snap.stranded:
            return "stranded"
        if self.compensation_failed:
            return "compensation failed"
        if self.stuck:
            return "waiting"
        return None

    @property
    def stuck(self) -> list[str]:
        """What is wrong or holds it back, in the CLI's words (empty: nothing)."""
        out = held_by(self.snap)
        if self.compensation_failed:
            out.append("compensation failed: not everything was undone")
        return out


@attrs.frozen(kw_only=True)
class RunPage:
    """A page of runs and where the next one starts (``None``: this is the last)."""

    rows: list[RunRow]
    next_before: int | None


def _filtered(stmt: Select[Any], wanted: RunFilter) -> Select[Any]:
    """``stmt`` narrowed to the runs ``wanted`` asks for."""
    if wanted.search:
        text = wanted.search.strip()
        clauses = [runs.c.idempotency_key == text]
        if text.isdigit() and len(text) < BIGINT_DIGITS:
            clauses.append(runs.c.id == int(text))
        stmt = stmt.where(or_(*clauses))
    else:
        if wanted.top_level and wanted.problem is None:
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
        stmt = _with_problem(stmt, wanted.problem)
    if wanted.before is not None:
        stmt = stmt.where(runs.c.id < wanted.before)
    return stmt


def _with_problem(stmt: Select[Any], problem: str | None) -> Select[Any]:
    """``stmt`` narrowed to runs stuck as ``problem`` says (one of :data:`PROBLEMS`)."""
    if problem == "dead-lettered":
        open_letters = select(dead_letters_table.c.run_id).where(
            dead_letters_table.c.resolved_at.is_(None), dead_letters_table.c.run_id.is_not(None)
        )
        return stmt.where(runs.c.id.in_(open_letters), runs.c.status.not_in(_ENDED))
    if problem == "compensation-failed":
        return stmt.where(runs.c.id.in_(_failed_compensations()))
    return stmt


def run_page(
    session: Session,
    wanted: RunFilter,
    *,
    now: datetime,
    live_run_ids: LiveRunIds,
    size: int = PAGE_SIZE,
) -> RunPage:
    """One page of runs, newest first, marked as the status read marks them, children counted."""
    stmt = _filtered(select(*SNAPSHOT_COLUMNS), wanted).order_by(runs.c.id.desc()).limit(size + 1)
    found = session.execute(stmt).all()
    more = len(found) > size
    snaps = mark_waits(
        session, [snapshot_of(row) for row in found[:size]], now=now, live_run_ids=live_run_ids
    )
    ids = [snap.run_id for snap in snaps]
    counts = child_counts(session, ids)
    failed = (
        set(
            session.execute(
                _failed_compensations().where(journal_table.c.run_id.in_(ids)).distinct()
            ).scalars()
        )
        if ids
        else set()
    )
    rows = [
        RunRow(
            snap=snap,
            children=counts.get(snap.run_id, {}),
            compensation_failed=snap.run_id in failed,
        )
        for snap in snaps
    ]
    return RunPage(rows=rows, next_before=rows[-1].id if more and rows else None)


_ENDED: Final = [s for s in RunStatus if s.is_terminal]


def _failed_compensations() -> Select[Any]:
    """The ids of runs with a ``<step>#compensate`` row that failed."""
    return select(journal_table.c.run_id).where(
        journal_table.c.step_id.like(f"%{_COMPENSATE_SUFFIX}"),
        journal_table.c.status == "failed",
    )


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
    since_previous: timedelta | None
    """Time since the previous row (or the run's creation).

    Not how long the unit ran: the journal keeps when a unit ended, not when it began, so
    this also holds backoff, timers, a human's wait and queue time before it.
    """

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
                since_previous=None if previous is None else max(done - previous, timedelta(0)),
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
    """What each worker holds now: its claimed jobs, the oldest :data:`HELD_CAP` of each.

    Capped per worker (a row number over each worker's jobs), so a worker that holds
    hundreds of jobs never hides what another holds; at most ``HELD_CAP`` rows a worker
    come back. The held jobs are the work in flight (each worker's concurrency), found
    by ``claimed_by`` on its index.
    """
    if not worker_ids:
        return {}
    held = (
        select(
            jobs_table,
            func.row_number()
            .over(partition_by=jobs_table.c.claimed_by, order_by=jobs_table.c.id)
            .label("nth"),
        )
        .where(jobs_table.c.claimed_by.in_(worker_ids), jobs_table.c.claimed_until > now)
        .subquery()
    )
    stmt = (
        select(*(held.c[column.name] for column in jobs_table.c))
        .where(held.c.nth <= HELD_CAP)
        .order_by(held.c.claimed_by, held.c.id)
        .limit(HELD_CAP * len(worker_ids))
    )
    out: dict[str, list[QueuedJob]] = defaultdict(list)
    for row in session.execute(stmt).mappings():
        out[row["claimed_by"]].append(_job(row))
    return dict(out)


@attrs.frozen(kw_only=True)
class Bucket:
    """One hour of a workflow's recent runs: how many ended, and how long they took.

    ``finished`` is ``None`` when the hour is outside the workflow's sample (its newest
    :data:`STATS_SAMPLE` runs began after it): unknown, not zero. ``partial`` when the
    sample begins within the hour: at least ``finished``.
    """

    start: datetime
    finished: int | None
    p50: float | None
    p95: float | None
    p99: float | None
    partial: bool = False


@attrs.frozen(kw_only=True)
class WorkflowStats:
    """A workflow: its runs counted by status, and its recent throughput and durations."""

    name: str
    counts: dict[str, int]
    buckets: list[Bucket]
    paused: bool = False
    sampled_from: datetime | None = None
    """When the sample of its runs begins (``None``: it holds every run of the window)."""


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
    for wanted, extra in ((live, None), (_ENDED, runs.c.id > floor)):
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


def _samples(
    session: Session, names: list[str], *, floor: int, since: datetime
) -> dict[str, list[Any]]:
    """Each workflow's newest :data:`STATS_SAMPLE` runs that ended since ``since``.

    A window per workflow: a burst of one workflow's runs does not push the others out
    of the sample (as one shared window of the newest runs did). One bounded query per
    workflow: the planner walks the primary key back from the newest id (a busy
    workflow fills its sample at once) or takes a rare workflow's rows from the
    ``(workflow_name, status)`` index; never past id ``floor``.
    """
    out: dict[str, list[Any]] = {}
    for name in names:
        stmt = (
            select(runs.c.created_at, runs.c.updated_at)
            .where(
                runs.c.workflow_name == name,
                runs.c.status.in_(_ENDED),
                runs.c.id > floor,
                runs.c.updated_at >= since,
            )
            .order_by(runs.c.id.desc())
            .limit(STATS_SAMPLE)
        )
        out[name] = list(session.execute(stmt))
    return out


def _window_start(session: Session, floor: int) -> datetime | None:
    """When the oldest run of the id window began (``None``: the window holds every run)."""
    if floor <= 0:
        return None
    return session.execute(
        select(runs.c.created_at).where(runs.c.id > floor).order_by(runs.c.id).limit(1)
    ).scalar()


def workflow_stats(
    session: Session, *, now: datetime, hours: int = 6, paused: frozenset[str] = frozenset()
) -> list[WorkflowStats]:
    """Each workflow's status counts, and per hour over ``hours`` its finished runs' durations.

    Counts: every live run, and ended runs among the newest :data:`COUNT_WINDOW` ids.
    Throughput and percentiles read each workflow's :data:`STATS_SAMPLE` most recent
    runs that ended within the hours shown (among those ids). An hour before a
    workflow's sample begins is unknown, not zero; the hour it begins in, at least.
    """
    top = session.execute(select(func.max(runs.c.id))).scalar() or 0
    floor = int(top) - COUNT_WINDOW
    counts = _counts(session, floor=floor)
    start = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(
        hours=hours - 1
    )
    samples = _samples(session, sorted(counts), floor=floor, since=start)
    window_from = _window_start(session, floor)
    out = []
    for name in sorted(counts):
        recent = samples.get(name, [])
        sampled_from = window_from  # runs begun before it are outside the id window
        if len(recent) >= STATS_SAMPLE:  # and runs older than the sample's are left out
            oldest = min((row.created_at for row in recent if row.created_at), default=now)
            sampled_from = oldest if window_from is None else max(oldest, window_from)
        durations: dict[int, list[float]] = defaultdict(list)
        for created, updated in recent:
            index = int((updated - start).total_seconds() // 3600)
            if 0 <= index < hours and created is not None:
                durations[index].append(max((updated - created).total_seconds(), 0.0))
        out.append(
            WorkflowStats(
                name=name,
                counts=counts.get(name, {}),
                buckets=_buckets(durations, start, hours, sampled_from),
                paused=name in paused,
                sampled_from=sampled_from,
            )
        )
    return out


def _buckets(
    durations: dict[int, list[float]], start: datetime, hours: int, sampled_from: datetime | None
) -> list[Bucket]:
    """The hourly buckets from ``start``: outside the sample, partly in it, or whole."""
    buckets = []
    for index in range(hours):
        begins = start + timedelta(hours=index)
        outside = sampled_from is not None and begins + timedelta(hours=1) <= sampled_from
        values = durations.get(index, [])
        buckets.append(
            Bucket(
                start=begins,
                finished=None if outside else len(values),
                p50=percentile(values, 0.5),
                p95=percentile(values, 0.95),
                p99=percentile(values, 0.99),
                partial=sampled_from is not None and begins < sampled_from and not outside,
            )
        )
    return buckets


def workflow_names(session: Session) -> list[str]:
    """Workflows to filter by: those registered here and those of the newest runs."""
    newest = select(runs.c.workflow_name).order_by(runs.c.id.desc()).limit(STATS_SAMPLE)
    recent = session.execute(select(newest.subquery().c.workflow_name).distinct()).scalars()
    return sorted(set(recent) | set(registry.names()))


@attrs.frozen(kw_only=True)
class Slot:
    """A concurrency slot: how many runs of a workflow (and key) hold one, of how many, and wait."""

    workflow_name: str
    concurrency_key: str
    """The key (``""``: the workflow's own limit, over all its runs)."""
    active: int
    limit: int | None
    """The most that may be active (``None``: no limit)."""
    pending: int
    """Runs that wait for a place in it."""


def slots(session: Session) -> list[Slot]:
    """The busiest concurrency slots (at most :data:`SLOTS_CAP`), with their limits and waiters."""
    stmt = (
        select(slots_table)
        .where(or_(slots_table.c.active > 0, slots_table.c.max_active.is_not(None)))
        .order_by(slots_table.c.active.desc(), slots_table.c.workflow_name)
        .limit(SLOTS_CAP)
    )
    found = list(session.execute(stmt).mappings())
    names = sorted({row["workflow_name"] for row in found})
    waiting: Counter[tuple[str, str]] = Counter()
    if names:
        pending = (
            select(runs.c.workflow_name, runs.c.concurrency_key, func.count())
            .where(runs.c.status == RunStatus.PENDING, runs.c.workflow_name.in_(names))
            .group_by(runs.c.workflow_name, runs.c.concurrency_key)
        )
        for name, key, count in session.execute(pending):
            waiting[name, WORKFLOW_KEY] += int(count)
            if key is not None:
                waiting[name, key] += int(count)
    return [
        Slot(
            workflow_name=row["workflow_name"],
            concurrency_key=row["concurrency_key"],
            active=int(row["active"]),
            limit=row["max_active"],
            pending=waiting[row["workflow_name"], row["concurrency_key"]],
        )
        for row in found
    ]


def status_totals(stats: list[WorkflowStats]) -> Counter[str]:
    """The runs of every workflow, counted by status."""
    total: Counter[str] = Counter()
    for workflow in stats:
        total.update(workflow.counts)
    return total


@attrs.frozen(kw_only=True)
class Lease:
    """A job of the run and who holds it: live or gone, and until when its lease runs."""

    job: QueuedJob
    holder_live: bool
    """The holder still beats (a live worker); False for a worker that vanished."""
    expired: bool
    """The lease ran out: another worker may claim the job now."""


def lease_of(job: QueuedJob, live_workers: set[str], now: datetime) -> Lease:
    """``job`` with what its lease means now, given the ids of the live workers."""
    expired = job.claimed_until is not None and job.claimed_until <= now
    return Lease(job=job, holder_live=job.claimed_by in live_workers, expired=expired)


KEPT_CAP: Final = 20
"""Kept (sent, not yet taken) signals shown on a run's page."""


@attrs.frozen(kw_only=True)
class KeptSignal:
    """A signal ``send`` kept for the run: its next wait for that name takes it."""

    signal: str
    data: Any
    created_at: datetime | None


def kept_signals(session: Session, run_id: int) -> list[KeptSignal]:
    """The signals kept for the run, oldest first (at most :data:`KEPT_CAP`)."""
    stmt = (
        select(signals_table.c.signal, signals_table.c.data, signals_table.c.created_at)
        .where(signals_table.c.run_id == run_id)
        .order_by(signals_table.c.id)
        .limit(KEPT_CAP)
    )
    return [
        KeptSignal(signal=row.signal, data=row.data, created_at=row.created_at)
        for row in session.execute(stmt)
    ]


def signal_steps(workflow_name: str) -> frozenset[str] | None:
    """The signals the workflow's steps wait for (``None``: not defined in this process)."""
    if not registry.has(workflow_name):
        return None
    return frozenset(
        step.signal for step in registry.get(workflow_name).steps if isinstance(step, SignalStep)
    )


def ended_by(snap: RunStatusSnapshot, units: list[JournalUnit]) -> str | None:
    """Why a canceled run ended, in words (``None`` for a run that was not canceled)."""
    if snap.status is not RunStatus.CANCELED:
        return None
    rolled_back = any(unit.is_compensation for unit in units)
    how = "after rolling back its completed steps" if rolled_back else "where it stood"
    if snap.parent_run_id is not None:
        return f"canceled {how}, with its parent run {snap.parent_run_id} or by a cancel call"
    return f"canceled {how} by a cancel call (an operator: dashboard, CLI or API)"


@attrs.frozen(kw_only=True)
class RunBrief:
    """What an action needs to explain itself: the run's workflow, status and wait."""

    workflow_name: str
    status: RunStatus
    waits_for: str | None
    """The signal ``resume`` would take now (a signal step's, or an agent step's name)."""


def run_brief(session: Session, run_id: int) -> RunBrief | None:
    """The run's workflow, status and what it waits for (``None``: no such run)."""
    row = session.execute(
        select(
            runs.c.workflow_name,
            runs.c.status,
            runs.c.wait_kind,
            runs.c.wait_step,
            runs.c.awaiting_signal,
        ).where(runs.c.id == run_id)
    ).first()
    if row is None:
        return None
    waits = row.wait_step if row.wait_kind == WaitKind.AGENT else row.awaiting_signal
    return RunBrief(workflow_name=row.workflow_name, status=RunStatus(row.status), waits_for=waits)
