"""The conformance suite every queue backend must pass, as pytest classes to subclass.

A backend's test module subclasses the classes here and provides fixtures; pytest then
collects every inherited test for that backend::

    from durable_sa.testing.conformance import ClaimConformance, DeliveryConformance

    class TestMyBackendDelivery(DeliveryConformance):
        @pytest.fixture
        def conformance_engine(self, sa_engine):       # the engine under test
            engine = Durable(sa_engine, backend="mybroker://...")
            engine.create_tables()
            return engine

        @pytest.fixture
        def conformance_malformed(self):                # put one unreadable job in
            return lambda engine: ...

    class TestMyBackendClaims(ClaimConformance): ...   # if durable-sa workers consume it

- :class:`DeliveryConformance`: end to end, through the backend's consumers (a
  durable-sa worker in this process by default; override ``conformance_consumers`` for
  consumers of your own, e.g. Celery worker processes). The reference scenarios
  (sequential, parallel, signal, sleep, child, saga) complete; a job queued in a
  rolled-back transaction never runs; a duplicate job is harmless; a malformed job is
  dead-lettered with a clear error and the consumers go on; a job pinned to a definition
  version no consumer has waits, is never dead-lettered, and runs once a consumer has
  it (the one delivery policy); nothing stays pending.
- :class:`ClaimConformance`: the consuming half of the protocol, call by call, for
  backends that durable-sa workers consume: leases, acknowledgement only on commit,
  release with a retry time, renewals, dead letters and requeue, attempts running out.

Relay backends are driven through their relay (``publish``), so the suite also checks
that the outbox and the relay deliver what was committed, and only that.
"""

from __future__ import annotations

import contextlib
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from durable_sa.core.jobs import AdvanceJob, JobSpec
from durable_sa.core.registry import registry
from durable_sa.core.status import RunStatus
from durable_sa.engine.runner import DEFER_DELAY
from durable_sa.outbox.backend import OutboxBackend
from durable_sa.results import JobOutcome
from durable_sa.store.models import JournalEntry, jobs_table, outbox_table, runs_table
from durable_sa.testing import scenarios

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from durable_sa.facade import Durable
    from durable_sa.queue.protocol import ClaimedJob

WAIT_SECONDS: Final = 30.0
"""How long a scenario may take end to end before the test fails."""


def publish(engine: Durable) -> int:
    """Relay every due outbox row now (relay backends); how many were published."""
    if isinstance(engine.backend, OutboxBackend):
        return engine.relay().drain()
    return 0


