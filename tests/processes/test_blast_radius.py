"""One job's trouble harms only that job: real worker processes on PostgreSQL.

A worker holds several jobs in hand (to group their commits). A slow step must not keep
the others waiting while another worker is idle, a commit that blocks on a row lock an
application holds must not stall every run the worker holds, and a job that kills its
worker must not use up the attempts of the jobs that died with it.
"""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from durable_sa import Durable, JournalEntry, WorkflowRun
from durable_sa.testing.processes import WorkerProcess, restart_until
from durable_sa.testing.workload import effects, wait_until_all_terminal
from tests.support.tcpproxy import FreezingProxy

pytestmark = pytest.mark.reliability

FAST = ("--lease", "3", "--heartbeat", "0.5", "--poll-interval", "0.5")


def _wait_for_workers(engine: Durable, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(engine.admin.workers()) < count:
        assert time.monotonic() < deadline, "the worker processes did not start"
        time.sleep(0.2)


def _finished_at(engine: Durable, run_id: int, unit: str) -> float | None:
    with Session(engine.sa_engine) as session:
        return session.scalar(
            sa.select(effects.c.finished_at).where(
                effects.c.run_id == run_id, effects.c.unit == unit
            )
        )


def _completed_at(engine: Durable, run_ids: list[int]) -> float:
    """When the last of ``run_ids`` ended (the run rows' last update), as a Unix time."""
    with Session(engine.sa_engine) as session:
        last = session.scalar(
            sa.select(sa.func.max(WorkflowRun.updated_at)).where(WorkflowRun.id.in_(run_ids))
        )
    assert last is not None
    return last.timestamp()


def _wait_for_unit(engine: Durable, run_id: int, unit: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with Session(engine.sa_engine) as session:
        while not session.scalar(
            sa.select(sa.func.count()).where(effects.c.run_id == run_id, effects.c.unit == unit)
        ):
            assert time.monotonic() < deadline, f"{unit} of run {run_id} never started"
            time.sleep(0.1)
            session.rollback()


def test_ready_work_does_not_wait_behind_a_slow_step(
    durable_workload_url: str, rel_engine: Durable
) -> None:
    """The worker holding an 8 s step gives its other jobs back; a worker started later
    (it finds every job held) runs them while the slow step is still running."""
    slow = rel_engine.start("rel-slower").run_id  # first in due order: run first
    quick = [rel_engine.start("rel-seq", {"i": i}).run_id for i in range(10)]
    workers = [WorkerProcess(durable_workload_url, "--concurrency", "1", *FAST).start()]
    try:
        _wait_for_unit(rel_engine, slow, "slow")  # the first worker holds all 11 jobs now
        workers.append(WorkerProcess(durable_workload_url, "--concurrency", "1", *FAST).start())
        assert wait_until_all_terminal(rel_engine.sa_engine, [slow, *quick], timeout=120) == 0
        codes = [worker.terminate() for worker in workers]
        outputs = [worker.output() for worker in workers]
    finally:
        for worker in workers:
            worker.close()
    assert codes == [0, 0], outputs
    slow_done = _finished_at(rel_engine, slow, "slow")
    assert slow_done is not None
    # Every quick run ended while the slow step was still running: none waited for it.
    assert _completed_at(rel_engine, quick) < slow_done, outputs
    assert {rel_engine.status(r).status for r in [slow, *quick]} == {"completed"}


def test_a_row_lock_held_by_the_application_stalls_only_its_own_run(
    durable_workload_url: str, rel_engine: Durable
) -> None:
    """A commit that blocks on a run row an application has locked times out alone.

    The locked run is the first in due order: the first worker claims it with 15 others,
    runs its first step, and its first commit is the one that blocks, with the other
    runs in hand behind it.
    """
    run_ids = [rel_engine.start("rel-seq", {"i": i}).run_id for i in range(20)]
    locked, others = run_ids[0], run_ids[1:]
    holder = Session(rel_engine.sa_engine)
    options = ("--concurrency", "1", "--commit-timeout", "1", *FAST)
    workers = [WorkerProcess(durable_workload_url, *options, step_seconds=0.2).start()]
    try:
        _wait_for_unit(rel_engine, locked, "s0")  # its first step runs: lock its row now
        holder.get(WorkflowRun, locked, with_for_update=True)  # held, not committed
        workers.append(WorkerProcess(durable_workload_url, *options, step_seconds=0.2).start())
        left_open = wait_until_all_terminal(rel_engine.sa_engine, others, timeout=60)
        assert rel_engine.status(locked).status == "running"  # still held by the application
        holder.rollback()  # the application changes its mind: the run goes on
        holder.close()
        locked_open = wait_until_all_terminal(rel_engine.sa_engine, [locked], timeout=60)
        codes = [worker.terminate() for worker in workers]
        outputs = [worker.output() for worker in workers]
    finally:
        holder.close()
        for worker in workers:
            worker.close()
    assert left_open == 0, outputs
    assert locked_open == 0, outputs
    assert codes == [0, 0], outputs
    assert {rel_engine.status(r).status for r in run_ids} == {"completed"}
    assert rel_engine.admin.dead_letters() == []


def test_a_half_open_write_connection_strands_no_run(
    durable_workload_url: str, rel_engine: Durable
) -> None:
    """The first worker reaches the database through a proxy that silences the connection
    of its first grouped write while it holds 16 runs: the statement is sent, no answer
    and no error ever come back, and its heartbeat (another connection) keeps working.
    The worker gives up what it holds after the commit timeout; a second one finishes."""
    url = sa.make_url(durable_workload_url)
    assert url.port is not None
    run_ids = [rel_engine.start("rel-seq", {"i": i}).run_id for i in range(20)]
    options = ("--concurrency", "1", "--commit-timeout", "1", *FAST)
    with FreezingProxy(url.port) as proxy:
        proxy.freeze_on(b"json_to_recordset")  # the grouped write's statement
        behind = url.set(port=proxy.port).render_as_string(hide_password=False)
        stuck = WorkerProcess(behind, *options, step_seconds=0.2).start()
        healthy = WorkerProcess(durable_workload_url, *options, step_seconds=0.2)
        try:
            _wait_for_unit(rel_engine, run_ids[0], "s0")  # it holds the runs now
            healthy.start()
            left_open = wait_until_all_terminal(rel_engine.sa_engine, run_ids, timeout=90)
            code = healthy.terminate()
            output = healthy.output() + stuck.output()
        finally:
            stuck.close()
            healthy.close()
    assert "a commit has been blocked" in output  # the stuck worker noticed and gave up
    assert left_open == 0, output
    assert code == 0, output
    assert {rel_engine.status(r).status for r in run_ids} == {"completed"}
    assert rel_engine.admin.dead_letters() == []
    with Session(rel_engine.sa_engine) as session:  # every step checkpointed once
        rows = session.scalar(sa.select(sa.func.count()).select_from(JournalEntry))
    assert rows == 20 * 5


def test_a_job_that_kills_its_worker_is_dead_lettered_alone(
    durable_workload_url: str, rel_engine: Durable
) -> None:
    """The poison job is first in due order: the worker claims it with the ten others
    (one batch), runs it first and dies holding all eleven, again and again."""
    poison = rel_engine.start("rel-crash").run_id
    innocent = [rel_engine.start("rel-seq", {"i": i}).run_id for i in range(10)]

    def settled() -> bool:
        return bool(rel_engine.admin.dead_letters()) and not wait_until_all_terminal(
            rel_engine.sa_engine, innocent, timeout=0
        )

    args = ("--concurrency", "1", "--lease", "1", "--heartbeat", "0.2", "--poll-interval", "0.2")
    restarts, code, output = restart_until(durable_workload_url, args, settled)
    letters = rel_engine.admin.dead_letters()
    print(f"\npoison job: restarts={restarts} dead_letters={len(letters)}")  # noqa: T201
    assert code == 0, output
    assert [letter.run_id for letter in letters] == [poison], output
    assert {rel_engine.status(r).status for r in innocent} == {"completed"}, output
    assert restarts == 6  # one death in company (free), then max_job_attempts deaths alone
    assert rel_engine.status(poison).status == "running"  # intact: recover() can requeue it
