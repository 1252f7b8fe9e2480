"""The delivery conformance suite: end to end, through a backend's consumers.

The reference scenarios complete; a job queued in a rolled-back transaction never runs;
a duplicate job is harmless; a malformed job is dead-lettered with a clear error and the
consumers go on; a job pinned to a definition version no consumer has waits, is never
dead-lettered, and runs once a consumer has it; nothing stays pending. See
:mod:`durable_sa.testing.conformance` for how a backend's tests use it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from durable_sa.core.jobs import AdvanceJob, JobSpec
from durable_sa.core.registry import registry
from durable_sa.core.status import RunStatus
from durable_sa.engine.delivery import DEFER_DELAY
from durable_sa.store.models import JournalEntry, jobs_table, outbox_table, runs_table
from durable_sa.testing import scenarios
from durable_sa.testing.conformance.support import (
    WAIT_SECONDS,
    eventually,
    in_process_worker,
)

if TYPE_CHECKING:
    import contextlib
    from collections.abc import Callable, Iterator
    from datetime import timedelta

    from durable_sa.facade import Durable


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
    def conformance_defer_delay(self) -> timedelta:
        """How long the consumers defer a job they cannot run (override to match them).

        :data:`DEFER_DELAY` unless the engine and its consumers were built with another
        ``defer_delay`` (a suite shortens it so that a test of a deploy in progress
        waits seconds less).
        """
        return DEFER_DELAY

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
        self, durable_engine_running: Durable, conformance_defer_delay: timedelta
    ) -> None:
        """Version pinning: a job nobody can run is deferred, never dead-lettered."""
        engine = durable_engine_running
        version = registry.get(scenarios.SEQUENTIAL).version
        with Session(engine.sa_engine) as session:
            run = engine.start(scenarios.SEQUENTIAL, {"n": 3}, session=session)
            _pin(session, run.run_id, "a-version-nobody-has")
            session.commit()
        delay = conformance_defer_delay.total_seconds()
        time.sleep(delay + 1.5)  # long enough to be offered twice
        waiting = engine.status(run.run_id)
        assert waiting.status is RunStatus.RUNNING
        assert waiting.current_step == 0
        assert engine.admin.dead_letters() == []
        assert engine.backend.pending_count() >= 1

        def deployed() -> bool:
            with Session(engine.sa_engine) as session, session.begin():
                _pin(session, run.run_id, version)
            return engine.status(run.run_id).status is RunStatus.COMPLETED

        assert eventually(deployed, timeout=WAIT_SECONDS + delay)
        assert engine.status(run.run_id).results == {"one": 4, "two": 5, "three": 6}
        assert engine.admin.dead_letters() == []

    def test_nothing_stays_pending(self, durable_engine_running: Durable) -> None:
        engine = durable_engine_running
        runs = [engine.start(scenarios.PARALLEL, {"n": i}).run_id for i in range(10)]
        for run_id in runs:
            assert engine.wait(run_id, timeout=WAIT_SECONDS).status is RunStatus.COMPLETED
        assert eventually(lambda: engine.backend.pending_count() == 0)
        assert engine.recover() == 0


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
