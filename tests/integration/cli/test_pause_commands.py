"""``durable-sa pause`` / ``unpause`` in-process, on SQLite and PostgreSQL."""

from __future__ import annotations

from durable_sa import durable
from durable_sa.testing import drain


def test_pause_and_unpause_a_workflow(engine, durable_each_database_url, cli):
    durable("cli-paused").step("a", lambda ctx: 1)
    run_id = engine.start("cli-paused").run_id
    url = ("--database-url", durable_each_database_url)

    code, out, err = cli("pause", "cli-paused", *url)
    assert (code, err) == (0, "")
    assert out.startswith("paused cli-paused")
    assert engine.paused_workflows() == ["cli-paused"]
    assert cli("pause", "cli-paused", *url)[1] == "cli-paused was already paused\n"
    assert drain(engine) == 0
    assert engine.status(run_id).status == "running"

    code, out, err = cli("unpause", "cli-paused", *url)
    assert (code, out, err) == (0, "unpaused cli-paused\n", "")
    assert cli("unpause", "cli-paused", *url)[1] == "cli-paused was not paused\n"
    drain(engine)
    assert engine.status(run_id).status == "completed"


def test_pause_says_what_is_wrong_in_one_line(engine, durable_each_database_url, cli):
    code, out, err = cli("pause", "", "--database-url", durable_each_database_url)
    assert code != 0
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert "workflow name must be a non-empty string" in err
    code, _, err = cli("pause", "--database-url", durable_each_database_url)
    assert code != 0
    assert "NAME" in err


def test_status_says_a_runs_workflow_is_paused(engine, durable_each_database_url, cli):
    durable("cli-paused-status").step("a", lambda ctx: 1)
    run_id = engine.start("cli-paused-status").run_id
    url = ("--database-url", durable_each_database_url)
    engine.pause("cli-paused-status")
    code, out, _ = cli("status", str(run_id), *url)
    assert code == 0
    assert (
        "paused: workflow cli-paused-status is paused; no step of it runs until "
        "`durable-sa unpause cli-paused-status`"
    ) in out
    assert out.index("paused:") < out.index("journal:")
    engine.unpause("cli-paused-status")
    assert "paused:" not in cli("status", str(run_id), *url)[1]