def eventually(check: Callable[[], bool], *, timeout: float = WAIT_SECONDS) -> bool:
    """Poll ``check`` until it holds or ``timeout`` seconds pass; whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


@contextlib.contextmanager
def in_process_worker(engine: Durable) -> Iterator[None]:
    """A durable-sa worker (and, for relay backends, its relay thread) in this process."""
    worker = engine.worker(
        concurrency=4,
        lease=timedelta(seconds=4),
        heartbeat=timedelta(seconds=1),
        poll_interval=0.1,
        name="conformance-worker",
    )
    with worker:
        yield


class DeliveryConformance:
    """End-to-end behaviour every backend must show; see the module docstring."""

    @pytest.fixture
    def conformance_engine(self) -> Durable:
        """The engine with the backend under test, its tables created (override)."""
        msg = "a conformance test class must provide the conformance_engine fixture"
        raise NotImplementedError(msg)

    @pytest.fixture
    def conformance_malformed(self) -> Callable[[Durable], None]:
        """A function that puts one unreadable job into the backend's queue (override)."""
        msg = "a conformance test class must provide the conformance_malformed fixture"
        raise NotImplementedError(msg)

    @pytest.fixture
    def conformance_consumers(
        self,
    ) -> Callable[[Durable], contextlib.AbstractContextManager[Any]]:
        """What consumes the backend while a test runs: a worker in this process."""
        return in_process_worker

    @pytest.fixture
    def durable_engine_running(
        self,
        conformance_engine: Durable,
        conformance_consumers: Callable[[Durable], contextlib.AbstractContextManager[Any]],
    ) -> Iterator[Durable]:
        """The engine, with the scenarios defined and its consumers running."""
        scenarios.define_scenarios()
        with conformance_consumers(conformance_engine):
            yield conformance_engine

    # ── the reference scenarios ────────────────────────────────────────────────

    def test_sequential_completes(self, durable_engine_running: Durable) -> None:
        engine = durable_engine_running
        run = engine.start(scenarios.SEQUENTIAL, {"n": 10})
        final = engine.wait(run.run_id, timeout=WAIT_SECONDS)
        assert final.status is RunStatus.COMPLETED, final.error
        assert final.results == {"one": 11, "two": 12, "three": 13}

    def test_parallel_completes(self, durable_engine_running: Durable) -> None:
        engine = durable_engine_running
        run = engine.start(scenarios.PARALLEL, {"n": 1})
        final = engine.wait(run.run_id, timeout=WAIT_SECONDS)
        assert final.status is RunStatus.COMPLETED, final.error
        assert final.results["before"] == 2
        assert final.results["after"] == 3
        assert (final.results["left"], final.results["right"]) == (11, 21)

    def test_signal_resumes_a_parked_run(self, durable_engine_running: Durable) -> None:
        engine = durable_engine_running
        run = engine.start(scenarios.SIGNAL, {"n": 0})
        assert eventually(lambda: engine.status(run.run_id).status is RunStatus.SUSPENDED)
        assert engine.resume(run.run_id, "approve", {"by": "ops"}).accepted
        final = engine.wait(run.run_id, timeout=WAIT_SECONDS)
        assert final.status is RunStatus.COMPLETED, final.error
        assert final.results["answer"] == {"by": "ops"}
        assert final.results["done"] == 2

    def test_sleep_waits_then_completes(self, durable_engine_running: Durable) -> None:
        engine = durable_engine_running
        started = time.monotonic()
        run = engine.start(scenarios.SLEEP, {"n": 0})
        final = engine.wait(run.run_id, timeout=WAIT_SECONDS)
        assert final.status is RunStatus.COMPLETED, final.error
        assert time.monotonic() - started >= scenarios.SLEEP_SECONDS
        assert final.results == {"before": 1, "after": 2}

    def test_child_run_completes_its_parent(self, durable_engine_running: Durable) -> None:
        engine = durable_engine_running
        run = engine.start(scenarios.CHILD_PARENT, {"n": 5})
        final = engine.wait(run.run_id, timeout=WAIT_SECONDS)
        assert final.status is RunStatus.COMPLETED, final.error
        assert final.results["first"] == 6
        assert final.results["kid"] == {"inner": 105}
        assert final.results["last"] == 7

    def test_saga_compensates_in_reverse(self, durable_engine_running: Durable) -> None:
        engine = durable_engine_running
        run = engine.start(scenarios.SAGA, {"n": 0})
        final = engine.wait(run.run_id, timeout=WAIT_SECONDS)
        assert final.status is RunStatus.FAILED
        assert "fails on purpose" in (final.error or "")
        journal = _journal(engine, run.run_id)
        undone = [step for step in journal if step.endswith("#compensate")]
        assert undone == ["charge#compensate", "reserve#compensate"]

    # ── transactions and duplicates ────────────────────────────────────────────

    def test_job_of_a_rolled_back_transaction_never_runs(
        self, durable_engine_running: Durable
    ) -> None:
        engine = durable_engine_running
        with Session(engine.sa_engine) as session:
            engine.start(scenarios.SEQUENTIAL, {"n": 0}, session=session)
            session.rollback()
        kept = engine.start(scenarios.SEQUENTIAL, {"n": 1})
        assert engine.wait(kept.run_id, timeout=WAIT_SECONDS).status is RunStatus.COMPLETED
        assert [r.run_id for r in engine.list()] == [kept.run_id]
        assert eventually(lambda: engine.backend.pending_count() == 0)

    def test_job_of_a_callers_committed_transaction_runs(
        self, durable_engine_running: Durable
    ) -> None:
        engine = durable_engine_running
        with Session(engine.sa_engine) as session:
            run = engine.start(scenarios.SEQUENTIAL, {"n": 2}, session=session)
            session.commit()
        final = engine.wait(run.run_id, timeout=WAIT_SECONDS)
        assert final.status is RunStatus.COMPLETED, final.error

    def test_duplicate_job_is_harmless(self, durable_engine_running: Durable) -> None:
        engine = durable_engine_running
        run = engine.start(scenarios.SEQUENTIAL, {"n": 0})
        before = engine.wait(run.run_id, timeout=WAIT_SECONDS)
        duplicate = JobSpec(
            payload=AdvanceJob(run_id=run.run_id, step_index=1, attempt=1),
            available_at=engine.now,
            workflow=scenarios.SEQUENTIAL,
            version=before.workflow_version,
        )
        with Session(engine.sa_engine) as session, session.begin():
            engine.backend.enqueue(session, [duplicate])
        assert eventually(lambda: engine.backend.pending_count() == 0)
        after = engine.status(run.run_id)
        assert after.status is RunStatus.COMPLETED
        assert after.results == before.results
        assert after.updated_at == before.updated_at  # the run was not written again

    def test_malformed_job_is_dead_lettered_and_consumers_go_on(
        self,
        durable_engine_running: Durable,
        conformance_malformed: Callable[[Durable], None],
    ) -> None:
        engine = durable_engine_running
        conformance_malformed(engine)
        assert eventually(lambda: len(engine.admin.dead_letters()) == 1)
        letter = engine.admin.dead_letters()[0]
        assert "malformed" in letter.error
        run = engine.start(scenarios.SEQUENTIAL, {"n": 0})
        assert engine.wait(run.run_id, timeout=WAIT_SECONDS).status is RunStatus.COMPLETED

    # ── the delivery policy ────────────────────────────────────────────────────

    def test_a_version_no_consumer_has_waits_and_runs_once_one_has_it(
        self, durable_engine_running: Durable
    ) -> None:
        """Version pinning: a job nobody can run is deferred, never dead-lettered."""
        engine = durable_engine_running
        version = registry.get(scenarios.SEQUENTIAL).version
        with Session(engine.sa_engine) as session:
            run = engine.start(scenarios.SEQUENTIAL, {"n": 3}, session=session)
            _pin(session, run.run_id, "a-version-nobody-has")
            session.commit()
        time.sleep(DEFER_DELAY.total_seconds() + 1.5)  # long enough to be offered twice
        waiting = engine.status(run.run_id)
        assert waiting.status is RunStatus.RUNNING
        assert waiting.current_step == 0
        assert engine.admin.dead_letters() == []
        assert engine.backend.pending_count() >= 1

        def deployed() -> bool:
            with Session(engine.sa_engine) as session, session.begin():
                _pin(session, run.run_id, version)
            return engine.status(run.run_id).status is RunStatus.COMPLETED

        assert eventually(deployed, timeout=WAIT_SECONDS + DEFER_DELAY.total_seconds())
        assert engine.status(run.run_id).results == {"one": 4, "two": 5, "three": 6}
        assert engine.admin.dead_letters() == []

    def test_nothing_stays_pending(self, durable_engine_running: Durable) -> None:
        engine = durable_engine_running
        runs = [engine.start(scenarios.PARALLEL, {"n": i}).run_id for i in range(10)]
        for run_id in runs:
            assert engine.wait(run_id, timeout=WAIT_SECONDS).status is RunStatus.COMPLETED
        assert eventually(lambda: engine.backend.pending_count() == 0)
        assert engine.recover() == 0


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


def _pin(session: Session, run_id: int, version: str | None) -> None:
    """Pin a run, and every job of it, to definition ``version`` (as an old deploy would)."""
    for table in (runs_table, jobs_table, outbox_table):
        column = "id" if table is runs_table else "run_id"
        session.execute(
            update(table).where(table.c[column] == run_id).values(workflow_version=version)
        )


def _journal(engine: Durable, run_id: int) -> list[str]:
    with Session(engine.sa_engine) as session:
        return list(
            session.scalars(
                select(JournalEntry.step_id)
                .where(JournalEntry.run_id == run_id)
                .order_by(JournalEntry.id)
            )
        )
