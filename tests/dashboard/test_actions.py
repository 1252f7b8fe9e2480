"""Each action does what the engine's own call does, and says so in one line."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from durable_sa.testing import drain
from tests.dashboard.conftest import flash_of, post

if TYPE_CHECKING:
    from starlette.testclient import TestClient

    from durable_sa import Durable


def _message(client: TestClient, response: object) -> dict[str, str]:
    return flash_of(client, response)


def test_send_delivers_a_signal_the_run_waits_for(engine: Durable, client: TestClient) -> None:
    run_id = engine.start("approve").run_id
    drain(engine)
    sent = post(
        client, f"/runs/{run_id}/signal", f"/runs/{run_id}", signal="approve", data='{"by": "ann"}'
    )
    assert sent.status_code == 303
    assert _message(client, sent) == {"done": "signal 'approve' delivered"}
    drain(engine)
    snap = engine.status(run_id)
    assert snap.status == "completed"
    assert snap.results["ship"] == {"by": {"by": "ann"}}
    shown = client.get(sent.headers["location"])
    assert "signal &#39;approve&#39; delivered" in shown.text


def test_send_keeps_a_signal_for_a_run_not_waiting_yet(engine: Durable, client: TestClient):
    run_id = engine.start("approve").run_id  # not yet at its wait
    sent = post(client, f"/runs/{run_id}/signal", f"/runs/{run_id}", signal="approve")
    assert _message(client, sent) == {"done": "signal 'approve' kept for the run's next wait"}
    drain(engine)
    assert engine.status(run_id).status == "completed"


def test_resume_refuses_a_run_that_does_not_wait(engine: Durable, client: TestClient) -> None:
    run_id = engine.start("approve").run_id
    drain(engine)
    other = post(client, f"/runs/{run_id}/signal", f"/runs/{run_id}", signal="other", mode="resume")
    assert "did not take signal 'other'" in _message(client, other)["error"]
    taken = post(
        client, f"/runs/{run_id}/signal", f"/runs/{run_id}", signal="approve", mode="resume"
    )
    assert _message(client, taken) == {"done": f"signal 'approve' resumed run {run_id}"}


def test_a_signal_with_bad_json_or_to_an_ended_run_is_explained(
    engine: Durable, client: TestClient
) -> None:
    run_id = engine.start("greet").run_id
    bad = post(client, f"/runs/{run_id}/signal", f"/runs/{run_id}", signal="x", data="{nope")
    assert _message(client, bad)["error"].startswith("the data is not valid JSON")
    drain(engine)
    ended = post(client, f"/runs/{run_id}/signal", f"/runs/{run_id}", signal="x")
    assert (
        "ended" in _message(client, ended)["error"]
        or "completed" in _message(client, ended)["error"]
    )
    missing = post(client, "/runs/424242/signal", "/", signal="x")
    assert "424242" in _message(client, missing)["error"]


def test_cancel_without_and_with_compensation(engine: Durable, client: TestClient) -> None:
    plain = engine.start("approve").run_id
    drain(engine)
    done = post(client, f"/runs/{plain}/cancel", f"/runs/{plain}")
    assert _message(client, done) == {"done": f"canceled: {plain}"}
    assert engine.status(plain).status == "canceled"
    again = post(client, f"/runs/{plain}/cancel", f"/runs/{plain}")
    assert "nothing to cancel" in _message(client, again)["error"]

    durable_run = engine.start("approve").run_id
    drain(engine)
    compensated = post(
        client, f"/runs/{durable_run}/cancel", f"/runs/{durable_run}", compensate="1"
    )
    assert _message(client, compensated)["done"].startswith("compensating, then canceled")
    drain(engine)
    assert engine.status(durable_run).status == "canceled"


def test_recover_and_requeue_a_dead_letter(engine: Durable, client: TestClient) -> None:
    first = engine.start("greet").run_id
    job = engine.admin.claim()
    assert job is not None
    engine.backend.dead_letter(job, error="lost")
    (letter,) = engine.admin.dead_letters()
    assert "Requeue" in client.get("/dead-letters").text
    requeued = post(client, f"/dead-letters/{letter.id}/requeue", "/dead-letters")
    assert _message(client, requeued)["done"].startswith(
        f"dead letter {letter.id} requeued as job "
    )
    again = post(client, f"/dead-letters/{letter.id}/requeue", "/dead-letters")
    assert "error" in _message(client, again)
    drain(engine)
    assert engine.status(first).status == "completed"

    second = engine.start("greet").run_id
    job = engine.admin.claim()
    assert job is not None
    engine.backend.dead_letter(job, error="lost again")
    recovered = post(client, "/recover", "/dead-letters", back="/dead-letters")
    assert _message(client, recovered) == {"done": "re-enqueued 1 run(s)"}
    assert recovered.headers["location"].startswith("/dead-letters")
    drain(engine)
    assert engine.status(second).status == "completed"


@pytest.mark.parametrize(
    "back", ["//evil.example/x", "/\\evil.example", "https://evil.example", "evil", ""]
)
def test_actions_go_back_only_to_a_dashboard_page(
    engine: Durable, client: TestClient, back: str
) -> None:
    away = post(client, "/recover", "/", back=back)
    assert away.headers["location"] == "/dead-letters"
    paused = post(client, "/workflows/greet/pause", "/", pause="1", back=back)
    assert paused.headers["location"] == "/workflows"
    kept = post(client, "/workflows/greet/pause", "/", pause="0", back="/limits?x=1")
    assert kept.headers["location"] == "/limits?x=1"


def test_pause_and_unpause_a_workflow(engine: Durable, client: TestClient) -> None:
    engine.start("greet")
    paused = post(client, "/workflows/greet/pause", "/workflows", pause="1")
    assert _message(client, paused) == {"done": "paused greet"}
    assert engine.paused_workflows() == ["greet"]
    page = client.get("/workflows").text
    assert "Unpause" in page
    unpaused = post(client, "/workflows/greet/pause", "/limits", pause="0", back="/limits")
    assert _message(client, unpaused) == {"done": "unpaused greet"}
    assert unpaused.headers["location"].startswith("/limits")
    assert engine.paused_workflows() == []
