"""Job rows that name no workflow are dead-lettered with the reason, never left waiting.

A row with an empty ``workflow_name``, a NULL ``workflow_version`` where its run has one,
or no attempts allowed matched no worker's filter; it waited forever, and ``recover()``
passed its run by because the run seemed to have a job. Each shape, on both databases.
A run with no version at all (started before definitions had versions) is no defect: any
worker that defines its workflow runs it.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from durable_sa import Job, WorkflowRun, durable
from durable_sa.results import JobOutcome
from durable_sa.testing import drain, pending_jobs

if TYPE_CHECKING:
    from durable_sa import Durable

FAST = {"heartbeat": timedelta(seconds=0.2), "lease": timedelta(seconds=1)}

SHAPES: dict[str, tuple[dict[str, Any], str]] = {
    "empty-name": ({"workflow_name": ""}, "its workflow_name is empty"),
    "null-version": (
        {"workflow_version": None},
        "its workflow_version is NULL where its run's is",
    ),
    "no-attempts": ({"max_attempts": 0}, "its max_attempts is 0"),
    "both": (
        {"workflow_name": "", "workflow_version": None},
        "its workflow_name is empty and its workflow_version is NULL where its run's is",
    ),
}


def _spoiled_run(engine: Durable, values: dict[str, Any]) -> int:
    durable("spoiled").step("a", lambda ctx: 1).step("b", lambda ctx: 2)
    run_id = engine.start("spoiled").run_id
    with engine.sa_engine.begin() as conn:
        conn.execute(sa.update(Job.__table__).values(**values))
    return run_id


@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_worker_dead_letters_the_row_with_its_reason(engine: Durable, shape: str) -> None:
    values, reason = SHAPES[shape]
    run_id = _spoiled_run(engine, values)
    with engine.worker(**FAST):
        deadline = time.monotonic() + 10
        while not engine.admin.dead_letters() and time.monotonic() < deadline:
            time.sleep(0.05)
    (letter,) = engine.admin.dead_letters()
    assert letter.run_id == run_id
    assert reason in letter.error
    assert "durable-sa recover" in letter.error
    assert pending_jobs(engine) == 0
    snap = engine.status(run_id)
    assert (snap.status, snap.current_step) == ("running", 0)  # the run is kept
    assert snap.stranded is not None

    assert engine.recover() == 1
    drain(engine)
    assert engine.status(run_id).status == "completed"
    assert engine.admin.dead_letters() == []  # resolved by the recovery


def test_a_claim_filtered_by_workflow_takes_the_row(engine: Durable) -> None:
    run_id = _spoiled_run(engine, {"workflow_name": "", "workflow_version": None})
    job = engine.admin.claim(workflows={"spoiled": "any-version"})
    assert job is not None
    assert job.run_id == run_id
    assert job.defect is not None
    assert engine.admin.run_job(job) == JobOutcome.DEAD_LETTERED


def test_recover_does_not_pass_by_a_run_whose_only_job_is_defective(engine: Durable) -> None:
    run_id = _spoiled_run(engine, {"workflow_version": None})
    assert pending_jobs(engine) == 1
    assert engine.recover() == 1  # the defective row is not the run's live job
    drain(engine)
    assert engine.status(run_id).status == "completed"
    assert pending_jobs(engine) == 0
    (letter,) = engine.admin.dead_letters()  # the defective row, told when it was claimed
    assert "workflow_version is NULL" in letter.error


def test_sound_rows_have_no_defect(engine: Durable) -> None:
    wf = durable("sound").step("a", lambda ctx: 1)
    engine.start("sound")
    job = engine.admin.claim(workflows={"sound": wf.version})
    assert job is not None
    assert job.defect is None


def test_a_run_without_a_version_runs_on_any_worker_that_defines_it(engine: Durable) -> None:
    durable("unversioned").step("a", lambda ctx: 1).step("b", lambda ctx: 2)
    run_id = engine.start("unversioned").run_id
    with engine.sa_engine.begin() as conn:  # as an older release wrote it
        conn.execute(sa.update(WorkflowRun.__table__).values(workflow_version=None))
        conn.execute(sa.update(Job.__table__).values(workflow_version=None))
    assert engine.recover() == 0  # its job is sound
    with engine.worker(**FAST):
        assert engine.wait(run_id, timeout=20).status == "completed"
    assert engine.admin.dead_letters() == []
