"""The dashboard's pages: each reads, then renders one template.

Reads go through :mod:`~durable_sa.dashboard.queries` or the engine's own read functions,
all of a page's in one read transaction (:func:`~durable_sa.dashboard.snapshot.one_snapshot`),
so a page never contradicts itself.

A page asked with ``?fragment=1`` renders only its live part: htmx polls it every few
seconds and swaps it in, so the page stays current without reloading (and without
resetting the forms, which sit outside the live part).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

from durable_sa.core.ids import checked_run_id
from durable_sa.core.schedules import read_fire_key
from durable_sa.core.status import RunStatus
from durable_sa.dashboard import queries
from durable_sa.dashboard.snapshot import one_snapshot
from durable_sa.engine.schedules import info as schedule_info
from durable_sa.errors import RunNotFoundError
from durable_sa.queue import dead_letters
from durable_sa.runtime.presence import live_workers
from durable_sa.store import controls
from durable_sa.store.schedules import load_all as load_schedules
from durable_sa.views import list_dead_letters, run_status, waits_for

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from durable_sa.dashboard.guard import Dashboard, Seen
    from durable_sa.results import RunStatusSnapshot

_AGE: Final = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
DEAD_LETTERS_CAP: Final = 100
"""Dead letters shown at once (newest first)."""
DEFAULT_HOURS: Final = 6
MAX_HOURS: Final = 48
"""The workflows page's hourly buckets: 6 by default, ``?hours=`` up to 48."""
STATS_POLL: Final = 30
"""Seconds between the workflows page's live updates (see :func:`workflows_page`)."""
TREE_CAP: Final = 200
"""Descendants shown in a run's tree (generation by generation, oldest first)."""


def parse_since(text: str, now: datetime) -> datetime:
    """An age (``30m``, ``2h``, ``7d``) before ``now``, or an ISO 8601 time (UTC if naive).

    Raises:
        ValueError: neither.

    """
    age = _AGE.match(text)
    if age is not None:
        return now - timedelta(**{_UNITS[age[2]]: int(age[1])})
    when = datetime.fromisoformat(text.strip())
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def _fragment(request: Request) -> bool:
    return request.query_params.get("fragment") == "1"


def _text(request: Request, name: str) -> str | None:
    """A filter's text; NUL characters dropped (PostgreSQL's text cannot hold them)."""
    value = request.query_params.get(name, "").replace("\x00", "").strip()
    return value or None


def runs_page(dash: Dashboard, request: Request, seen: Seen) -> Response:
    """The runs: filtered, searched, top-level with their children folded, paginated."""
    now = dash.engine.now
    problems: list[str] = []
    status: RunStatus | None = None
    if (wanted_status := _text(request, "status")) is not None:
        try:
            status = RunStatus(wanted_status)
        except ValueError:
            problems.append(f"unknown status {wanted_status!r}")
    since = None
    if (wanted_since := _text(request, "since")) is not None:
        try:
            since = parse_since(wanted_since, now)
        except (ValueError, OverflowError):
            problems.append(f"since is an age (30m, 2h, 7d) or an ISO time, not {wanted_since!r}")
    before = _text(request, "before")
    problem = _text(request, "problem")
    if problem is not None and problem not in queries.PROBLEMS:
        problems.append(f"unknown problem {problem!r}: one of {', '.join(queries.PROBLEMS)}")
        problem = None
    wanted = queries.RunFilter(
        workflow=_text(request, "workflow"),
        status=status,
        since=since,
        key=_text(request, "key"),
        search=_text(request, "q"),
        top_level=request.query_params.get("all") != "1",
        problem=problem,
        before=int(before)
        if before is not None and before.isdigit() and len(before) < queries.BIGINT_DIGITS
        else None,
    )
    with one_snapshot(dash.engine.shell) as session:
        page = queries.run_page(
            session, wanted, now=now, live_run_ids=dash.engine.backend.live_run_ids
        )
        # the workflow menu is not part of the live fragment: no read on every poll
        names = [] if _fragment(request) else queries.workflow_names(session)
    query = {k: v for k, v in request.query_params.items() if k not in ("fragment", "before")}
    values: dict[str, object] = {
        "page": page,
        "wanted": wanted,
        "query": query,
        "problems": problems,
        "workflows": names,
        "statuses": [s.value for s in RunStatus],
        "problem_names": queries.PROBLEMS,
    }
    template = "_runs.html" if _fragment(request) else "runs.html"
    return dash.render(request, seen, template, values)


def _flatten(snap: RunStatusSnapshot, depth: int = 0) -> list[tuple[int, RunStatusSnapshot]]:
    out = [(depth, snap)]
    for child in snap.children:
        out.extend(_flatten(child, depth + 1))
    return out


