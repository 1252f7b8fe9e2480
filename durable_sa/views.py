"""Read-only views of runs for people: status snapshots with their children.

Children are loaded level by level (one query per generation), not one query per run.
Why a run waits (``waiting_reason``) is read from what is stored already, in a few
queries per listing, whatever its length: slots counts for pending runs, the paused
workflows, and the rows of steps a rate limit deferred.
A listing is one bounded query (``limit``) whose filters the callers check first
(:func:`list_cutoff`, :func:`checked_limit`), so a bad filter never reaches the database.
What a marked run waits for is put in words once, by :func:`waits_for` (and
:func:`held_by`): the CLI and the dashboard both show those words.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import attrs
from sqlalchemy import or_, select

from durable_sa.core.admission import WORKFLOW_KEY, Count, debounce_reason, waiting_reason
from durable_sa.core.holds import iso_utc, paused_hold, rate_limit_hold
from durable_sa.core.keys import RESERVED_PREFIX
from durable_sa.core.snapshot import WaitKind
from durable_sa.core.status import RunStatus
from durable_sa.errors import InvalidArgumentError, RunNotFoundError
from durable_sa.queue import dead_letters
from durable_sa.results import DeadLetterInfo, RunStatusSnapshot
from durable_sa.runtime.presence import live_workers
from durable_sa.store.models import (
    dead_letters_table,
    jobs_table,
    outbox_table,
    paused_table,
    runs_table,
)
from durable_sa.store.slots import read_count

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

runs = runs_table

_CHUNK: Final = 500
_EARLIEST: Final = datetime.min.replace(tzinfo=UTC)
_LATEST: Final = datetime.max.replace(tzinfo=UTC)

SNAPSHOT_COLUMNS: Final = (
    runs.c.id,
    runs.c.workflow_name,
    runs.c.workflow_version,
    runs.c.status,
    runs.c.current_step,
    runs.c.total_steps,
    runs.c.attempt,
    runs.c.compensation_cursor,
    runs.c.state,
    runs.c.input,
    runs.c.result,
    runs.c.parent_run_id,
    runs.c.parent_step_id,
    runs.c.awaiting_signal,
    runs.c.wait_kind,
    runs.c.wait_step,
    runs.c.wake_at,
    runs.c.error,
    runs.c.idempotency_key,
    runs.c.concurrency_key,
    runs.c.priority,
    runs.c.begin_at,
    runs.c.created_at,
    runs.c.updated_at,
)
"""The columns :func:`snapshot_of` reads (a listing of its own selects them)."""


def snapshot_of(row: Any) -> RunStatusSnapshot:  # noqa: ANN401 - a result row
    """A run's snapshot (without its descendants) from a row of :data:`SNAPSHOT_COLUMNS`."""
    state = row.state or {}
    return RunStatusSnapshot(
        run_id=int(row.id),
        workflow_name=row.workflow_name,
        workflow_version=row.workflow_version,
        status=RunStatus(row.status),
        current_step=int(row.current_step),
        total_steps=int(row.total_steps),
        attempt=int(row.attempt),
        compensation_cursor=row.compensation_cursor,
        awaiting_signal=(row.wait_step if row.wait_kind == WaitKind.AGENT else row.awaiting_signal),
        wait_kind=row.wait_kind,
        wait_step=row.wait_step,
        wake_at=row.wake_at,
        results={k: v for k, v in state.items() if not k.startswith(RESERVED_PREFIX)},
        input=dict(row.input or {}),
        result=row.result,
        error=row.error,
        parent_run_id=row.parent_run_id,
        parent_step_id=row.parent_step_id,
        idempotency_key=row.idempotency_key,
        concurrency_key=row.concurrency_key,
        priority=int(row.priority or 0),
        begin_at=row.begin_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _attach_children(
    session: Session, roots: list[RunStatusSnapshot], limit: int | None = None
) -> None:
    """Load the descendants of ``roots``, generation by generation (at most ``limit``)."""
    level = roots
    left = limit
    while level and (left is None or left > 0):
        by_id = {snap.run_id: snap for snap in level}
        rows: list[Any] = []
        for chunk in _chunks(list(by_id)):
            stmt = (
                select(*SNAPSHOT_COLUMNS).where(runs.c.parent_run_id.in_(chunk)).order_by(runs.c.id)
            )
            if left is not None:
                stmt = stmt.limit(left - len(rows))
            rows.extend(session.execute(stmt).all())
            if left is not None and len(rows) >= left:
                break
        if left is not None:
            left -= len(rows)
        nxt = []
        for row in rows:
            child = snapshot_of(row)
            by_id[int(row.parent_run_id)].children.append(child)
            nxt.append(child)
        level = nxt


def _mark_unrunnable(
    session: Session, snaps: list[RunStatusSnapshot], now: datetime
) -> list[RunStatusSnapshot]:
    """Set ``waiting_for_version`` on runs with queued work that no live worker can run."""
    active = {
        s.run_id: s
        for s in _walk(snaps)
        if s.status in (RunStatus.RUNNING, RunStatus.COMPENSATING, RunStatus.SUSPENDED)
    }
    if not active:
        return snaps
    queued: set[int] = set()
    for chunk in _chunks(list(active)):
        queued.update(
            int(r)
            for r in session.execute(
                select(jobs_table.c.run_id)
                .where(
                    jobs_table.c.run_id.in_(chunk),
                    or_(jobs_table.c.claimed_until.is_(None), jobs_table.c.claimed_until < now),
                )
                .distinct()
            ).scalars()
        )
    if not queued:
        return snaps
    runnable = {
        (name, version)
        for worker in live_workers(session, now=now)
        for name, version in worker.workflows.items()
    }
    marked = {
        run_id: attrs.evolve(snap, waiting_for_version=snap.workflow_version)
        for run_id, snap in active.items()
        if run_id in queued and (snap.workflow_name, snap.workflow_version) not in runnable
    }
    return [_replace(snap, marked) for snap in snaps]


def _mark_waiting(
    session: Session, snaps: list[RunStatusSnapshot], now: datetime
) -> list[RunStatusSnapshot]:
    """Set ``waiting_reason`` on pending runs: a debounce window, or a limit (counts now)."""
    pending = [s for s in _walk(snaps) if s.status is RunStatus.PENDING]
    if not pending:
        return snaps
    conn = session.connection()
    counts: dict[tuple[str, str], Count | None] = {}

    def count(workflow: str, key: str) -> Count | None:
        if (workflow, key) not in counts:
            counts[workflow, key] = read_count(conn, workflow, key)
        return counts[workflow, key]

    marked: dict[int, RunStatusSnapshot] = {}
    for snap in pending:
        if snap.begin_at is not None and snap.begin_at > now:
            marked[snap.run_id] = attrs.evolve(snap, waiting_reason=debounce_reason(snap.begin_at))
            continue
        workflow = count(snap.workflow_name, WORKFLOW_KEY) or Count(active=0)
        key = (
            None
            if snap.concurrency_key is None
            else count(snap.workflow_name, snap.concurrency_key)
        )
        reason = waiting_reason(workflow, key, snap.concurrency_key, snap.workflow_name)
        marked[snap.run_id] = attrs.evolve(snap, waiting_reason=reason)
    return [_replace(snap, marked) for snap in snaps]


def _mark_held(
    session: Session, snaps: list[RunStatusSnapshot], now: datetime
) -> list[RunStatusSnapshot]:
    """Set ``waiting_reason`` on runs held by a pause, or by a rate limit on their step.

    A run of a paused workflow that has not ended says so (a pending run also keeps what
    it waits for after). A running run whose due job was given back by a rate limit
    names the limit and when the step is due again: its queued row (jobs table, or the
    outbox of a relay backend) holds the refusal as ``last_error`` until it runs.
    """
    alive = [s for s in _walk(snaps) if not s.status.is_terminal]
    if not alive:
        return snaps
    names = sorted({s.workflow_name for s in alive})
    paused = set(
        session.execute(
            select(paused_table.c.workflow_name).where(paused_table.c.workflow_name.in_(names))
        ).scalars()
    )
    marked = {
        s.run_id: attrs.evolve(s, waiting_reason=paused_hold(s.waiting_reason))
        for s in alive
        if s.workflow_name in paused
    }
    stepping = [
        s.run_id
        for s in alive
        if s.run_id not in marked and s.status in (RunStatus.RUNNING, RunStatus.COMPENSATING)
    ]
    holds: dict[int, tuple[datetime, str]] = {}
    for table, waiting in (
        (jobs_table, jobs_table.c.claimed_until.is_(None)),
        (outbox_table, outbox_table.c.published_at.is_(None)),
    ):
        for chunk in _chunks(stepping):
            rows = session.execute(
                select(table.c.run_id, table.c.last_error, table.c.available_at).where(
                    table.c.run_id.in_(chunk),
                    waiting,
                    table.c.available_at > now,
                    table.c.last_error.is_not(None),
                )
            )
            for row in rows:
                reason = rate_limit_hold(row.last_error, row.available_at)
                known = holds.get(int(row.run_id))
                if reason is not None and (known is None or row.available_at < known[0]):
                    holds[int(row.run_id)] = (row.available_at, reason)
    by_id = {s.run_id: s for s in alive}
    for run_id, (_, reason) in holds.items():
        marked[run_id] = attrs.evolve(by_id[run_id], waiting_reason=reason)
    return [_replace(snap, marked) for snap in snaps] if marked else snaps


def _walk(snaps: list[RunStatusSnapshot]) -> list[RunStatusSnapshot]:
    out: list[RunStatusSnapshot] = []
    for snap in snaps:
        out.append(snap)
        out.extend(_walk(snap.children))
    return out


def _replace(snap: RunStatusSnapshot, marked: dict[int, RunStatusSnapshot]) -> RunStatusSnapshot:
    base = marked.get(snap.run_id, snap)
    children = [_replace(child, marked) for child in snap.children]
    replaced: RunStatusSnapshot = attrs.evolve(base, children=children)
    return replaced


def _chunks(ids: list[int], size: int = _CHUNK) -> list[list[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


LiveRunIds = Callable[["Session", Collection[int]], set[int]]
"""The backend's ``live_run_ids``: which runs have a job queued or held."""


def _mark_stranded(
    session: Session, snaps: list[RunStatusSnapshot], live_run_ids: LiveRunIds
) -> list[RunStatusSnapshot]:
    """Set ``stranded`` on runs that must have a job, have none, and have an open dead letter."""
    must_have_job = {
        s.run_id
        for s in _walk(snaps)
        if s.status in (RunStatus.RUNNING, RunStatus.COMPENSATING)
        or (s.status is RunStatus.SUSPENDED and s.wake_at is not None)  # a signal's timer
    }
    letters: dict[int, tuple[int, str]] = {}
    for chunk in _chunks(list(must_have_job)):
        letters.update(dead_letters.open_letters(session, chunk))
    if not letters:
        return snaps
    live = live_run_ids(session, list(letters))
    marked = {
        s.run_id: attrs.evolve(
            s, stranded=f"dead letter {letters[s.run_id][0]}: {letters[s.run_id][1]}"
        )
        for s in _walk(snaps)
        if s.run_id in letters and s.run_id not in live
    }
    return [_replace(snap, marked) for snap in snaps] if marked else snaps


def mark_waits(
    session: Session, snaps: list[RunStatusSnapshot], *, now: datetime, live_run_ids: LiveRunIds
) -> list[RunStatusSnapshot]:
    """``snaps`` with what they wait for: a version, a place, a pause, a rate limit, a fix.

    A few queries for the whole list, whatever its length: :func:`run_status`,
    :func:`list_runs` and a listing of its own (the dashboard's runs page, which selects
    :data:`SNAPSHOT_COLUMNS` and reads rows with :func:`snapshot_of`) mark runs alike.
    """
    marked = _mark_waiting(session, _mark_unrunnable(session, snaps, now), now)
    return _mark_stranded(session, _mark_held(session, marked, now), live_run_ids)


def held_by(snap: RunStatusSnapshot) -> list[str]:
    """What holds the run back that its workflow did not ask for, in words (empty: nothing).

    Stranded (a dead-lettered job: a recover is needed), a reason a pending or paused run
    waits (a limit, a debounce, a pause, a rate limit), or a version no live worker has:
    what an operator may have to act on. The marks come from :func:`mark_waits`.
    """
    if snap.status.is_terminal:
        return []
    out = []
    if snap.stranded is not None:
        out.append(f"stranded, {snap.stranded}")
    if snap.waiting_reason is not None:
        label = "pending" if snap.status is RunStatus.PENDING else "waiting"
        out.append(f"{label}: {snap.waiting_reason}")
    if snap.waiting_for_version is not None:
        out.append(f"waiting for a worker with version {snap.waiting_for_version}")
    return out


def waits_for(snap: RunStatusSnapshot, *, timers: bool = True) -> list[str]:
    """What keeps the run from going on, most pressing first, in words (empty: nothing).

    The one wording of it: :func:`held_by`, then what the run itself waits for (a signal,
    an agent's resume, its children, a timer). The CLI's one-line note is the first of
    these, the dashboard shows them all. ``timers=False`` leaves a bare timer out (a
    sleep, a retry's backoff): the CLI's note shows a retrying run's error instead.
    """
    out = held_by(snap)
    if snap.status.is_terminal:
        return out
    if snap.wait_kind == WaitKind.AGENT:
        out.append(f"agent step {snap.wait_step!r} awaiting resume {snap.awaiting_signal!r}")
    elif snap.awaiting_signal is not None:
        timeout = "" if snap.wake_at is None else f", timing out at {iso_utc(snap.wake_at)}"
        out.append(f"awaiting signal {snap.awaiting_signal!r}{timeout}")
    elif snap.wait_kind == WaitKind.CHILD:
        out.append(f"awaiting its child run (step {snap.wait_step!r})")
    elif timers and snap.wake_at is not None:
        out.append(f"a timer: due at {iso_utc(snap.wake_at)}")
    return out


def run_status(
    session: Session,
    run_id: int,
    *,
    now: datetime,
    live_run_ids: LiveRunIds,
    max_descendants: int | None = None,
) -> RunStatusSnapshot:
    """The run ``run_id`` with its descendants (the first ``max_descendants``, if given).

    The dashboard bounds a run's tree so a run with a million children shows fast.

    Raises:
        RunNotFoundError: no such run.

    """
    row = session.execute(select(*SNAPSHOT_COLUMNS).where(runs.c.id == run_id)).first()
    if row is None:
        raise RunNotFoundError(run_id)
    snap = snapshot_of(row)
    _attach_children(session, [snap], max_descendants)
    return mark_waits(session, [snap], now=now, live_run_ids=live_run_ids)[0]


def list_runs(  # noqa: PLR0913 - filters, all keyword-only
    session: Session,
    *,
    status: RunStatus | None = None,
    parent_run_id: int | None = None,
    workflow: str | None = None,
    top_level: bool = False,
    since: datetime | None = None,
    limit: int | None = None,
    now: datetime,
    live_run_ids: LiveRunIds,
) -> list[RunStatusSnapshot]:
    """Runs, newest first, with their descendants.

    ``top_level`` keeps runs that have no parent; ``since`` keeps runs created at or
    after that time; ``limit`` bounds the query (``None``: every run that matches).
    """
    stmt = select(*SNAPSHOT_COLUMNS).order_by(runs.c.id.desc())
    if status is not None:
        stmt = stmt.where(runs.c.status == status)
    if parent_run_id is not None:
        stmt = stmt.where(runs.c.parent_run_id == parent_run_id)
    if workflow is not None:
        stmt = stmt.where(runs.c.workflow_name == workflow)
    if top_level:
        stmt = stmt.where(runs.c.parent_run_id.is_(None))
    if since is not None:
        stmt = stmt.where(runs.c.created_at >= since)
    if limit is not None:
        stmt = stmt.limit(limit)
    snaps = [snapshot_of(row) for row in session.execute(stmt)]
    _attach_children(session, snaps)
    return mark_waits(session, snaps, now=now, live_run_ids=live_run_ids)


def list_cutoff(since: datetime | timedelta | None, now: datetime) -> datetime | None:
    """The creation time a listing starts at: ``since`` itself, or ``since`` before ``now``.

    Raises:
        InvalidArgumentError: ``since`` is a naive datetime (which time zone?), a
            negative age, or neither a datetime nor a timedelta.

    """
    if since is None:
        return None
    if isinstance(since, timedelta):
        if since < timedelta(0):
            msg = f"since is an age and cannot be negative: {since!r}; pass timedelta(hours=2)"
            raise InvalidArgumentError(msg)
        try:
            return now - since
        except OverflowError:
            return _EARLIEST
    if not isinstance(since, datetime):
        msg = f"since is a datetime or a timedelta, not {type(since).__name__} {since!r}"
        raise InvalidArgumentError(msg)
    if since.tzinfo is None or since.utcoffset() is None:
        msg = (
            f"since is a naive datetime ({since.isoformat()}); give it a time zone, "
            "e.g. datetime(2024, 5, 1, tzinfo=UTC), or pass a timedelta"
        )
        raise InvalidArgumentError(msg)
    try:
        return since.astimezone(UTC)
    except OverflowError:  # within a day of datetime's range: before or after every run
        return _EARLIEST if since.year == _EARLIEST.year else _LATEST


def checked_limit(limit: object) -> int | None:
    """``limit`` when a listing can use it: ``None`` (no bound) or a whole number from 1.

    Raises:
        InvalidArgumentError: anything else (0, a negative number, a float, a string).

    """
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        msg = f"limit is a whole number of at least 1 (or None for no bound), not {limit!r}"
        raise InvalidArgumentError(msg)
    return limit


def list_dead_letters(
    session: Session, *, limit: int | None = None, include_resolved: bool = False
) -> list[DeadLetterInfo]:
    """Dead letters, newest first: the open ones, or all with ``include_resolved``."""
    stmt = select(dead_letters_table).order_by(dead_letters_table.c.id.desc())
    if not include_resolved:
        stmt = stmt.where(dead_letters_table.c.resolved_at.is_(None))
    if limit is not None:
        stmt = stmt.limit(limit)
    return [_dead_letter(row) for row in session.execute(stmt).mappings()]


def find_dead_letter(session: Session, dead_letter_id: int) -> DeadLetterInfo | None:
    """Dead letter ``dead_letter_id``, open or resolved (``None`` if there is none)."""
    stmt = select(dead_letters_table).where(dead_letters_table.c.id == dead_letter_id)
    row = session.execute(stmt).mappings().first()
    return None if row is None else _dead_letter(row)


def _dead_letter(row: Any) -> DeadLetterInfo:  # noqa: ANN401 - a result row
    return DeadLetterInfo(
        id=int(row["id"]),
        job_id=int(row["job_id"]),
        queue=row["queue"],
        kind=row["kind"],
        run_id=row["run_id"],
        payload=row["payload"],
        attempts=int(row["attempts"]),
        error=row["error"],
        failed_at=row["failed_at"],
        resolved_at=row["resolved_at"],
        resolved_by=row["resolved_by"],
    )
