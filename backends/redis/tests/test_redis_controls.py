"""Pause and shared rate limits through Redis Streams: the relay backends honour them too.

A relay backend's claim has no filter of its own: the check every delivered job passes
before its handler runs (``durable_sa.engine.controls``) gives the job back to the
outbox, due later, with no attempt used.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from durable_sa import Durable, durable
from durable_sa.results import JobOutcome
from durable_sa.store.models import dead_letters_table, outbox_table

LEASE = timedelta(seconds=2)


def claimed(engine: Durable):
    engine.relay().drain()
    job = engine.admin.claim(worker="w1", lease=LEASE)
    assert job is not None
    return job


def waiting_rows(engine: Durable) -> list:
    with engine.sa_engine.connect() as conn:
        return list(
            conn.execute(
                select(outbox_table).where(outbox_table.c.published_at.is_(None))
            ).mappings()
        )


def dead_letters(engine: Durable) -> int:
    with engine.sa_engine.connect() as conn:
        return len(conn.execute(select(dead_letters_table.c.id)).all())


def test_a_paused_workflows_delivered_job_goes_back_to_the_outbox(redis_engine: Durable) -> None:
    ran: list[int] = []
    durable("redis-paused").step("a", lambda ctx: ran.append(1))
    run_id = redis_engine.start("redis-paused").run_id
    redis_engine.pause("redis-paused")

    assert redis_engine.admin.run_job(claimed(redis_engine)) is JobOutcome.DEFERRED
    assert ran == []
    (row,) = waiting_rows(redis_engine)
    assert row["run_id"] == run_id
    assert row["attempts"] == 0  # no attempt used
    assert row["available_at"] > redis_engine.now + timedelta(seconds=3)
    assert "paused" in (row["last_error"] or "")
    assert dead_letters(redis_engine) == 0
    assert redis_engine.status(run_id).status == "running"

    redis_engine.unpause("redis-paused")  # what the pause gave back is due at once
    assert redis_engine.admin.run_job(claimed(redis_engine)) is JobOutcome.APPLIED
    assert ran == [1]
    assert redis_engine.status(run_id).status == "completed"


def test_a_step_over_its_rate_limit_goes_back_to_the_outbox(redis_engine: Durable) -> None:
    redis_engine.set_rate_limit("redis-api", limit=1, per=timedelta(hours=1))
    ran: list[int] = []
    durable("redis-limited").step("a", lambda ctx: ran.append(1), rate_limit="redis-api")
    first = redis_engine.start("redis-limited").run_id
    second = redis_engine.start("redis-limited").run_id

    outcomes = sorted(
        [redis_engine.admin.run_job(claimed(redis_engine)) for _ in range(2)], key=str
    )
    assert outcomes == [JobOutcome.APPLIED, JobOutcome.DEFERRED]
    assert ran == [1]
    statuses = {redis_engine.status(r).status for r in (first, second)}
    assert statuses == {"completed", "running"}
    (row,) = waiting_rows(redis_engine)
    assert row["attempts"] == 0
    assert row["available_at"] > redis_engine.now + timedelta(minutes=59)
    assert "rate limit 'redis-api'" in (row["last_error"] or "")
    assert dead_letters(redis_engine) == 0
