"""pause() refuses a name nothing knows (a typo would pause nothing, successfully)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from durable_sa import Durable, durable
from durable_sa.core.registry import registry
from durable_sa.errors import UnknownWorkflowError
from durable_sa.runtime import presence
from durable_sa.testing import drain


def test_a_name_nothing_knows_is_refused_with_what_to_do(engine: Durable) -> None:
    durable("invoice").step("issue", lambda ctx: 1)
    with pytest.raises(UnknownWorkflowError) as refused:
        engine.pause("invoise")
    message = str(refused.value)
    assert "No workflow named 'invoise'" in message
    assert "invoice" in refused.value.known
    assert "Known: " in message
    assert "force=True" in message
    assert "durable-sa pause --force invoise" in message
    assert isinstance(refused.value, LookupError)
    assert engine.paused_workflows() == []  # nothing was written


def test_force_pauses_a_workflow_only_another_process_defines(engine: Durable) -> None:
    assert engine.pause("defined-elsewhere", force=True) is True
    assert engine.paused_workflows() == ["defined-elsewhere"]
    assert engine.unpause("defined-elsewhere") is True


def test_a_name_the_database_knows_is_paused_without_force(engine: Durable) -> None:
    """What the CLI relies on: it runs without the application's definitions."""
    durable("has-runs").step("a", lambda ctx: 1)
    run_id = engine.start("has-runs").run_id
    registry.unregister("has-runs")  # as in a process that does not define it
    assert engine.pause("has-runs") is True
    durable("has-runs").step("a", lambda ctx: 1)
    assert drain(engine) == 0
    assert engine.status(run_id).waiting_reason == "workflow paused"
    engine.unpause("has-runs")


def _heartbeat(engine: Durable, worker_id: str, workflow: str, *, expires_in: timedelta) -> None:
    """A heartbeat row as a worker in another process writes it."""
    now = engine.now
    with Session(engine.sa_engine) as session, session.begin():
        presence.beat(
            session,
            {
                "id": worker_id,
                "hostname": "h",
                "pid": 1,
                "concurrency": 1,
                "queues": None,
                "workflows": {workflow: "v1"},
                "in_flight": 0,
                "processed": 0,
                "started_at": now,
                "last_seen": now,
                "expires_at": now + expires_in,
            },
        )


def test_a_name_only_a_live_worker_defines_is_known(engine: Durable) -> None:
    _heartbeat(engine, "w-elsewhere", "only-on-a-worker", expires_in=timedelta(minutes=1))
    assert engine.pause("only-on-a-worker") is True
    with pytest.raises(UnknownWorkflowError, match=r"Known: .*only-on-a-worker"):
        engine.pause("only-on-a-workr")


def test_a_dead_worker_no_longer_makes_a_name_known(engine: Durable) -> None:
    _heartbeat(engine, "w-dead", "only-on-a-dead-worker", expires_in=timedelta(seconds=-1))
    with pytest.raises(UnknownWorkflowError) as refused:
        engine.pause("only-on-a-dead-worker")
    assert "only-on-a-dead-worker" not in refused.value.known
    assert engine.paused_workflows() == []


def test_a_scheduled_workflow_is_known(engine: Durable) -> None:
    durable("nightly").step("a", lambda ctx: 1)
    engine.schedule("nightly-run", "nightly", cron="0 3 * * *")
    registry.unregister("nightly")
    assert engine.pause("nightly") is True


def test_the_cli_refuses_an_unknown_name_and_takes_force(
    engine: Durable, durable_each_database_url: str, cli: object
) -> None:
    url = ("--database-url", durable_each_database_url)
    code, out, err = cli("pause", "nobody-defines-this", *url)  # type: ignore[operator]
    assert code != 0
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert "durable-sa pause --force nobody-defines-this" in err
    assert engine.paused_workflows() == []

    code, out, err = cli("pause", "--force", "nobody-defines-this", *url)  # type: ignore[operator]
    assert (code, err) == (0, "")
    assert out.startswith("paused nobody-defines-this")
    _, out, _ = cli("unpause", "nobody-defines-ths", *url)  # type: ignore[operator]
    assert out == "nobody-defines-ths was not paused (paused: nobody-defines-this)\n"


def test_the_refusal_lists_the_names_the_database_knows(engine: Durable) -> None:
    """The CLI defines no workflow: the names of runs and schedules are what it can list."""
    durable("exported").step("a", lambda ctx: 1)
    durable("digest").step("a", lambda ctx: 1)
    engine.start("exported")
    engine.schedule("nightly", "digest", cron="0 3 * * *")
    registry.unregister("exported")  # as in a process that does not define them
    registry.unregister("digest")
    with pytest.raises(UnknownWorkflowError) as refused:
        engine.pause("exportd")
    assert {"exported", "digest"} <= set(refused.value.known)
    assert "Known: " in str(refused.value)
    assert "exported" in str(refused.value)
