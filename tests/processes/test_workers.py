"""Real worker processes: no overlapping executions, graceful stop, database restarts."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from durable_sa import Durable, JournalEntry
from durable_sa.testing.processes import WorkerProcess, restart_until
from durable_sa.testing.workload import (
    define_workload,
    effects,
    overlaps,
    prepare_database,
    summary,
    wait_until_all_terminal,
)

if TYPE_CHECKING:
    from durable_sa.testing.servers import PostgresServer

pytestmark = pytest.mark.reliability

FAST = ("--lease", "3", "--heartbeat", "0.5", "--poll-interval", "0.5")


def test_workers_never_run_the_same_job_at_the_same_time(
    durable_workload_url: str, rel_engine: Durable
) -> None:
    run_ids = [rel_engine.start("rel-par", {"i": i}).run_id for i in range(60)]
    workers = [
        WorkerProcess(durable_workload_url, "--concurrency", "4", *FAST, step_seconds=0.01).start()
        for _ in range(4)
    ]
    try:
        left_open = wait_until_all_terminal(rel_engine.sa_engine, run_ids, timeout=180)
        codes = [worker.terminate() for worker in workers]
    finally:
        for worker in workers:
            worker.close()
    figures = summary(rel_engine.sa_engine) | {"overlaps": overlaps(rel_engine.sa_engine)}
    print(f"\nconcurrency: {figures}")  # noqa: T201 - the figures are the report
    assert left_open == 0
    assert codes == [0, 0, 0, 0]
    assert figures["overlaps"] == 0
    assert figures["duplicate_executions"] == 0
    assert figures["units_executed"] == 60 * 7
    assert figures["jobs_left"] == 0


def test_sigterm_lets_the_running_step_finish_and_commit(
    durable_workload_url: str, rel_engine: Durable
) -> None:
    run_id = rel_engine.start("rel-slow").run_id
    worker = WorkerProcess(durable_workload_url, "--grace", "30", *FAST).start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with Session(rel_engine.sa_engine) as session:
                if session.scalar(sa.select(sa.func.count()).select_from(effects)):
                    break
            time.sleep(0.05)
        else:
            raise AssertionError(worker.output())
        code = worker.terminate(timeout=60)
        output = worker.output()
    finally:
        worker.close()
    assert code == 0, output
    with Session(rel_engine.sa_engine) as session:
        steps = session.scalars(
            sa.select(JournalEntry.step_id).where(JournalEntry.run_id == run_id)
        ).all()
        finished = session.scalars(sa.select(effects.c.finished_at)).all()
    assert steps == ["slow"]  # the step in flight was checkpointed...
    assert all(f is not None for f in finished)
    snapshot = rel_engine.status(run_id)
    assert snapshot.current_step == 1  # ...and the next one was left for later
    assert snapshot.status == "running"


def test_workers_reconnect_after_a_database_restart(
    durable_workload_url: str, rel_engine: Durable, durable_postgres_server: PostgresServer
) -> None:
    run_ids = [rel_engine.start("rel-seq", {"i": i}).run_id for i in range(40)]
    workers = [
        WorkerProcess(durable_workload_url, "--concurrency", "2", *FAST, step_seconds=0.05).start()
        for _ in range(2)
    ]
    try:
        time.sleep(2.0)
        rel_engine.sa_engine.dispose()
        durable_postgres_server.restart(down_for=1.0)
        left_open = wait_until_all_terminal(rel_engine.sa_engine, run_ids, timeout=180)
        codes = [worker.terminate() for worker in workers]
        outputs = [worker.output() for worker in workers]
    finally:
        for worker in workers:
            worker.close()
    figures = summary(rel_engine.sa_engine)
    print(f"\ndatabase restart: {figures}")  # noqa: T201 - the figures are the report
    assert left_open == 0, outputs
    assert codes == [0, 0], outputs
    assert figures["jobs_left"] == 0
    assert figures["dead_letters"] == 0
    assert figures["duplicate_journal_rows"] == 0
    statuses = {rel_engine.status(run_id).status for run_id in run_ids}
    assert statuses == {"completed"}


def test_a_job_that_keeps_crashing_its_worker_is_dead_lettered(
    durable_workload_url: str, rel_engine: Durable
) -> None:
    run_id = rel_engine.start("rel-crash").run_id
    restarts, code, output = restart_until(
        durable_workload_url,
        ("--lease", "1", "--heartbeat", "0.2"),
        lambda: bool(rel_engine.admin.dead_letters()),
    )
    letters = rel_engine.admin.dead_letters()
    print(f"\ncrashing job: restarts={restarts} dead_letters={len(letters)}")  # noqa: T201
    assert code == 0, output
    assert len(letters) == 1
    assert letters[0].run_id == run_id
    assert "claimed 6 times" in letters[0].error
    # The first death, in company (the worker claims in batches), is not charged: after it
    # the job is taken over alone, and each of max_job_attempts deaths alone is.
    assert restarts == 6
    snapshot = rel_engine.status(run_id)
    assert snapshot.status == "running"  # the run is intact: recover() can requeue it
    assert snapshot.current_step == 0


def _wait_for_output(worker: WorkerProcess, text: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = worker.output()
        if text in out:
            return out
        time.sleep(0.1)
    return worker.output()


def test_a_worker_started_before_its_database_waits_for_it(
    durable_postgres_server: PostgresServer,
) -> None:
    name = f"late_{uuid.uuid4().hex[:8]}"
    url = durable_postgres_server.url(name)
    worker = WorkerProcess(url, *FAST, "--startup-timeout", "120").start()
    try:
        out = _wait_for_output(worker, "cannot reach the database")
        assert worker.running(), out
        assert f'database "{name}" does not exist' in out
        assert "trying again in" in out
        # The database appears with its tables (made aside, then renamed): a worker that
        # reached it between the two would rightly stop, "no durable-sa tables".
        staging = f"{name}_staging"
        durable_postgres_server.create_database(staging)
        prepare_database(durable_postgres_server.url(staging))
        with durable_postgres_server.connect() as conn:
            conn.execute(f'ALTER DATABASE "{staging}" RENAME TO "{name}"')
        sa_engine = sa.create_engine(url)
        try:
            define_workload(sa_engine)
            engine = Durable(sa_engine)
            run_id = engine.start("rel-seq").run_id
            assert engine.wait(run_id, timeout=120).status == "completed"
        finally:
            sa_engine.dispose()
        assert worker.terminate() == 0
    finally:
        worker.close()
        durable_postgres_server.drop_database(name)


def test_a_worker_gives_up_on_a_database_it_never_reaches_in_one_line(
    durable_postgres_server: PostgresServer,
) -> None:
    url = durable_postgres_server.url(f"never_{uuid.uuid4().hex[:8]}")
    worker = WorkerProcess(url, *FAST, "--startup-timeout", "1").start()
    try:
        code = worker.terminate(timeout=60) if not _exited(worker, 30) else worker.terminate()
        out = worker.output()
    finally:
        worker.close()
    assert code == 1
    assert "durable-sa: could not reach the database at " in out
    assert "within 1 s" in out
    assert "Traceback" not in out


def _exited(worker: WorkerProcess, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not worker.running():
            return True
        time.sleep(0.1)
    return False
