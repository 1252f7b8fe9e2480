"""Table rendering, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from durable_sa import RunStatus, RunStatusSnapshot
from durable_sa.cli_format import note, render_runs, short, table, versions, when


def _snap(**changes):
    values = {
        "run_id": 7,
        "workflow_name": "order",
        "status": RunStatus.RUNNING,
        "current_step": 1,
        "total_steps": 4,
        "awaiting_signal": None,
        "wake_at": None,
        "results": {},
        "error": None,
        "parent_run_id": None,
        "workflow_version": "v2",
    }
    return RunStatusSnapshot(**{**values, **changes})


def test_short_keeps_one_line_and_cuts_long_values():
    assert short(None) == "-"
    assert short("a\n  b\tc") == "a b c"
    assert short({"k": [1, 2]}) == '{"k": [1, 2]}'
    cut = short("y" * 100, width=10)
    assert cut == "y" * 9 + "…"
    assert len(cut) == 10


def test_when_is_utc_to_the_second():
    paris = timezone(timedelta(hours=2))
    assert when(datetime(2024, 5, 1, 14, 0, 7, 999, tzinfo=paris)) == "2024-05-01 12:00:07Z"
    assert when(None) == "-"


def test_table_aligns_columns_and_does_not_pad_the_last():
    lines = table(("id", "name", "note"), [("1", "a-long-name", ""), ("22", "b", "hi")])
    assert lines == ["id  name         note", "1   a-long-name", "22  b            hi"]


def test_note_says_why_a_run_is_where_it_is():
    assert note(_snap()) == ""
    assert note(_snap(awaiting_signal="go")) == "awaiting signal 'go'"
    assert note(_snap(error="boom\nline two")) == "error: boom line two"
    assert note(_snap(awaiting_signal="go", waiting_for_version="v1")).startswith(
        "waiting for a worker with version v1"
    )


def test_render_runs():
    assert render_runs([]) == ["no runs"]
    updated = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    lines = render_runs([_snap(updated_at=updated)])
    assert lines[1].split() == ["7", "order", "v2", "running", "1/4", "2024-01-02", "03:04:05Z"]


def test_versions():
    assert versions({}) == "none"
    assert versions({"b": "2", "a": "1"}) == "a@1, b@2"
