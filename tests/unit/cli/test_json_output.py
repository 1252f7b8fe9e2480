"""The ``--json`` shapes, without a database: parsed back with ``json.loads``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from durable_sa import RunStatus, RunStatusSnapshot
from durable_sa.cli.json_output import (
    dead_letter_json,
    dead_letters_json,
    runs_json,
    status_json,
    workers_json,
)
from durable_sa.results import DeadLetterInfo
from durable_sa.runtime.presence import WorkerInfo
from durable_sa.store.models import JournalEntry

CREATED = datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=UTC)


def _snap(**changes):
    values = {
        "run_id": 7,
        "workflow_name": "order",
        "status": RunStatus.SUSPENDED,
        "current_step": 1,
        "total_steps": 3,
        "awaiting_signal": "approve",
        "wake_at": CREATED + timedelta(hours=1),
        "results": {"reserve": {"sku": "PEN-7"}},
        "error": None,
        "parent_run_id": None,
        "workflow_version": "v2",
        "input": {"sku": "PEN-7", "qty": 2},
        "wait_kind": "signal",
        "wait_step": "approval",
        "created_at": CREATED,
        "updated_at": CREATED,
    }
    return RunStatusSnapshot(**{**values, **changes})


def test_status_is_one_object_with_input_wait_fields_children_and_every_journal_row():
    child = _snap(run_id=8, parent_run_id=7, status=RunStatus.COMPLETED, result={"a": 1})
    snap = _snap(children=[child], stranded="dead letter 3: OSError: gone")
    failed = JournalEntry(
        id=41,
        step_id="charge#attempt1",
        status="failed",
        attempt=1,
        result=None,
        error="TimeoutError: bank slow",
        error_type="TimeoutError",
        traceback='Traceback (most recent call last):\n  File "app.py"\nTimeoutError: bank slow',
        completed_at=datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))),
    )
    done = JournalEntry(
        id=42, step_id="reserve", status="completed", attempt=1, result={"sku": "PEN-7"}
    )
    (line,) = status_json(snap, [failed, done])
    run = json.loads(line)
    assert run["run_id"] == 7
    assert run["status"] == "suspended"
    assert run["input"] == {"sku": "PEN-7", "qty": 2}
    assert (run["wait_kind"], run["wait_step"], run["awaiting_signal"]) == (
        "signal",
        "approval",
        "approve",
    )
    assert datetime.fromisoformat(run["wake_at"]) == CREATED + timedelta(hours=1)
    assert run["created_at"] == "2024-05-01T12:00:00.500000+00:00"
    assert run["stranded"] == "dead letter 3: OSError: gone"
    assert run["result"] is None
    assert list(run)[-2:] == ["children", "journal"]
    (kid,) = run["children"]
    assert (kid["run_id"], kid["parent_run_id"], kid["status"]) == (8, 7, "completed")
    assert kid["result"] == {"a": 1}
    assert kid["children"] == []
    assert "journal" not in kid
    first, second = run["journal"]
    assert first == {
        "id": 41,
        "step_id": "charge#attempt1",
        "status": "failed",
        "attempt": 1,
        "result": None,
        "error": "TimeoutError: bank slow",
        "error_type": "TimeoutError",
        "traceback": 'Traceback (most recent call last):\n  File "app.py"\nTimeoutError: bank slow',
        "completed_at": "2024-05-01T14:00:00+02:00",
    }
    assert second["result"] == {"sku": "PEN-7"}
    assert second["error"] is None


def test_list_is_one_run_per_line_without_children():
    parent = _snap(children=[_snap(run_id=8, parent_run_id=7)])
    lines = runs_json([_snap(run_id=8, parent_run_id=7), parent])
    assert len(lines) == 2
    runs = [json.loads(line) for line in lines]
    assert [(r["run_id"], r["parent_run_id"]) for r in runs] == [(8, 7), (7, None)]
    assert all("children" not in r for r in runs)
    assert runs_json([]) == []


def test_output_is_ascii_whatever_the_data():
    (line,) = runs_json([_snap(input={"name": "Zoë ✓"})])
    assert line.isascii()
    assert json.loads(line)["input"] == {"name": "Zoë ✓"}


def test_dead_letters_and_one_dead_letter():
    letter = DeadLetterInfo(
        id=3,
        job_id=9,
        queue="default",
        kind="advance",
        run_id=7,
        payload={"run_id": 7, "step": 1},
        attempts=5,
        error="OSError: gone\n" * 3,
        failed_at=CREATED,
        resolved_at=CREATED + timedelta(minutes=5),
        resolved_by="requeue",
    )
    (line,) = dead_letters_json([letter])
    assert dead_letter_json(letter) == [line]
    shown = json.loads(line)
    assert shown == {
        "id": 3,
        "job_id": 9,
        "queue": "default",
        "kind": "advance",
        "run_id": 7,
        "payload": {"run_id": 7, "step": 1},
        "attempts": 5,
        "error": "OSError: gone\n" * 3,
        "failed_at": "2024-05-01T12:00:00.500000+00:00",
        "resolved_at": "2024-05-01T12:05:00.500000+00:00",
        "resolved_by": "requeue",
    }


def test_workers_one_per_line():
    worker = WorkerInfo(
        id="host:1:ab",
        hostname="host",
        pid=1,
        concurrency=4,
        queues=None,
        workflows={"order": "v2"},
        in_flight=2,
        processed=10,
        started_at=CREATED,
        last_seen=CREATED + timedelta(seconds=5),
    )
    (line,) = workers_json([worker])
    shown = json.loads(line)
    assert shown["id"] == "host:1:ab"
    assert shown["workflows"] == {"order": "v2"}
    assert shown["queues"] is None
    assert (shown["in_flight"], shown["processed"]) == (2, 10)
    assert shown["last_seen"] == "2024-05-01T12:00:05.500000+00:00"