def run_page(dash: Dashboard, request: Request, seen: Seen) -> Response:
    """One run: what it waits for, its journal, compensations, jobs and children tree."""
    now = dash.engine.now
    try:
        run_id = checked_run_id(int(request.path_params["run_id"]))
        with one_snapshot(dash.engine.shell) as session:
            snap = run_status(
                session,
                run_id,
                now=now,
                live_run_ids=dash.engine.backend.live_run_ids,
                max_descendants=TREE_CAP,
            )
            children = queries.child_counts(session, [run_id]).get(run_id, {})
            units = queries.journal(session, run_id, snap.created_at)
            jobs = queries.run_jobs(session, run_id)
            letter = dead_letters.open_letters(session, [run_id]).get(run_id)
            live = {worker.id for worker in live_workers(session, now=now)}
            kept = queries.kept_signals(session, run_id)
    except RunNotFoundError as exc:
        return dash.render(request, seen, "missing.html", {"message": str(exc)}, status_code=404)
    values = {
        "snap": snap,
        "units": [u for u in units if not u.is_compensation],
        "compensations": [u for u in units if u.is_compensation],
        "capped": len(units) >= queries.JOURNAL_CAP,
        "jobs": [queries.lease_of(job, live, now) for job in jobs],
        "letter": letter,
        "tree": _flatten(snap)[1:],
        "children": children,
        "tree_cap": TREE_CAP,
        # A pause is one of the reasons it waits (run_status read it): said there, once.
        "waits": waits_for(snap),
        "fired_by": read_fire_key(snap.idempotency_key),
        "kept": kept,
        "signals": queries.signal_steps(snap.workflow_name),
        "ended_by": queries.ended_by(snap, units),
        # The live fragment of a run that has just ended takes its buttons away too.
        "oob_actions": _fragment(request) and snap.status.is_terminal,
    }
    template = "_run.html" if _fragment(request) else "run.html"
    return dash.render(request, seen, template, values)


def workflows_page(dash: Dashboard, request: Request, seen: Seen) -> Response:
    """Each workflow: runs by status, finished per hour and their duration percentiles.

    Its live part polls every :data:`STATS_POLL` seconds, not every 3 like the others:
    it is the costliest read (counts over :data:`~queries.COUNT_WINDOW` ids and a
    sample of :data:`~queries.STATS_SAMPLE` runs a workflow, per open tab), and what it
    shows (hourly counts and percentiles) moves slowly. No cache across requests: a
    page loaded after an action (a pause) is read afresh, and never shows what was.
    """
    hours = request.query_params.get("hours", "")
    span = min(max(int(hours), 1), MAX_HOURS) if hours.isdigit() else DEFAULT_HOURS
    with one_snapshot(dash.engine.shell) as session:
        paused = frozenset(controls.paused_workflows(session))
        stats = queries.workflow_stats(session, now=dash.engine.now, hours=span, paused=paused)
    values = {
        "stats": stats,
        "totals": queries.status_totals(stats),
        "statuses": [s.value for s in RunStatus],
        "sample": queries.STATS_SAMPLE,
        "window": queries.COUNT_WINDOW,
        "hours": span,
        "poll": STATS_POLL,
    }
    template = "_workflows.html" if _fragment(request) else "workflows.html"
    return dash.render(request, seen, template, values)


def workers_page(dash: Dashboard, request: Request, seen: Seen) -> Response:
    """The live workers (from their heartbeats) and the jobs each holds."""
    now = dash.engine.now
    with one_snapshot(dash.engine.shell) as session:
        workers = live_workers(session, now=now)
        held = queries.held_jobs(session, [w.id for w in workers], now)
    template = "_workers.html" if _fragment(request) else "workers.html"
    return dash.render(request, seen, template, {"workers": workers, "held": held})


def dead_letters_page(dash: Dashboard, request: Request, seen: Seen) -> Response:
    """Dead letters, newest first: open ones, or all with ``?all=1``."""
    every = request.query_params.get("all") == "1"
    with one_snapshot(dash.engine.shell) as session:
        letters = list_dead_letters(session, limit=DEAD_LETTERS_CAP, include_resolved=every)
    template = "_dead_letters.html" if _fragment(request) else "dead_letters.html"
    values = {"letters": letters, "every": every, "cap": DEAD_LETTERS_CAP}
    return dash.render(request, seen, template, values)


def limits_page(dash: Dashboard, request: Request, seen: Seen) -> Response:
    """Paused workflows, shared rate limits and the busiest concurrency slots."""
    with one_snapshot(dash.engine.shell) as session:
        values = {
            "paused": controls.paused_workflows(session),
            "rate_limits": controls.read_rate_limits(session),
            "slots": queries.slots(session),
        }
    template = "_limits.html" if _fragment(request) else "limits.html"
    return dash.render(request, seen, template, values)


def schedules_page(dash: Dashboard, request: Request, seen: Seen) -> Response:
    """The schedules: cron, next tick, last run, paused."""
    now = dash.engine.now
    with one_snapshot(dash.engine.shell) as session:
        found = [schedule_info(row, now=now) for row in load_schedules(session)]
    template = "_schedules.html" if _fragment(request) else "schedules.html"
    return dash.render(request, seen, template, {"schedules": found})
