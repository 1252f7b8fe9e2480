"""Pausing a workflow: none of its steps is claimed, starts and signals are still accepted."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from durable_sa import DeadLetter, Durable, InvalidArgumentError, Job, durable
from durable_sa.results import JobOutcome
from durable_sa.testing import drain
from tests.integration.helpers import count, get_run


def jobs_of(engine: Durable, run_id: int) -> list[Job]:
    with Session(engine.sa_engine) as session:
        rows = list(session.scalars(sa.select(Job).where(Job.run_id == run_id)))
        session.expunge_all()
        return rows


def test_a_paused_workflow_takes_no_step_but_accepts_starts_and_signals(engine: Durable) -> None:
    ran: list[str] = []
    durable("billing").step("charge", lambda ctx: ran.append("charge")).wait_for_signal(
        "approval", "approved"
    ).step("ship", lambda ctx: ran.append("ship"))
    durable("other").step("a", lambda ctx: ran.append("other"))
    before = engine.start("billing").run_id

    assert engine.pause("billing") is True
    assert engine.pause("billing") is False  # already paused
    assert engine.paused_workflows() == ["billing"]
    during = engine.start("billing").run_id  # accepted while paused
    sent = engine.send(during, "approved", {"ok": True})  # accepted: kept for the run
    assert (sent.delivered, sent.status) == (False, "running")
    engine.start("other")

    assert drain(engine) == 1  # only the other workflow's job is claimed
    assert ran == ["other"]
    for run_id in (before, during):
        assert get_run(engine, run_id).status == "running"
        (job,) = jobs_of(engine, run_id)
        assert job.attempts == 0
        assert job.claimed_by is None

    assert engine.unpause("billing") is True
    assert engine.unpause("billing") is False
    assert engine.paused_workflows() == []
    drain(engine)  # due at once: nothing was deferred
    assert get_run(engine, during).status == "completed"
    assert get_run(engine, before).status == "suspended"  # waits for its own signal
    assert sorted(ran) == ["charge", "charge", "other", "ship"]


def test_a_job_claimed_before_the_pause_is_given_back_without_an_attempt(
    sa_engine: sa.Engine,
) -> None:
    """The check every backend's delivery passes (a relay backend's claim has no filter)."""
    engine = Durable(sa_engine, max_job_attempts=1)
    engine.create_tables()
    ran: list[int] = []
    durable("paused-late").step("a", lambda ctx: ran.append(1))
    run_id = engine.start("paused-late").run_id
    job = engine.admin.claim()
    assert job is not None
    engine.pause("paused-late")

    assert engine.admin.run_job(job) == JobOutcome.DEFERRED
    assert ran == []
    (row,) = jobs_of(engine, run_id)
    assert row.attempts == 0
    assert row.claimed_by is None
    assert "paused" in (row.last_error or "")
    assert count(engine, DeadLetter) == 0

    assert row.available_at > engine.now + timedelta(seconds=10)  # not before unpause
    assert engine.admin.claim() is None
    engine.unpause("paused-late")
    job = engine.admin.claim()  # due at once
    assert job is not None
    assert engine.admin.run_job(job) == JobOutcome.APPLIED
    assert get_run(engine, run_id).status == "completed"


def test_another_process_pausing_is_seen_by_a_running_worker(engine: Durable) -> None:
    other = Durable(engine.sa_engine)  # another process's engine: its own cache
    durable("watched").step("a", lambda ctx: 1).step("b", lambda ctx: 2)
    other.pause("watched")
    run_id = engine.start("watched").run_id
    with engine.worker(poll_interval=0.05):
        time.sleep(1.0)
        assert get_run(engine, run_id).current_step == 0
        (job,) = jobs_of(engine, run_id)
        assert job.attempts == 0
        began = time.monotonic()
        other.unpause("watched")
        engine.wait(run_id, timeout=10)
    assert time.monotonic() - began < 5  # at once, not after a deferral's delay
    assert get_run(engine, run_id).status == "completed"


def test_bad_workflow_names_are_refused(engine: Durable) -> None:
    with pytest.raises(InvalidArgumentError, match="non-empty"):
        engine.pause("")
    with pytest.raises(InvalidArgumentError, match="at most 255"):
        engine.pause("x" * 300)


def test_no_step_begins_anywhere_once_pause_returns(engine: Durable) -> None:
    """Even a run whose next steps a worker hands to itself, with no claim in between."""
    other = Durable(engine.sa_engine)  # another process's engine: its own cache
    began: list[float] = []

    def step(ctx: object) -> None:
        began.append(time.monotonic())
        time.sleep(0.01)

    wf = durable("long-chain")
    for i in range(400):
        wf.step(f"s{i}", step)
    run_id = engine.start("long-chain").run_id
    with engine.worker(poll_interval=0.05):
        deadline = time.monotonic() + 20
        while len(began) < 5:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        other.pause("long-chain")
        returned = time.monotonic()
        time.sleep(1.0)
        assert get_run(engine, run_id).status == "running"
        later = [t for t in began if t > returned + 0.1]
        assert later == []
        other.unpause("long-chain")
        engine.wait(run_id, timeout=30)
    assert len(began) == 400
