"""Text rendering for the ``durable-sa`` command: runs, journals, workers as tables.

Rules:
- Every function here returns lines (``list[str]``) and prints nothing; the commands
  (:mod:`durable_sa.cli.commands`) print.
- Cells come from :mod:`durable_sa.cli.cells`: one line each, a long value cut at a
  word boundary with ``…``, and a table that cut a value ends with a line saying how to
  see it whole (``durable-sa status ID``, ``dead-letters show ID``, ``--json``).
- ``list`` shows a child run indented under its parent when both are listed, else
  with a ``child of run N`` note, so a child is never mistaken for a run of its own.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from durable_sa.cli.cells import NONE, Cells, table, when
from durable_sa.core.holds import PAUSED
from durable_sa.core.status import RunStatus
from durable_sa.core.units import compensate_unit
from durable_sa.views import waits_for

if TYPE_CHECKING:
    from collections.abc import Sequence

    from durable_sa.core.schedules import ScheduleInfo
    from durable_sa.results import DeadLetterInfo, PruneResult, RunStatusSnapshot
    from durable_sa.runtime.presence import WorkerInfo
    from durable_sa.store.models import JournalEntry

_AGE_UNITS: Final = (
    ("w", timedelta(weeks=1)),
    ("d", timedelta(days=1)),
    ("h", timedelta(hours=1)),
    ("m", timedelta(minutes=1)),
    ("s", timedelta(seconds=1)),
)
_INDENT: Final = "  "
_NOTE_WIDTH: Final = 70
"""A note's widest: a stranded run's dead letter or a waiting reason, cut at a word."""


def cut_note(how: str) -> str:
    """The footer of a table that cut a value: what ``…`` means and how to see it whole."""
    return f"(… marks a value cut short: {how})"


def waiting_line(snap: RunStatusSnapshot) -> str:
    """The sentence ``status`` prints for a run no live worker can take."""
    return (
        f"waiting for a worker with definition version {snap.waiting_for_version} of "
        f"workflow {snap.workflow_name} (no live worker has it)"
    )


def note(snap: RunStatusSnapshot, cells: Cells | None = None) -> str:
    """Why a run is where it is, in a few words (empty when there is nothing to say).

    The first of :func:`~durable_sa.views.waits_for` (the dashboard says the same), else
    the run's error. ``cells`` shortens it (and so learns whether it cut some).
    """
    cell = cells or Cells()
    waits = waits_for(snap, timers=False)
    if waits:
        return cell(waits[0], _NOTE_WIDTH)
    if snap.error is not None:
        return f"error: {cell(snap.error, 50)}"
    return ""


def _waiting_for(snap: RunStatusSnapshot) -> str:
    if snap.wait_kind is None:
        return NONE
    return f"{snap.wait_kind} at step {snap.wait_step!r}"


def render_status(
    snap: RunStatusSnapshot, journal: Sequence[JournalEntry], *, tracebacks: bool = False
) -> list[str]:
    """The run's fields, its journal and its children, as ``durable-sa status`` shows them.

    Every journal row is shown, a failed one (each failed attempt has its own) with its
    error. ``tracebacks`` adds, under the journal, where each failed step raised.
    """
    cell = Cells()
    fields = [
        ("run", str(snap.run_id)),
        ("workflow", snap.workflow_name),
        ("version", snap.workflow_version or NONE),
        ("status", str(snap.status)),
        ("step", f"{snap.current_step}/{snap.total_steps}"),
        ("input", cell(json.dumps(snap.input, sort_keys=True, default=str), 200)),
        ("waiting for", _waiting_for(snap)),
        ("awaiting signal", snap.awaiting_signal or NONE),
        ("wake at", when(snap.wake_at)),
        ("error", cell(snap.error, 200)),
        ("stranded", NONE if snap.stranded is None else f"{snap.stranded} (run `recover`)"),
        ("parent", NONE if snap.parent_run_id is None else str(snap.parent_run_id)),
        ("created", when(snap.created_at)),
        ("updated", when(snap.updated_at)),
    ]
    lines = [f"{name + ':':<16} {value}" for name, value in fields]
    if snap.waiting_for_version is not None:
        lines.append(waiting_line(snap))
    lines += _reason_lines(snap)
    lines += ["", "journal:"]
    if journal:
        rows = [
            (
                entry.step_id,
                entry.status,
                str(entry.attempt),
                when(entry.completed_at),
                cell(entry.error) if entry.error else cell(_outcome(entry)),
            )
            for entry in journal
        ]
        headers = ("step_id", "status", "attempt", "completed_at", "result / error")
        lines += table(headers, rows, indent=_INDENT)
        lines += _tracebacks(journal) if tracebacks else _traceback_hint(journal, snap)
    else:
        lines.append("  (no step has finished yet)")
    lines += ["", "children:"]
    lines += _children(snap.children, 1, cell) or ["  (none)"]
    if cell.cut:
        lines += ["", cut_note(f"durable-sa status {snap.run_id} --json shows every value whole")]
    return lines


def _reason_lines(snap: RunStatusSnapshot) -> list[str]:
    """What ``status`` says of ``waiting_reason``: a pause with how to end it."""
    reason = snap.waiting_reason
    if reason is None:
        return []
    label = "pending" if snap.status is RunStatus.PENDING else "waiting"
    if not reason.startswith(PAUSED):
        return [f"{label}: {reason}"]
    name = snap.workflow_name
    lines = [
        f"paused: workflow {name} is paused; no step of it runs until `durable-sa unpause {name}`"
    ]
    rest = reason.removeprefix(PAUSED).removeprefix("; then ")
    return lines + ([f"{label}: then {rest}"] if rest else [])


def _outcome(entry: JournalEntry) -> object:
    """A unit's result; for a rollback's row, what it undid, in words."""
    done = entry.result
    if not entry.step_id.endswith(compensate_unit("")) or not isinstance(done, dict):
        return done
    ran = done.get("ran")
    if ran:
        return f"undone: {', '.join(map(str, ran))}"
    return f"nothing to undo: {done.get('nothing_to_undo', 'no compensator ran')}"


def _tracebacks(journal: Sequence[JournalEntry]) -> list[str]:
    lines: list[str] = []
    for entry in journal:
        if entry.traceback:
            lines += ["", f"{entry.step_id} ({entry.error_type}, attempt {entry.attempt}):"]
            lines += [f"  {line}" for line in entry.traceback.rstrip().splitlines()]
    return lines


def _traceback_hint(journal: Sequence[JournalEntry], snap: RunStatusSnapshot) -> list[str]:
    if any(entry.traceback for entry in journal):
        return [f"  (durable-sa status {snap.run_id} --traceback shows where each failure raised)"]
    return []


def _children(children: Sequence[RunStatusSnapshot], depth: int, cell: Cells) -> list[str]:
    lines = []
    for child in children:
        extra = note(child, cell)
        lines.append(
            f"{_INDENT * depth}{child.run_id}  {child.workflow_name}  {child.status}  "
            f"step {child.current_step}/{child.total_steps}" + (f"  {extra}" if extra else "")
        )
        lines += _children(child.children, depth + 1, cell)
    return lines


def as_tree(snaps: Sequence[RunStatusSnapshot]) -> list[tuple[RunStatusSnapshot, int]]:
    """``snaps`` (newest first) with each listed child moved under its listed parent.

    Returns each run with its depth: 0 for a run whose parent is not listed; children
    follow their parent oldest first, as ``status`` lists them.
    """
    listed = {snap.run_id for snap in snaps}
    under: dict[int, list[RunStatusSnapshot]] = {}
    for snap in reversed(snaps):  # oldest first
        if snap.parent_run_id in listed:
            under.setdefault(snap.parent_run_id, []).append(snap)
    ordered: list[tuple[RunStatusSnapshot, int]] = []
    stack = [(snap, 0) for snap in reversed(snaps) if snap.parent_run_id not in listed]
    while stack:  # depth first, without recursion: a chain of children can be long
        snap, depth = stack.pop()
        ordered.append((snap, depth))
        stack += [(child, depth + 1) for child in reversed(under.get(snap.run_id, []))]
    return ordered


def render_runs(snaps: Sequence[RunStatusSnapshot]) -> list[str]:
    """One line per run: ``durable-sa list``, children indented under their parent."""
    if not snaps:
        return ["no runs"]
    cell = Cells()
    rows = []
    for snap, depth in as_tree(snaps):
        notes = [note(snap, cell)]
        if depth == 0 and snap.parent_run_id is not None:
            notes.insert(0, f"child of run {snap.parent_run_id}")
        rows.append(
            (
                f"{_INDENT * depth}{snap.run_id}",
                snap.workflow_name,
                snap.workflow_version or NONE,
                str(snap.status),
                f"{snap.current_step}/{snap.total_steps}",
                when(snap.updated_at),
                "; ".join(text for text in notes if text),
            )
        )
    lines = table(("id", "workflow", "version", "status", "step", "updated_at", "note"), rows)
    if cell.cut:
        lines.append(cut_note("durable-sa status ID shows the run whole, or list --json"))
    return lines


def render_dead_letters(letters: Sequence[DeadLetterInfo], *, resolved: bool = False) -> list[str]:
    """One line per dead letter: ``durable-sa dead-letters`` (``--all``: and how resolved)."""
    if not letters:
        return ["no dead letters" if resolved else "no open dead letters"]
    cell = Cells()
    headers = ("id", "kind", "run", "attempts", "failed_at", *(["resolved"] if resolved else []))
    rows = [
        (
            str(d.id),
            d.kind,
            NONE if d.run_id is None else str(d.run_id),
            str(d.attempts),
            when(d.failed_at),
            *([d.resolved_by or "open"] if resolved else []),
            cell(d.error),
        )
        for d in letters
    ]
    lines = table((*headers, "error"), rows)
    if cell.cut:
        lines.append(cut_note("durable-sa dead-letters show ID shows the whole error, or --json"))
    return lines


def render_dead_letter(letter: DeadLetterInfo) -> list[str]:
    """One dead letter whole: ``durable-sa dead-letters show ID``."""
    resolved = (
        "open (requeue it, or run `recover`)"
        if letter.resolved_by is None
        else f"{letter.resolved_by} at {when(letter.resolved_at)}"
    )
    fields = [
        ("dead letter", str(letter.id)),
        ("job", f"{letter.job_id} ({letter.kind}, queue {letter.queue})"),
        ("run", NONE if letter.run_id is None else str(letter.run_id)),
        ("attempts", str(letter.attempts)),
        ("failed at", when(letter.failed_at)),
        ("resolved", resolved),
        ("payload", json.dumps(letter.payload, sort_keys=True, default=str)),
    ]
    lines = [f"{name + ':':<13} {value}" for name, value in fields]
    return [*lines, "error:", *(f"  {line}" for line in letter.error.splitlines() or [""])]


def render_workers(workers: Sequence[WorkerInfo]) -> list[str]:
    """One line per live worker: ``durable-sa workers``."""
    if not workers:
        return ["no live workers"]
    rows = [
        (
            w.id,
            w.hostname,
            str(w.pid),
            str(w.concurrency),
            str(w.in_flight),
            str(w.processed),
            when(w.last_seen),
            versions(w.workflows),
        )
        for w in workers
    ]
    headers = ("id", "host", "pid", "concurrency", "in_flight", "processed", "last_seen")
    return table((*headers, "workflows"), rows)


def render_schedules(schedules: Sequence[ScheduleInfo]) -> list[str]:
    """One line per schedule: ``durable-sa schedules``; then what to do about any unfired.

    ``error`` is the last firing's error (why its tick started no run), cut to a cell;
    a schedule no worker fires gets a line under the table saying what to do.
    """
    if not schedules:
        return ["no schedules"]
    cell = Cells()
    rows = [
        (
            s.name,
            s.workflow_name,
            s.cron,
            s.timezone,
            s.overlap.value,
            "paused" if s.paused else "active",
            when(s.next_fire_at) if s.next_fire_at is not None and not s.paused else NONE,
            when(s.last_fired_at),
            NONE if s.last_run_id is None else str(s.last_run_id),
            cell(s.last_error, 50),
        )
        for s in schedules
    ]
    headers = ("name", "workflow", "cron", "timezone", "overlap", "state", "next_fire")
    lines = table((*headers, "last_fired", "last_run", "error"), rows)
    hints = [f"{s.name}: {s.hint}" for s in schedules if s.hint is not None]
    if hints:
        lines += ["", *hints]
    if cell.cut:
        lines += ["", cut_note("durable-sa schedules --json shows every error whole")]
    return lines


def versions(workflows: dict[str, str]) -> str:
    """``name@version, ...`` sorted by name, or ``none``."""
    return ", ".join(f"{name}@{version}" for name, version in sorted(workflows.items())) or "none"


def age(value: timedelta) -> str:
    """``value`` in the largest unit that holds it exactly: ``30d``, ``2w``, ``90s``.

    The form ``durable-sa prune --older-than`` accepts; a fraction of a second is dropped.
    """
    seconds = timedelta(seconds=int(value.total_seconds()))
    for unit, size in _AGE_UNITS:
        if seconds >= size and seconds % size == timedelta(0):
            return f"{seconds // size}{unit}"
    return "0s"


def plural(count: int, one: str, many: str | None = None) -> str:
    """``1 job``, ``2 jobs``, ``3 journal entries`` (``many`` defaults to ``one`` + s)."""
    return f"{count} {one if count == 1 else many or one + 's'}"


def render_prune(result: PruneResult, older_than: timedelta) -> list[str]:
    """The one line ``durable-sa prune`` prints: what went (or would go), and how."""
    what = (
        f"{plural(result.runs, 'run')} that finished more than {age(older_than)} ago, "
        f"with {plural(result.journal_entries, 'journal entry', 'journal entries')}, "
        f"{plural(result.jobs, 'job')} and {plural(result.dead_letters, 'dead letter')}, "
        f"in {plural(result.batches, 'batch', 'batches')}"
    )
    if result.dry_run:
        return [f"dry run: would prune {what}; nothing was deleted"]
    return [f"pruned {what}"]
