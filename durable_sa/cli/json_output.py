"""The ``--json`` output of the read commands: the one place its shape is defined.

Rules:
- Objects are the public value types unstructured by one cattrs converter
  (``cattrs.preconf.json``): a :class:`~durable_sa.results.RunStatusSnapshot`, a
  :class:`~durable_sa.results.DeadLetterInfo`, a
  :class:`~durable_sa.runtime.presence.WorkerInfo`, a
  :class:`~durable_sa.core.schedules.ScheduleInfo`, with their field names as keys.
  Durations (a schedule's ``catchup_window``) are seconds. Datetimes are ISO 8601
  strings with their UTC offset (``2024-05-01T12:00:00.5+00:00``), a run's status is
  its value (``"completed"``), a missing value is ``null``.
- ``status`` prints one object: the run, its ``children`` (recursively, whole runs) and
  its ``journal`` (every row, with its error, error type and traceback).
- ``list``, ``dead-letters``, ``workers`` and ``schedules`` print JSON Lines: one object
  per line, in the table's order, nothing else (no header, no footer; an empty list prints nothing).
  A ``list`` line has no ``children``: each child run listed has a line of its own,
  with its ``parent_run_id``.
- Output is ASCII (``json.dumps``'s default escapes), so any terminal or pipe takes it.

Like :mod:`~durable_sa.cli.formatting`, every function returns lines and prints nothing.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs
from cattrs.preconf.json import make_converter

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from durable_sa.core.schedules import ScheduleInfo
    from durable_sa.results import DeadLetterInfo, RunStatusSnapshot
    from durable_sa.runtime.presence import WorkerInfo
    from durable_sa.store.models import JournalEntry

_converter = make_converter()
_converter.register_unstructure_hook(timedelta, timedelta.total_seconds)  # a schedule's window


@attrs.frozen(kw_only=True)
class JournalRow:
    """One journal row as ``status --json`` shows it: a step (or unit, or attempt) done."""

    id: int
    step_id: str
    status: str
    attempt: int
    result: Any
    error: str | None
    error_type: str | None
    traceback: str | None
    completed_at: datetime | None

    @classmethod
    def of(cls, entry: JournalEntry) -> JournalRow:
        """The row of a stored journal entry."""
        return cls(
            id=entry.id,
            step_id=entry.step_id,
            status=entry.status,
            attempt=entry.attempt,
            result=entry.result,
            error=entry.error,
            error_type=entry.error_type,
            traceback=entry.traceback,
            completed_at=entry.completed_at,
        )


def _line(value: object) -> str:
    return json.dumps(_converter.unstructure(value), sort_keys=False)


def _run(snap: RunStatusSnapshot, *, children: bool) -> dict[str, Any]:
    fields: dict[str, Any] = _converter.unstructure(snap)
    del fields["children"]
    if children:  # last, so a person reading the object sees the run's own fields first
        fields["children"] = [_run(child, children=True) for child in snap.children]
    return fields


def status_json(snap: RunStatusSnapshot, journal: Sequence[JournalEntry]) -> list[str]:
    """``status --json``: the run, its children and its journal, as one object."""
    fields = _run(snap, children=True)
    fields["journal"] = [_converter.unstructure(JournalRow.of(entry)) for entry in journal]
    return [json.dumps(fields)]


def runs_json(snaps: Iterable[RunStatusSnapshot]) -> list[str]:
    """``list --json``: one run per line, without its children."""
    return [json.dumps(_run(snap, children=False)) for snap in snaps]


def dead_letters_json(letters: Iterable[DeadLetterInfo]) -> list[str]:
    """``dead-letters --json``: one dead letter per line."""
    return [_line(letter) for letter in letters]


def dead_letter_json(letter: DeadLetterInfo) -> list[str]:
    """``dead-letters show ID --json``: the dead letter, one object."""
    return [_line(letter)]


def workers_json(workers: Iterable[WorkerInfo]) -> list[str]:
    """``workers --json``: one live worker per line."""
    return [_line(worker) for worker in workers]


def schedules_json(schedules: Iterable[ScheduleInfo]) -> list[str]:
    """``schedules --json``: one schedule per line."""
    return [_line(schedule) for schedule in schedules]


def requeued_json(dead_letter_id: int, job_id: int) -> list[str]:
    """``dead-letters --requeue ID --json``: which dead letter went back, as which job."""
    return [json.dumps({"requeued": dead_letter_id, "job_id": job_id})]


def dismissed_json(dead_letter_id: int) -> list[str]:
    """``dead-letters --dismiss ID --json``: which dead letter was resolved, not requeued."""
    return [json.dumps({"dismissed": dead_letter_id})]
