"""Table rendering, without a database: what each command's table shows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from durable_sa import RunStatus
from durable_sa.cli import parse_age
from durable_sa.cli.formatting import (
    age,
    as_tree,
    note,
    plural,
    render_dead_letters,
    render_prune,
    render_runs,
    render_status,
    versions,
)
from durable_sa.results import DeadLetterInfo, PruneResult
from durable_sa.store.models import JournalEntry
from durable_sa.views import waits_for
from tests.support.snapshots import snapshot


def _snap(**changes):
    return snapshot(**{"workflow_version": "v2", **changes})


def test_note_says_why_a_run_is_where_it_is():
    assert note(_snap()) == ""
    assert note(_snap(awaiting_signal="go")) == "awaiting signal 'go'"
    assert note(_snap(error="boom\nline two")) == "error: boom line two"
    assert note(_snap(awaiting_signal="go", waiting_for_version="v1")).startswith(
        "waiting for a worker with version v1"
    )
    paused = _snap(awaiting_signal="go", waiting_reason="workflow paused")
    assert note(paused) == waits_for(paused)[0] == "waiting: workflow paused"  # as the dashboard
    backing_off = _snap(wake_at=datetime(2030, 1, 1, tzinfo=UTC), error="attempt 1 of 3 failed")
    assert note(backing_off) == "error: attempt 1 of 3 failed"  # not its timer
    assert note(_snap(status=RunStatus.COMPLETED, waiting_reason="workflow paused")) == ""


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


LONG_ERROR = "PermissionError: card 4242 declined by the issuing bank because the holder said so"


def test_list_shows_a_child_under_its_parent_and_marks_one_whose_parent_is_not_listed():
    parent = _snap(run_id=10, workflow_name="order")
    child = _snap(run_id=12, workflow_name="ship", parent_run_id=10)
    grandchild = _snap(run_id=13, workflow_name="label", parent_run_id=12)
    orphan = _snap(run_id=11, workflow_name="ship", parent_run_id=3)
    newest = _snap(run_id=14, workflow_name="order")
    lines = render_runs([newest, grandchild, child, orphan, parent])  # newest first
    ids = [line.split()[0] for line in lines[1:]]
    assert ids == ["14", "11", "10", "12", "13"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows["12"].startswith("  12  ")  # under 10
    assert rows["13"].startswith("    13  ")  # under 12
    assert rows["10"].startswith("10 ")
    assert rows["11"].endswith("child of run 3")  # its parent is not in the list
    assert "child of" not in rows["12"] + rows["13"] + rows["14"]


def test_a_long_chain_of_children_is_ordered_without_recursion():
    chain = [_snap(run_id=1)] + [_snap(run_id=n, parent_run_id=n - 1) for n in range(2, 5001)]
    ordered = as_tree(list(reversed(chain)))
    assert [snap.run_id for snap, _ in ordered] == list(range(1, 5001))
    assert [depth for _, depth in ordered][:3] == [0, 1, 2]
    assert ordered[-1][1] == 4999


def test_a_list_that_cuts_a_note_says_how_to_see_it_whole():
    lines = render_runs([_snap(error=LONG_ERROR)])
    assert lines[1].endswith("error: PermissionError: card 4242 declined by the…")
    assert lines[-1] == (
        "(… marks a value cut short: durable-sa status ID shows the run whole, or list --json)"
    )
    assert "marks a value cut short" not in "\n".join(render_runs([_snap(error="boom")]))


def _letter(error):
    return DeadLetterInfo(
        id=3,
        job_id=9,
        queue="default",
        kind="advance",
        run_id=7,
        payload={},
        attempts=5,
        error=error,
        failed_at=datetime(2024, 1, 2, tzinfo=UTC),
    )


def test_dead_letters_that_cut_an_error_point_to_show():
    lines = render_dead_letters([_letter("OSError: " + "disk gone " * 20)])
    assert lines[1].endswith("gone…")
    assert "dead-letters show ID shows the whole error" in lines[-1]
    assert len(render_dead_letters([_letter("OSError: gone")])) == 2  # header, row: no footer


def _entry(step_id, status, *, attempt=1, result=None, error=None):
    return JournalEntry(
        step_id=step_id,
        status=status,
        attempt=attempt,
        result=result,
        error=error,
        error_type=None if error is None else error.partition(":")[0],
        traceback=None,
        completed_at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    )


def test_status_shows_every_journal_row_with_its_error_and_says_when_it_cut_one():
    journal = [
        _entry("charge#attempt1", "failed", attempt=1, error="TimeoutError: bank slow"),
        _entry("charge#attempt2", "failed", attempt=2, error=LONG_ERROR),
        _entry("charge", "completed", attempt=3, result={"paid": True}),
    ]
    lines = render_status(_snap(run_id=7, input={"card": "4242"}), journal)
    text = "\n".join(lines)
    assert 'input:           {"card": "4242"}' in text
    rows = [line.split() for line in lines if line.startswith("  charge")]
    assert [row[:3] for row in rows] == [
        ["charge#attempt1", "failed", "1"],
        ["charge#attempt2", "failed", "2"],
        ["charge", "completed", "3"],
    ]
    assert text.count("TimeoutError: bank slow") == 1
    assert "PermissionError: card 4242 declined by the issuing bank…" in text
    assert lines[-1] == (
        "(… marks a value cut short: durable-sa status 7 --json shows every value whole)"
    )
    whole = render_status(_snap(run_id=7), journal[:1])
    assert "marks a value cut short" not in "\n".join(whole)
