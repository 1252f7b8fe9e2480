"""The step histogram, measured where a step attempt ends, in the process that runs it."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest

from durable_sa import durable
from durable_sa.engine import observers
from durable_sa.metrics import metrics_registry, observe_steps, stop_observing_steps
from durable_sa.testing import drain
from tests.integration.metrics.scraping import scrape, value


@pytest.fixture
def observing():
    observe_steps(None)
    yield
    stop_observing_steps()


def _flaky(ctx):
    if ctx.attempt == 1:
        msg = "first attempt fails"
        raise RuntimeError(msg)
    return "ok"


def _always(ctx):
    if ctx.input.get("bad"):
        msg = "declined"
        raise RuntimeError(msg)
    return "ok"


def _define() -> str:
    name = f"m-steps-{uuid.uuid4().hex[:8]}"  # the instruments are the process's: a fresh name
    (
        durable(name)
        .step("quick", lambda ctx: 1)
        .step("slow", lambda ctx: time.sleep(0.06))
        .step("flaky", _flaky, max_retries=2)
        .step("charge", _always, max_retries=2)
    )
    return name


def test_every_step_attempt_is_observed_by_workflow_and_step(engine, observing):
    name = _define()
    for _ in range(2):
        engine.start(name, {})
    drain(engine, now=engine.now + timedelta(hours=1))  # the retries' backoff too
    samples = scrape(metrics_registry(engine, cache_seconds=0))

    def duration(suffix: str, step: str, **more: str) -> float:
        return value(
            samples, f"durable_sa_step_duration_seconds_{suffix}", workflow=name, step=step, **more
        )

    assert duration("count", "quick") == 2
    assert duration("count", "slow") == 2
    assert duration("count", "flaky") == 4  # two attempts of each run
    assert duration("sum", "slow") >= 0.12
    assert duration("bucket", "slow", le="0.05") == 0
    assert duration("bucket", "slow", le="+Inf") == 2
    assert duration("bucket", "quick", le="0.05") == 2

    def attempts(step: str, outcome: str) -> float:
        return value(
            samples, "durable_sa_step_attempts_total", workflow=name, step=step, outcome=outcome
        )

    assert attempts("flaky", "retry") == 2  # a failure followed by another attempt
    assert attempts("flaky", "advance") == 2
    assert attempts("quick", "advance") == 2
    assert attempts("charge", "advance") == 2
    assert value(samples, "durable_sa_runs", workflow=name, status="completed") == 2


def test_a_retry_and_a_final_failure_are_told_apart(engine, observing):
    name = _define()
    engine.start(name, {"bad": True})  # charge fails twice: once retried, then final
    drain(engine, now=engine.now + timedelta(hours=1))
    samples = scrape(metrics_registry(engine, cache_seconds=0))

    def attempts(outcome: str) -> float:
        return value(
            samples, "durable_sa_step_attempts_total", workflow=name, step="charge", outcome=outcome
        )

    assert attempts("retry") == 1
    assert attempts("compensate") == 1  # the last attempt: the run rolls back
    assert (
        "durable_sa_step_attempts_total",
        frozenset({("workflow", name), ("step", "charge"), ("outcome", "failed")}),
    ) not in samples


def test_nothing_is_observed_unless_asked(engine):
    assert observers.step_observers == ()
    name = _define()
    engine.start(name, {})
    drain(engine, now=engine.now + timedelta(hours=1))
    samples = scrape(metrics_registry(engine, cache_seconds=0))
    assert not [key for key in samples if ("workflow", name) in key[1] and "step" in key[0]]


def test_an_observer_that_raises_never_fails_the_step(engine, caplog):
    def broken(workflow, step, outcome, seconds):
        msg = "instrument broke"
        raise ValueError(msg)

    observers.add_step_observer(broken)
    try:
        durable("m-observed").step("only", lambda ctx: 7)
        run_id = engine.start("m-observed", {}).run_id
        drain(engine)
    finally:
        observers.remove_step_observer(broken)
    assert engine.status(run_id).result == {"only": 7}
    assert "step observer" in caplog.text
    assert observers.step_observers == ()


def test_a_transactional_step_is_observed_too(engine, observing):
    name = f"m-tx-{uuid.uuid4().hex[:8]}"
    durable(name).step("write", lambda ctx: 1, transactional=True).step("after", lambda ctx: 2)
    engine.start(name, {})
    drain(engine)
    samples = scrape(metrics_registry(engine, cache_seconds=0))

    count = "durable_sa_step_duration_seconds_count"
    assert value(samples, count, workflow=name, step="write") == 1
    assert value(samples, count, workflow=name, step="after") == 1
