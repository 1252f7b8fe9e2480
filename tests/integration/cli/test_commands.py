"""Each operator command in-process, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from durable_sa import durable, registry
from durable_sa.store.models import runs_table
from durable_sa.testing import clear_jobs, drain

LONG = "x" * 500


def test_status_shows_the_run_its_journal_and_its_children(
    engine, durable_each_database_url, app, cli
):
    durable("cli-parent").step("first", lambda ctx: {"text": LONG}).child_workflow(
        "kid", "cli-three"
    )
    run_id = engine.start("cli-parent", {"n": 4}).run_id
    drain(engine)
    code, out, err = cli("status", str(run_id), "--database-url", durable_each_database_url)
    assert (code, err) == (0, "")
    assert f"run:             {run_id}" in out
    assert "workflow:        cli-parent" in out
    assert f"version:         {registry.get('cli-parent').version}" in out
    assert "status:          completed" in out
    assert "step:            2/2" in out
    journal = out.split("journal:")[1].split("children:")[0]
    assert "step_id" in journal
    assert "result / error" in journal
    first = next(line for line in journal.splitlines() if line.strip().startswith("first"))
    assert "completed" in first
    assert first.endswith("…")
    assert len(first) < 150  # the 500-character result is cut
    children = out.split("children:")[1].splitlines()
    child = engine.status(run_id).children[0]
    assert children[1] == f"  {child.run_id}  cli-three  completed  step 3/3"


def test_status_says_when_no_live_worker_has_the_runs_version(
    engine, durable_each_database_url, app, cli
):
    run_id = engine.start("cli-three", {"n": 1}).run_id
    version = registry.get("cli-three").version
    code, out, _ = cli("status", str(run_id), "--database-url", durable_each_database_url)
    assert code == 0
    assert (
        f"waiting for a worker with definition version {version} of workflow cli-three "
        "(no live worker has it)"
    ) in out
    assert "(no step has finished yet)" in out
    with engine.worker(poll_interval=0.05):
        engine.wait(run_id, timeout=10)
    code, out, _ = cli("status", str(run_id), "--database-url", durable_each_database_url)
    assert "waiting for a worker" not in out


def test_list_shows_one_line_per_run_with_filters_and_notes(
    engine, durable_each_database_url, app, cli
):
    done = engine.start("cli-three", {"n": 1}).run_id
    suspended = engine.start("cli-signal").run_id
    drain(engine)
    queued = engine.start("cli-three", {"n": 2}).run_id
    code, out, err = cli("list", "--database-url", durable_each_database_url)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["id", "workflow", "version", "status", "step", "updated_at", "note"]
    rows = {int(line.split()[0]): line for line in lines[1:]}
    assert list(rows) == [queued, suspended, done]
    assert "completed  3/3" in rows[done]
    assert "awaiting signal 'approve'" in rows[suspended]
    assert "waiting for a worker with version fp-" in rows[queued]
    assert registry.get("cli-three").version in rows[done]

    _, out, _ = cli("list", "--status", "suspended", "--database-url", durable_each_database_url)
    assert [line.split()[0] for line in out.splitlines()[1:]] == [str(suspended)]
    _, out, _ = cli(
        "list",
        "--workflow",
        "cli-three",
        "--limit",
        "1",
        "--database-url",
        durable_each_database_url,
    )
    assert out.splitlines()[1].split()[0] == str(queued)
    assert "(the 1 most recent; --limit N shows more)" in out
    _, out, _ = cli(
        "list", "--workflow", "nothing-like-it", "--database-url", durable_each_database_url
    )
    assert out == "no runs\n"


def test_resume_says_whether_the_signal_was_accepted(engine, durable_each_database_url, app, cli):
    run_id = engine.start("cli-signal").run_id
    drain(engine)
    url = ["--database-url", durable_each_database_url]
    code, out, _ = cli("resume", str(run_id), "nope", *url)
    assert code == 1
    assert (
        out
        == f"run {run_id} did not accept signal 'nope' (status: suspended, awaiting 'approve')\n"
    )
    code, out, _ = cli("resume", str(run_id), "approve", "--data", '{"by": "ops"}', *url)
    assert (code, out) == (0, f"run {run_id} accepted signal 'approve'; status: running\n")
    drain(engine)
    assert engine.status(run_id).results["ship"] == {"approved_by": "ops"}


def test_cancel_prints_the_canceled_runs(engine, durable_each_database_url, app, cli):
    durable("cli-parent").child_workflow("kid", "cli-signal")
    run_id = engine.start("cli-parent").run_id
    drain(engine)
    child = engine.status(run_id).children[0].run_id
    code, out, _ = cli("cancel", str(run_id), "--database-url", durable_each_database_url)
    assert (code, out) == (0, f"canceled: {run_id}, {child}\n")
    code, out, _ = cli("cancel", str(run_id), "--database-url", durable_each_database_url)
    assert (code, out) == (0, f"nothing to cancel: run {run_id} is canceled\n")


def test_recover_reports_how_many_runs_got_a_job(engine, durable_each_database_url, app, cli):
    run_ids = [engine.start("cli-three", {"n": n}).run_id for n in range(3)]
    clear_jobs(engine)
    code, out, _ = cli("recover", "--database-url", durable_each_database_url)
    assert code == 0
    first, last = out.splitlines()
    assert first.startswith("recovering on ")
    assert last == "re-enqueued 3 run(s)"
    drain(engine)
    assert all(engine.status(r).status == "completed" for r in run_ids)


def test_dead_letters_are_listed_and_requeued(engine, durable_each_database_url, app, cli):
    run_id = engine.start("cli-three", {"n": 5}).run_id
    job = engine.admin.claim()
    assert job is not None
    engine.backend.dead_letter(job, error="No durable workflow named 'cli-three' here")
    code, out, _ = cli("dead-letters", "--database-url", durable_each_database_url)
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["id", "kind", "run", "attempts", "failed_at", "error"]
    letter_id, kind, run, *_ = row.split()
    assert (kind, run) == ("advance", str(run_id))
    assert "No durable workflow named 'cli-three'" in row
    _, listed, _ = cli("list", "--database-url", durable_each_database_url)
    assert f"stranded, dead letter {letter_id}: No durable workflow" in listed
    _, shown, _ = cli("status", str(run_id), "--database-url", durable_each_database_url)
    assert f"stranded:        dead letter {letter_id}: No durable workflow" in shown

    code, out, _ = cli(
        "dead-letters", "--requeue", letter_id, "--database-url", durable_each_database_url
    )
    assert code == 0
    assert out.startswith(f"dead letter {letter_id} requeued as job ")
    drain(engine)
    assert engine.status(run_id).status == "completed"
    _, out, _ = cli("dead-letters", "--database-url", durable_each_database_url)
    assert out == "no open dead letters\n"
    _, out, _ = cli("dead-letters", "--all", "--database-url", durable_each_database_url)
    header, row = out.splitlines()
    assert header.split() == ["id", "kind", "run", "attempts", "failed_at", "resolved", "error"]
    assert row.split()[:3] == [letter_id, "advance", str(run_id)]
    assert " requeue " in row
    code, _, err = cli(
        "dead-letters", "--requeue", "999", "--database-url", durable_each_database_url
    )
    assert code == 1
    assert err.startswith("durable-sa: No dead letter with id 999")


def test_prune_deletes_old_finished_runs_and_says_what_went(
    engine, durable_each_database_url, app, cli
):
    durable("cli-parent").child_workflow("kid", "cli-three")
    old = engine.start("cli-parent", {"n": 1}).run_id
    recent = engine.start("cli-three", {"n": 2}).run_id
    waiting = engine.start("cli-signal").run_id
    drain(engine)
    tree = {old, engine.status(old).children[0].run_id}
    with engine.sa_engine.begin() as conn:  # the tree finished 40 days ago
        conn.execute(
            sa.update(runs_table)
            .where(runs_table.c.id.in_(tree))
            .values(updated_at=engine.now - timedelta(days=40))
        )
    url = ["--database-url", durable_each_database_url]

    code, out, err = cli("prune", "--older-than", "30d", "--dry-run", *url)
    assert (code, err) == (0, "")
    assert out == (
        "dry run: would prune 2 runs that finished more than 30d ago, with 4 journal "
        "entries, 0 jobs and 0 dead letters, in 1 batch; nothing was deleted\n"
    )
    assert {snap.run_id for snap in engine.list()} == {*tree, recent, waiting}

    code, out, _ = cli("prune", "--older-than", "30d", "--batch-size", "1", *url)  # a tree: 1 batch
    assert (code, out) == (
        0,
        (
            "pruned 2 runs that finished more than 30d ago, with 4 journal entries, "
            "0 jobs and 0 dead letters, in 1 batch\n"
        ),
    )
    assert {snap.run_id for snap in engine.list()} == {recent, waiting}

    code, out, _ = cli("prune", "--older-than", "4w", *url)
    assert (code, out) == (
        0,
        (
            "pruned 0 runs that finished more than 4w ago, with 0 journal entries, "
            "0 jobs and 0 dead letters, in 0 batches\n"
        ),
    )
    code, out, _ = cli("prune", "--older-than", "0s", *url)
    assert code == 0
    assert out.startswith("pruned 1 run that finished more than 0s ago, with 3 journal entries")
    assert [snap.run_id for snap in engine.list()] == [waiting]


def test_workers_lists_live_workers(engine, durable_each_database_url, app, cli):
    _, out, _ = cli("workers", "--database-url", durable_each_database_url)
    assert out == "no live workers\n"
    with engine.worker(concurrency=3, name="cli-test-worker", poll_interval=0.05):
        code, out, _ = cli("workers", "--database-url", durable_each_database_url)
    assert code == 0
    header, row = out.splitlines()
    assert header.split()[:7] == [
        "id",
        "host",
        "pid",
        "concurrency",
        "in_flight",
        "processed",
        "last_seen",
    ]
    assert row.startswith("cli-test-worker")
    assert "cli-three@fp-" in row
    assert "cli-signal@fp-" in row


def test_database_url_comes_from_the_option_or_the_environment(
    engine, durable_each_database_url, app, cli, monkeypatch
):
    run_id = engine.start("cli-three", {"n": 1}).run_id
    monkeypatch.delenv("DURABLE_SA_DATABASE_URL", raising=False)
    code, _, err = cli("status", str(run_id))
    assert code == 2
    assert err == (
        "durable-sa: no database: pass --database-url URL or set DURABLE_SA_DATABASE_URL\n"
    )
    assert cli("--database-url", durable_each_database_url, "status", str(run_id))[0] == 0
    monkeypatch.setenv("DURABLE_SA_DATABASE_URL", durable_each_database_url)
    code, out, _ = cli("status", str(run_id))
    assert code == 0
    assert f"run:             {run_id}" in out


def test_a_database_without_tables_is_reported_not_created(durable_each_database_url, cli):
    sa_engine = sa.create_engine(durable_each_database_url)
    with sa_engine.begin() as conn:  # make the SQLite file exist, empty
        conn.exec_driver_sql("CREATE TABLE unrelated (id INTEGER)")
    sa_engine.dispose()
    code, out, err = cli("list", "--database-url", durable_each_database_url)
    assert code == 1
    assert out == ""
    assert err.startswith("durable-sa: ")
    assert "has no durable-sa tables" in err
    assert err.count("\n") == 1


def test_unknown_run_is_one_line(engine, durable_each_database_url, cli):
    for command in (["status", "424242"], ["cancel", "424242"], ["resume", "424242", "go"]):
        code, out, err = cli(*command, "--database-url", durable_each_database_url)
        assert code == 1
        assert out == ""
        assert err == "durable-sa: No durable run with id 424242 exists.\n"


def test_a_run_id_beyond_the_column_is_an_unknown_run_in_one_line(
    engine, durable_each_database_url, cli
):
    for run_id in ("9223372036854775808", "18446744073709551616", "-5", "0"):
        for command in (["status", run_id], ["cancel", run_id], ["resume", run_id, "go"]):
            code, out, err = cli(*command, "--database-url", durable_each_database_url)
            assert (code, out) == (1, "")
            assert err == f"durable-sa: No durable run with id {run_id} exists.\n"


def test_a_dead_letter_is_shown_whole(engine, durable_each_database_url, app, cli):
    run_id = engine.start("cli-three", {"n": 5}).run_id
    job = engine.admin.claim()
    assert job is not None
    long_error = "Traceback (most recent call last):\n" + "  frame line\n" * 30 + "OSError: gone"
    engine.backend.dead_letter(job, error=long_error)
    (letter,) = engine.admin.dead_letters()
    code, out, err = cli(
        "dead-letters", "show", str(letter.id), "--database-url", durable_each_database_url
    )
    assert (code, err) == (0, "")
    assert f"dead letter:  {letter.id}" in out
    assert f"run:          {run_id}" in out
    assert "resolved:     open" in out
    assert out.rstrip().endswith("  OSError: gone")  # the whole error, never cut
    assert out.count("frame line") == 30
    code, _, err = cli("dead-letters", "show", "--database-url", durable_each_database_url)
    assert code == 2
    assert err.startswith("durable-sa: dead-letters show needs the dead letter's ID")
    code, _, err = cli(
        "dead-letters", "show", "424242", "--database-url", durable_each_database_url
    )
    assert code == 1
    assert "424242" in err


def test_status_shows_the_input_and_where_a_step_failed(engine, durable_each_database_url, cli):
    def card_declined(ctx):
        msg = f"card {ctx.input['card']} declined"
        raise PermissionError(msg)

    durable("cli-fails").step("charge", card_declined, max_retries=1)
    run_id = engine.start("cli-fails", {"card": "4242"}).run_id
    drain(engine)
    url = ["--database-url", durable_each_database_url]
    _, out, _ = cli("status", str(run_id), *url)
    assert 'input:           {"card": "4242"}' in out
    assert "PermissionError: card 4242 declined" in out
    assert f"durable-sa status {run_id} --traceback shows where" in out
    _, out, _ = cli("status", str(run_id), "--traceback", *url)
    assert "charge (PermissionError, attempt 1):" in out
    assert "raise PermissionError(msg)" in out
