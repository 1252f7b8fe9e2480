"""Shared rate limits: L executions per window, deferral without attempts, on both databases."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from durable_sa import (
    DeadLetter,
    DefinitionError,
    Durable,
    InvalidArgumentError,
    Job,
    ParallelEntry,
    durable,
)
from durable_sa.core.rates import RateLimit
from durable_sa.engine.controls import UNSET_RECHECK
from durable_sa.results import JobOutcome
from durable_sa.store.models import rate_grants_table
from durable_sa.testing import drain
from tests.integration.helpers import count, get_run

HOUR = timedelta(hours=1)


def jobs_of(engine: Durable, run_id: int) -> list[Job]:
    with Session(engine.sa_engine) as session:
        rows = list(session.scalars(sa.select(Job).where(Job.run_id == run_id)))
        session.expunge_all()
        return rows


def later(engine: Durable, by: timedelta = UNSET_RECHECK) -> datetime:
    return engine.now + by + timedelta(seconds=1)


def test_no_more_than_the_limit_begin_and_the_rest_wait_without_attempts(
    sa_engine: sa.Engine,
) -> None:
    engine = Durable(sa_engine, max_job_attempts=1)
    engine.create_tables()
    engine.set_rate_limit("api", limit=2, per=HOUR)
    ran: list[int] = []
    durable("limited").step("call", lambda ctx: ran.append(ctx.input["n"]), rate_limit="api")
    runs = [engine.start("limited", {"n": n}).run_id for n in range(3)]

    assert drain(engine) == 3  # two run; the third is taken and given back
    assert sorted(ran) == [0, 1]
    waiting = [run_id for run_id in runs if get_run(engine, run_id).status != "completed"]
    assert len(waiting) == 1
    (job,) = jobs_of(engine, waiting[0])
    assert job.attempts == 0  # deferring uses no attempt, even with max_job_attempts=1
    assert job.claimed_by is None  # and holds no worker
    assert job.available_at > engine.now + HOUR - timedelta(minutes=1)  # due when it may run
    assert "rate limit 'api'" in (job.last_error or "")
    assert count(engine, DeadLetter) == 0
    assert drain(engine) == 0  # not offered again before the window lets it begin

    # Offered again early (a clock far ahead): still over the limit (by the database's
    # clock), deferred again.
    assert drain(engine, now=engine.now + 2 * HOUR, max=1) == 1
    assert len(ran) == 2
    (job,) = jobs_of(engine, waiting[0])
    assert job.attempts == 0
    assert count(engine, DeadLetter) == 0


def test_a_changed_limit_takes_effect_at_once(engine: Durable) -> None:
    engine.set_rate_limit("api", limit=1, per=HOUR)
    durable("limited").step("call", lambda ctx: 1, rate_limit="api")
    first = engine.start("limited").run_id
    second = engine.start("limited").run_id
    drain(engine)
    assert get_run(engine, first).status == "completed"
    assert get_run(engine, second).status == "running"

    engine.set_rate_limit("api", limit=2, per=HOUR)
    assert engine.rate_limits() == [RateLimit("api", 2, HOUR)]
    drain(engine, now=engine.now + 2 * HOUR)
    assert get_run(engine, second).status == "completed"


def test_the_window_slides_with_time(engine: Durable) -> None:
    per = timedelta(seconds=1)
    engine.set_rate_limit("fast", limit=2, per=per)
    durable("sliding").step("call", lambda ctx: 1, rate_limit="fast")
    runs = [engine.start("sliding").run_id for _ in range(5)]
    deadline = time.monotonic() + 20
    while any(get_run(engine, r).status != "completed" for r in runs):
        assert time.monotonic() < deadline, "the limited runs did not finish"
        drain(engine)
        time.sleep(0.05)
    with engine.sa_engine.connect() as conn:
        kept = sorted(conn.execute(sa.select(rate_grants_table.c.granted_at)).scalars())
    # Grants older than the window are pruned: at most the last window's are left.
    assert 1 <= len(kept) <= 2
    started = sorted(get_run(engine, r).updated_at for r in runs)
    # Five executions at two per second take at least two windows.
    assert started[-1] - started[0] >= 2 * per - timedelta(milliseconds=100)


def test_a_step_naming_a_limit_never_set_waits_until_it_is(engine: Durable) -> None:
    durable("unset").step("call", lambda ctx: 1, rate_limit="nobody-set-me")
    run_id = engine.start("unset").run_id
    assert drain(engine) == 1
    (job,) = jobs_of(engine, run_id)
    assert "engine.set_rate_limit('nobody-set-me'" in (job.last_error or "")
    assert job.attempts == 0
    assert get_run(engine, run_id).status == "running"

    engine.set_rate_limit("nobody-set-me", limit=5, per=HOUR)
    drain(engine, now=later(engine))
    assert get_run(engine, run_id).status == "completed"


def test_a_removed_limit_holds_its_steps_again(engine: Durable) -> None:
    engine.set_rate_limit("api", limit=5, per=HOUR)
    engine.set_rate_limit("other", limit=1, per=timedelta(seconds=30))
    assert engine.rate_limits() == [
        RateLimit("api", 5, HOUR),
        RateLimit("other", 1, timedelta(seconds=30)),
    ]
    assert engine.remove_rate_limit("api") is True
    assert engine.remove_rate_limit("api") is False
    assert [limit.name for limit in engine.rate_limits()] == ["other"]
    durable("removed").step("call", lambda ctx: 1, rate_limit="api")
    run_id = engine.start("removed").run_id
    drain(engine)
    assert get_run(engine, run_id).status == "running"


def test_parallel_entries_count_one_each_and_begin_together(engine: Durable) -> None:
    engine.set_rate_limit("api", limit=3, per=HOUR)
    engine.set_rate_limit("own", limit=1, per=HOUR)
    ran: list[str] = []
    durable("fan-out").parallel(
        "calls",
        [
            ("a", lambda ctx: ran.append("a")),
            ("b", lambda ctx: ran.append("b")),
            ParallelEntry("c", lambda ctx: ran.append("c"), rate_limit="own"),
        ],
        rate_limit="api",
    )
    first = engine.start("fan-out").run_id
    second = engine.start("fan-out").run_id
    drain(engine)
    # The first run took two grants of "api" and one of "own"; the second needs the same,
    # and "api" has one left: none of its entries begins.
    assert get_run(engine, first).status == "completed"
    assert get_run(engine, second).status == "running"
    assert sorted(ran) == ["a", "b", "c"]
    (job,) = jobs_of(engine, second)
    assert job.attempts == 0

    engine.set_rate_limit("api", limit=4, per=HOUR)
    engine.set_rate_limit("own", limit=2, per=HOUR)
    drain(engine, now=engine.now + 2 * HOUR)
    assert get_run(engine, second).status == "completed"
    assert sorted(ran) == ["a", "a", "b", "b", "c", "c"]


def test_a_parallel_step_that_needs_more_than_the_limit_says_so(engine: Durable) -> None:
    engine.set_rate_limit("api", limit=1, per=HOUR)
    durable("too-wide").parallel(
        "calls", [("a", lambda ctx: 1), ("b", lambda ctx: 2)], rate_limit="api"
    )
    run_id = engine.start("too-wide").run_id
    assert drain(engine) == 1
    (job,) = jobs_of(engine, run_id)
    assert "needs 2 executions of rate limit 'api' at once" in (job.last_error or "")
    assert "raise the limit" in (job.last_error or "")


def test_retries_take_a_grant_each(engine: Durable) -> None:
    engine.set_rate_limit("api", limit=2, per=HOUR)
    calls: list[int] = []

    def flaky(ctx: object) -> int:
        calls.append(1)
        msg = "boom"
        raise RuntimeError(msg)

    durable("flaky").step("call", flaky, rate_limit="api", max_retries=5, retry_backoff="linear")
    run_id = engine.start("flaky").run_id
    drain(engine, now=engine.now + timedelta(minutes=1))
    assert len(calls) == 2  # the third attempt waits for the window
    assert get_run(engine, run_id).status == "running"


def test_an_admin_call_runs_the_step_as_asked(engine: Durable) -> None:
    engine.set_rate_limit("api", limit=1, per=HOUR)
    durable("direct").step("call", lambda ctx: 1, rate_limit="api")
    engine.start("direct")
    run_id = engine.start("direct").run_id
    drain(engine)
    assert engine.admin.advance(run_id, 0) == JobOutcome.APPLIED
    assert get_run(engine, run_id).status == "completed"


def test_bad_limits_are_refused_with_what_to_do(engine: Durable) -> None:
    with pytest.raises(InvalidArgumentError, match="positive integer"):
        engine.set_rate_limit("api", limit=0, per=HOUR)
    with pytest.raises(InvalidArgumentError, match="positive timedelta"):
        engine.set_rate_limit("api", limit=1, per=timedelta(0))
    with pytest.raises(InvalidArgumentError, match="non-empty"):
        engine.set_rate_limit("", limit=1, per=HOUR)
    with pytest.raises(DefinitionError, match="rate_limit"):
        durable("bad").step("a", lambda ctx: 1, rate_limit="")
    with pytest.raises(DefinitionError, match="rate_limit"):
        durable("bad2").parallel("p", [ParallelEntry("a", lambda ctx: 1, rate_limit=3)])  # type: ignore[arg-type]
    assert engine.rate_limits() == []


def test_a_worker_defers_a_limited_step_it_handed_to_itself(engine: Durable) -> None:
    """The second step is run in place after the first: deferred all the same."""
    engine.set_rate_limit("api", limit=1, per=HOUR)
    ran: list[int] = []
    durable("in-place").step("prepare", lambda ctx: 1).step(
        "call", lambda ctx: ran.append(ctx.run_id), rate_limit="api"
    )
    runs = [engine.start("in-place").run_id for _ in range(2)]

    def settled() -> bool:
        """One run completed, the other's limited step given back for later."""
        statuses = sorted(str(get_run(engine, r).status) for r in runs)
        held = [job for r in runs for job in jobs_of(engine, r)]
        return statuses == ["completed", "running"] and all(
            job.claimed_by is None and job.available_at > engine.now for job in held
        )

    with engine.worker(concurrency=2, poll_interval=0.05):
        deadline = time.monotonic() + 20
        while not settled():
            assert time.monotonic() < deadline, "no run completed and none was deferred"
            time.sleep(0.05)
    assert len(ran) == 1
    (waiting,) = [r for r in runs if r not in ran]
    run = get_run(engine, waiting)
    assert (run.status, run.current_step) == ("running", 1)
    (job,) = jobs_of(engine, waiting)
    assert job.attempts == 0
    assert job.available_at > engine.now + HOUR - timedelta(minutes=1)
    assert count(engine, DeadLetter) == 0
