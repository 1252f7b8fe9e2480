"""The claim conformance suite: the consuming half of the protocol, call by call.

For backends that durable-sa workers consume: leases, acknowledgement only on commit,
release with a retry time, renewals, dead letters and requeue, attempts running out.
See :mod:`durable_sa.testing.conformance` for how a backend's tests use it.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Final

import pytest
from sqlalchemy.orm import Session

from durable_sa.results import JobOutcome
from durable_sa.testing import scenarios
from durable_sa.testing.conformance.support import publish

if TYPE_CHECKING:
    from durable_sa.facade import Durable
    from durable_sa.queue.protocol import ClaimedJob


class ClaimConformance:
    """The consuming half of the protocol, call by call; see the module docstring.

    The backend under test must let a claim come back within about a second when
    nothing is queued (a short blocking read, if it blocks at all), and must honour
    leases of a fraction of a second.
    """

    lease: Final = timedelta(milliseconds=600)

    @pytest.fixture
    def conformance_engine(self) -> Durable:
        """The engine with the backend under test, its tables created (override)."""
        msg = "a conformance test class must provide the conformance_engine fixture"
        raise NotImplementedError(msg)

    @pytest.fixture
    def claims(self, conformance_engine: Durable) -> Durable:
        """The engine, with the scenarios defined (no consumer runs: the test claims)."""
        scenarios.define_scenarios()
        return conformance_engine

    def claim(self, engine: Durable, worker: str = "w1", *, timeout: float = 5.0) -> ClaimedJob:
        """Publish what is due and claim until a job comes (fail after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            publish(engine)
            job = engine.admin.claim(worker=worker, lease=self.lease)
            if job is not None:
                return job
            if time.monotonic() > deadline:
                pytest.fail(f"no job could be claimed within {timeout} s")
            time.sleep(0.05)

    def nothing_to_claim(self, engine: Durable, worker: str = "w2") -> bool:
        """True when a claim (after publishing what is due) finds nothing."""
        publish(engine)
        return engine.admin.claim(worker=worker, lease=self.lease) is None

    def test_claim_finds_nothing_in_an_empty_queue(self, claims: Durable) -> None:
        started = time.monotonic()
        assert self.nothing_to_claim(claims)
        assert time.monotonic() - started < 5.0

    def test_enqueue_is_part_of_the_callers_transaction(self, claims: Durable) -> None:
        with Session(claims.sa_engine) as session:
            claims.start(scenarios.SEQUENTIAL, {}, session=session)
            session.rollback()
        assert self.nothing_to_claim(claims)
        run = claims.start(scenarios.SEQUENTIAL, {})
        job = self.claim(claims)
        assert job.run_id == run.run_id
        assert job.kind == "advance"
        assert job.attempts == 1

    def test_acknowledged_job_is_gone_and_the_next_step_comes(self, claims: Durable) -> None:
        run = claims.start(scenarios.SEQUENTIAL, {"n": 1})
        first = self.claim(claims)
        assert claims.admin.run_job(first) is JobOutcome.APPLIED
        second = self.claim(claims)
        assert second.id != first.id
        assert second.payload["step_index"] == 1
        assert claims.status(run.run_id).results == {"one": 2}

    def test_unacknowledged_claim_comes_back_after_its_lease(self, claims: Durable) -> None:
        claims.start(scenarios.SEQUENTIAL, {})
        first = self.claim(claims, "w1")
        assert self.nothing_to_claim(claims, "w2")
        time.sleep(self.lease.total_seconds() + 0.3)
        again = self.claim(claims, "w2")
        assert again.id == first.id
        assert again.attempts == first.attempts + 1

    def test_renewed_claim_stays_with_its_worker(self, claims: Durable) -> None:
        claims.start(scenarios.SEQUENTIAL, {})
        job = self.claim(claims, "w1")
        for _ in range(3):
            time.sleep(self.lease.total_seconds() / 2)
            held = claims.backend.renew([job.id], worker="w1", until=claims.now + self.lease)
            assert held == 1
        assert self.nothing_to_claim(claims, "w2")

    def test_acknowledgement_in_a_rolled_back_transaction_does_not_count(
        self, claims: Durable
    ) -> None:
        claims.start(scenarios.SEQUENTIAL, {})
        job = self.claim(claims, "w1")
        with Session(claims.sa_engine) as session:
            claims.backend.ack(session, job)
            session.rollback()
        time.sleep(self.lease.total_seconds() + 0.3)
        assert self.claim(claims, "w2").id == job.id

    def test_released_job_waits_for_its_retry_time(self, claims: Durable) -> None:
        claims.start(scenarios.SEQUENTIAL, {})
        job = self.claim(claims)
        claims.backend.release(job, error="boom", retry_at=claims.now + timedelta(seconds=1))
        assert self.nothing_to_claim(claims)
        time.sleep(1.1)
        again = self.claim(claims)
        assert again.run_id == job.run_id
        assert again.attempts == job.attempts + 1
        assert claims.admin.run_job(again) is JobOutcome.APPLIED

    def test_given_back_claims_are_claimable_at_once(self, claims: Durable) -> None:
        claims.start(scenarios.SEQUENTIAL, {})
        job = self.claim(claims, "w1")
        assert claims.backend.release_claims([job.id], worker="w1") == 1
        assert self.claim(claims, "w2", timeout=2.0).run_id == job.run_id

    def test_dead_letter_is_listed_and_requeued(self, claims: Durable) -> None:
        run = claims.start(scenarios.SEQUENTIAL, {"n": 0})
        job = self.claim(claims)
        claims.backend.dead_letter(job, error="operator test")
        assert self.nothing_to_claim(claims)
        letters = claims.admin.dead_letters()
        assert [(d.run_id, d.error) for d in letters] == [(run.run_id, "operator test")]
        claims.admin.requeue(letters[0].id)
        again = self.claim(claims)
        assert again.run_id == run.run_id
        assert claims.admin.run_job(again) is JobOutcome.APPLIED
        assert claims.admin.dead_letters() == []

    def test_job_whose_attempts_run_out_is_dead_lettered(self, claims: Durable) -> None:
        claims.start(scenarios.SEQUENTIAL, {})
        job = self.claim(claims, "w0")
        while job.attempts <= job.max_attempts:
            time.sleep(self.lease.total_seconds() + 0.2)  # its worker "died": the lease runs out
            job = self.claim(claims, f"w{job.attempts}")
        assert claims.admin.run_job(job) is JobOutcome.DEAD_LETTERED
        assert "claimed" in claims.admin.dead_letters()[0].error
        assert self.nothing_to_claim(claims)

    def test_live_runs_are_those_with_a_job(self, claims: Durable) -> None:
        queued = claims.start(scenarios.SEQUENTIAL, {}).run_id
        with Session(claims.sa_engine) as session:
            assert claims.backend.live_run_ids(session, [queued, queued + 1000]) == {queued}
        job = self.claim(claims)
        assert claims.admin.run_job(job) is JobOutcome.APPLIED
        assert claims.backend.pending_count() == 1  # the next step's job
