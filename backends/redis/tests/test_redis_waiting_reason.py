"""status() says why a run waits on a relay backend too: its deferred job is an outbox row."""

from __future__ import annotations

from datetime import timedelta

from durable_sa import Durable, durable
from durable_sa.results import JobOutcome

LEASE = timedelta(seconds=2)


def _run_next(engine: Durable) -> JobOutcome:
    engine.relay().drain()
    job = engine.admin.claim(worker="w1", lease=LEASE)
    assert job is not None
    return engine.admin.run_job(job)


def test_a_step_deferred_by_a_rate_limit_is_named_in_the_runs_status(
    redis_engine: Durable,
) -> None:
    redis_engine.set_rate_limit("relay-api", limit=1, per=timedelta(hours=1))
    durable("relay-limited").step("a", lambda ctx: 1, rate_limit="relay-api")
    runs = [redis_engine.start("relay-limited").run_id for _ in range(2)]
    outcomes = sorted([_run_next(redis_engine) for _ in range(2)], key=str)
    assert outcomes == [JobOutcome.APPLIED, JobOutcome.DEFERRED]

    reasons = {
        snap.status.value: snap.waiting_reason
        for snap in (redis_engine.status(run_id) for run_id in runs)
    }
    assert reasons["completed"] is None
    assert reasons["running"] is not None
    assert reasons["running"].startswith("rate limit 'relay-api' (next at ")
