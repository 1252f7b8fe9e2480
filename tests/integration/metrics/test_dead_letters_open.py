"""``durable_sa_dead_letters_open`` can return to 0: dismiss a dead letter, or cancel its run."""

from __future__ import annotations

import json

import pytest

from durable_sa.errors import DeadLetterNotFoundError
from durable_sa.metrics import metrics_registry
from tests.integration.metrics.scraping import scrape, value


def _dead_letter(engine) -> tuple[int, int]:
    """A run whose job was dead-lettered (a worker crashed on it too often): (run, letter)."""
    run_id = engine.start("cli-three", {"n": 1}).run_id
    job = engine.admin.claim(worker="crashed")
    assert job is not None
    engine.backend.dead_letter(job, error="claimed 3 times without finishing")
    (letter,) = [each for each in engine.admin.dead_letters() if each.run_id == run_id]
    return run_id, letter.id


def _open(engine) -> float:
    return value(scrape(metrics_registry(engine, cache_seconds=0)), "durable_sa_dead_letters_open")


def test_a_dismissed_dead_letter_is_resolved_and_not_requeued(engine, app):
    run_id, letter_id = _dead_letter(engine)
    assert _open(engine) == 1
    engine.admin.dismiss_dead_letter(letter_id)
    assert _open(engine) == 0
    assert engine.admin.dead_letters() == []
    assert engine.admin.dead_letter(letter_id).resolved_by == "dismiss"
    assert engine.admin.claim(worker="w") is None  # nothing was requeued
    assert engine.status(run_id).status == "running"
    with pytest.raises(DeadLetterNotFoundError):  # already resolved: not open any more
        engine.admin.dismiss_dead_letter(letter_id)
    with pytest.raises(DeadLetterNotFoundError):
        engine.admin.dismiss_dead_letter(999)


def test_canceling_a_run_resolves_its_dead_letters(engine, app):
    run_id, letter_id = _dead_letter(engine)
    _, other = _dead_letter(engine)
    assert _open(engine) == 2
    engine.cancel(run_id)
    assert _open(engine) == 1  # the other run's stays open
    assert engine.admin.dead_letter(letter_id).resolved_by == "cancel"
    assert engine.admin.dead_letter(other).resolved_at is None


def test_durable_sa_dead_letters_dismiss(engine, durable_each_database_url, app, cli):
    _, letter_id = _dead_letter(engine)
    url = ["--database-url", durable_each_database_url]
    code, out, err = cli("dead-letters", "--dismiss", str(letter_id), *url)
    assert (code, err) == (0, "")
    assert out == f"dead letter {letter_id} dismissed: resolved, not requeued\n"
    _, out, _ = cli("dead-letters", *url)
    assert out == "no open dead letters\n"
    _, out, _ = cli("dead-letters", "--all", *url)
    assert " dismiss " in out.splitlines()[1]
    code, _, err = cli("dead-letters", "--dismiss", str(letter_id), *url)
    assert code == 1
    assert err.startswith(f"durable-sa: No dead letter with id {letter_id}")
    _, second = _dead_letter(engine)
    code, out, _ = cli("dead-letters", "--dismiss", str(second), "--json", *url)
    assert (code, json.loads(out)) == (0, {"dismissed": second})
    code, _, err = cli("dead-letters", "--dismiss", "1", "--requeue", "1", *url)
    assert code == 2
    assert "not allowed with argument" in err
