"""The read commands' filters and ``--json`` in-process, on SQLite and PostgreSQL.

JSON output is parsed back with ``json.loads``; the shapes are those of
:mod:`durable_sa.cli.json_output`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from durable_sa import durable
from durable_sa.store.models import runs_table
from durable_sa.testing import drain


def _age(engine, run_ids, days):
    """Pretend the runs were created ``days`` days ago."""
    with engine.sa_engine.begin() as conn:
        conn.execute(
            sa.update(runs_table)
            .where(runs_table.c.id.in_(run_ids))
            .values(created_at=engine.now - timedelta(days=days))
        )


def _ids(out):
    return [line.split()[0] for line in out.splitlines()[1:] if not line.startswith("(")]


def test_list_shows_children_under_their_parent_or_only_top_level_runs(
    engine, durable_each_database_url, app, cli
):
    durable("cli-parent").child_workflow("kid", "cli-signal")
    parent = engine.start("cli-parent").run_id
    alone = engine.start("cli-three", {"n": 1}).run_id
    drain(engine)
    child = engine.status(parent).children[0].run_id
    url = ["--database-url", durable_each_database_url]

    code, out, err = cli("list", *url)
    assert (code, err) == (0, "")
    assert _ids(out) == [str(alone), str(parent), str(child)]
    rows = out.splitlines()
    assert rows[3].startswith(f"  {child}  cli-signal")  # indented under its parent
    assert "awaiting signal 'approve'" in rows[3]
    assert "awaiting its child run (step 'kid')" in rows[2]

    _, out, _ = cli("list", "--top-level", *url)
    assert _ids(out) == [str(alone), str(parent)]

    _, out, _ = cli("list", "--status", "suspended", *url)  # the parent waits, too
    assert _ids(out) == [str(parent), str(child)]
    _, out, _ = cli("list", "--workflow", "cli-signal", *url)  # its parent is not listed
    assert _ids(out) == [str(child)]
    assert out.splitlines()[1].endswith(f"child of run {parent}; awaiting signal 'approve'")


def test_list_since_an_age_or_a_time(engine, durable_each_database_url, app, cli):
    old = engine.start("cli-three", {"n": 1}).run_id
    new = engine.start("cli-three", {"n": 2}).run_id
    _age(engine, [old], days=3)
    url = ["--database-url", durable_each_database_url]

    _, out, _ = cli("list", *url)
    assert _ids(out) == [str(new), str(old)]
    _, out, _ = cli("list", "--since", "2d", *url)
    assert _ids(out) == [str(new)]
    _, out, _ = cli("list", "--since", "4d", *url)
    assert _ids(out) == [str(new), str(old)]
    two_days_ago = (engine.now - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S")
    _, out, _ = cli("list", "--since", two_days_ago, *url)  # no offset: UTC
    assert _ids(out) == [str(new)]
    _, out, _ = cli("list", "--since", f"{two_days_ago}+14:00", *url)  # 14 h earlier
    assert _ids(out) == [str(new)]
    _, out, _ = cli("list", "--since", "2099-01-01", *url)
    assert out == "no runs\n"
    code, out, err = cli("list", "--since", "999999999d", *url)  # before datetime's range
    assert (code, err) == (0, "")
    assert _ids(out) == [str(new), str(old)]


def test_list_json_is_one_run_per_line(engine, durable_each_database_url, app, cli):
    durable("cli-parent").child_workflow("kid", "cli-signal")
    parent = engine.start("cli-parent", {"order": 7}).run_id
    drain(engine)
    child = engine.status(parent).children[0].run_id
    code, out, err = cli("list", "--json", "--database-url", durable_each_database_url)
    assert (code, err) == (0, "")
    runs = [json.loads(line) for line in out.splitlines()]
    assert [(r["run_id"], r["parent_run_id"]) for r in runs] == [(child, parent), (parent, None)]
    top = runs[1]
    assert top["workflow_name"] == "cli-parent"
    assert top["status"] == "suspended"
    assert top["input"] == {"order": 7}
    assert (top["wait_kind"], top["wait_step"]) == ("child", "kid")
    assert datetime.fromisoformat(top["created_at"]).tzinfo is not None
    assert all("children" not in r for r in runs)
    _, out, _ = cli("list", "--json", "--limit", "1", "--database-url", durable_each_database_url)
    assert len(out.splitlines()) == 1  # no footer in JSON
    json.loads(out)
    _, out, _ = cli(
        "list", "--json", "--workflow", "none-such", "--database-url", durable_each_database_url
    )
    assert out == ""


def test_status_json_has_the_journal_with_errors_input_and_children(
    engine, durable_each_database_url, cli
):
    def card_declined(ctx):
        msg = f"card {ctx.input['card']} declined"
        raise PermissionError(msg)

    durable("cli-fails").step("reserve", lambda ctx: {"held": True}).step(
        "charge", card_declined, max_retries=2
    )
    run_id = engine.start("cli-fails", {"card": "4242"}).run_id
    drain(engine, now=engine.now + timedelta(hours=1))  # the retry's backoff, too
    code, out, err = cli(
        "status", str(run_id), "--json", "--database-url", durable_each_database_url
    )
    assert (code, err) == (0, "")
    assert len(out.splitlines()) == 1
    run = json.loads(out)
    assert run["run_id"] == run_id
    assert run["status"] == "failed"
    assert run["input"] == {"card": "4242"}
    assert run["error"] == "PermissionError: card 4242 declined"
    assert run["children"] == []
    for field in ("wait_kind", "wait_step", "wake_at", "awaiting_signal", "stranded", "result"):
        assert run[field] is None
    journal = {row["step_id"]: row for row in run["journal"]}
    assert journal["reserve"]["result"] == {"held": True}
    failed = [row for row in run["journal"] if row["status"] == "failed"]
    assert [(row["step_id"], row["attempt"]) for row in failed] == [
        ("charge#attempt1", 1),
        ("charge", 2),
    ]
    for row in failed:  # each failed attempt, with its error, type and traceback
        assert row["error"] == "PermissionError: card 4242 declined"
        assert row["error_type"] == "PermissionError"
        assert "raise PermissionError(msg)" in row["traceback"]
        datetime.fromisoformat(row["completed_at"])


def test_status_json_shows_a_stranded_run_and_its_wait(engine, durable_each_database_url, app, cli):
    run_id = engine.start("cli-three", {"n": 5}).run_id
    job = engine.admin.claim()
    assert job is not None
    engine.backend.dead_letter(job, error="OSError: gone")
    url = ["--database-url", durable_each_database_url]
    (letter,) = engine.admin.dead_letters()
    _, out, _ = cli("status", str(run_id), "--json", *url)
    assert json.loads(out)["stranded"] == f"dead letter {letter.id}: OSError: gone"

    gated = engine.start("cli-signal").run_id
    drain(engine)
    _, out, _ = cli("status", str(gated), "--json", *url)
    run = json.loads(out)
    assert (run["wait_kind"], run["wait_step"], run["awaiting_signal"]) == (
        "signal",
        "approval",
        "approve",
    )


def test_dead_letters_json_lines_and_one_dead_letter(engine, durable_each_database_url, app, cli):
    runs = [engine.start("cli-three", {"n": n}).run_id for n in range(2)]
    for _ in runs:
        job = engine.admin.claim()
        assert job is not None
        engine.backend.dead_letter(job, error="OSError: gone\n  with a second line")
    url = ["--database-url", durable_each_database_url]
    code, out, err = cli("dead-letters", "--json", *url)
    assert (code, err) == (0, "")
    letters = [json.loads(line) for line in out.splitlines()]
    assert sorted(letter["run_id"] for letter in letters) == sorted(runs)
    assert [letter["id"] for letter in letters] == sorted(
        (letter["id"] for letter in letters), reverse=True
    )
    first = letters[0]
    assert first["error"] == "OSError: gone\n  with a second line"
    assert first["kind"] == "advance"
    assert first["resolved_by"] is None
    datetime.fromisoformat(first["failed_at"])

    code, out, _ = cli("dead-letters", "show", str(first["id"]), "--json", *url)
    assert code == 0
    assert json.loads(out) == first

    code, out, _ = cli("dead-letters", "--requeue", str(first["id"]), "--json", *url)
    assert code == 0
    requeued = json.loads(out)
    assert requeued["requeued"] == first["id"]
    assert isinstance(requeued["job_id"], int)
    _, out, _ = cli("dead-letters", "--all", "--json", *url)
    resolved = {row["id"]: row["resolved_by"] for row in map(json.loads, out.splitlines())}
    assert resolved[first["id"]] == "requeue"


def test_workers_json_one_line_per_live_worker(engine, durable_each_database_url, app, cli):
    url = ["--database-url", durable_each_database_url]
    assert cli("workers", "--json", *url) == (0, "", "")
    with engine.worker(concurrency=3, name="cli-json-worker", poll_interval=0.05):
        code, out, _ = cli("workers", "--json", *url)
    assert code == 0
    (worker,) = [json.loads(line) for line in out.splitlines()]
    assert worker["id"] == "cli-json-worker"
    assert worker["concurrency"] == 3
    assert {"cli-three", "cli-signal"} <= set(worker["workflows"])  # and any imported earlier
    assert worker["workflows"]["cli-three"].startswith("fp-")
    assert datetime.fromisoformat(worker["last_seen"]) <= datetime.now(UTC) + timedelta(seconds=5)


def test_a_long_value_is_cut_between_words_and_the_footer_says_where_to_see_it(
    engine, durable_each_database_url, cli
):
    sentence = "the bank declined the card because the holder blocked every online payment"

    def fails(ctx):
        raise PermissionError(sentence)

    durable("cli-wordy").step("charge", fails, max_retries=1)
    run_id = engine.start("cli-wordy").run_id
    drain(engine)
    url = ["--database-url", durable_each_database_url]
    _, out, _ = cli("list", *url)
    row = out.splitlines()[1]
    shown = row.split("error: ")[1]
    assert shown.endswith("…")
    assert f"PermissionError: {sentence}".startswith(shown.removesuffix("…") + " ")
    assert out.splitlines()[-1] == (
        "(… marks a value cut short: durable-sa status ID shows the run whole, or list --json)"
    )
    _, out, _ = cli("status", str(run_id), *url)
    assert out.splitlines()[-1] == (
        f"(… marks a value cut short: durable-sa status {run_id} --json shows every value whole)"
    )
    _, out, _ = cli("status", str(run_id), "--json", *url)
    assert json.loads(out)["error"] == f"PermissionError: {sentence}"


def test_status_shows_every_attempt_and_what_each_rollback_undid(engine, sa_engine, cli):
    tries = iter(["sku-1"])

    def reserve(ctx):
        missing = next(tries, None)
        if missing is not None:
            raise KeyError(missing)
        return "held"

    def ship(ctx):
        msg = "no courier"
        raise RuntimeError(msg)

    durable("cli-undo").step("reserve", reserve, compensate=lambda ctx: None).step(
        "note", lambda ctx: 1
    ).step("ship", ship, max_retries=1)
    run_id = engine.start("cli-undo").run_id
    drain(engine, now=engine.now + timedelta(hours=1))
    url = sa_engine.url.render_as_string(hide_password=False)
    code, out, err = cli("status", str(run_id), "--database-url", url)
    assert (code, err) == (0, "")
    rows = {
        line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and "#" in line
    }
    assert "KeyError: 'sku-1'" in rows["reserve#attempt1"]
    assert rows["reserve#compensate"].endswith("undone: reserve")
    assert rows["note#compensate"].endswith("nothing to undo: it has no compensator")


def test_list_and_status_show_pending_runs_and_why_they_wait(
    engine, durable_each_database_url, cli
):
    durable("cli-limited", max_active=1).wait_for_signal("wait", "go")
    engine.start("cli-limited")
    waiting = engine.start("cli-limited").run_id
    url = ["--database-url", durable_each_database_url]

    code, out, err = cli("list", "--status", "pending", *url)
    assert (code, err) == (0, "")
    assert _ids(out) == [str(waiting)]
    assert "pending: limit of workflow 'cli-limited' (1/1 active)" in out.splitlines()[1]
    _, out, _ = cli("list", "--status", "pending", "--json", *url)
    assert json.loads(out.splitlines()[0])["waiting_reason"] == (
        "limit of workflow 'cli-limited' (1/1 active)"
    )
    _, out, _ = cli("status", str(waiting), *url)
    assert "pending: limit of workflow 'cli-limited' (1/1 active)" in out
