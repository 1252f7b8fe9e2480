"""Table rendering, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from durable_sa import RunStatus, RunStatusSnapshot
from durable_sa.cli import parse_age
from durable_sa.cli.formatting import (
    age,
    note,
    plural,
    render_prune,
    render_runs,
    short,
    table,
    versions,
    when,
)
from durable_sa.results import PruneResult


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


@pytest.mark.parametrize(
    ("text", "delta", "shown"),
    [
        ("90s", timedelta(seconds=90), "90s"),
        ("15m", timedelta(minutes=15), "15m"),
        ("12h", timedelta(hours=12), "12h"),
        ("30d", timedelta(days=30), "30d"),
        ("2w", timedelta(weeks=2), "2w"),
        ("14d", timedelta(days=14), "2w"),
        ("120s", timedelta(minutes=2), "2m"),
        (" 0s ", timedelta(0), "0s"),
    ],
)
def test_ages_parse_and_show_in_their_largest_whole_unit(text, delta, shown):
    assert parse_age(text) == delta
    assert age(delta) == shown


def test_plural():
    assert plural(1, "job") == "1 job"
    assert plural(0, "job") == "0 jobs"
    assert plural(2, "journal entry", "journal entries") == "2 journal entries"


def test_render_prune_is_one_line():
    done = PruneResult(runs=1, journal_entries=3, jobs=1, dead_letters=2, batches=1)
    assert render_prune(done, timedelta(days=30)) == [
        (
            "pruned 1 run that finished more than 30d ago, with 3 journal entries, 1 job and "
            "2 dead letters, in 1 batch"
        )
    ]
    dry = PruneResult(runs=5, journal_entries=1, batches=2, dry_run=True)
    assert render_prune(dry, timedelta(hours=36)) == [
        (
            "dry run: would prune 5 runs that finished more than 36h ago, with 1 journal entry, "
            "0 jobs and 0 dead letters, in 2 batches; nothing was deleted"
        )
    ]
