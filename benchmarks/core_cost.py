"""The engine's own Python work per 3-step workflow, with no database at all.

Decode each job, run the step, decide with the pure core, turn the decision into its
write plan: what every step costs before a single statement is sent. It bounds how close
any store can get to a floor that does no such work (the SQLite floor costs less than
this per workflow).

Run as ``python -m benchmarks.core_cost``; prints one JSON line.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime

import attrs

from benchmarks.workload import bench3
from durable_sa.core.decide import decide_step
from durable_sa.core.jobs import decode_payload
from durable_sa.core.plan import plan_transition
from durable_sa.core.snapshot import RunSnapshot
from durable_sa.core.status import RunStatus
from durable_sa.core.stored import as_is
from durable_sa.engine.execution import definition_for, execute_step


def per_workflow_us(workflows: int = 5000) -> float:
    """Microseconds of CPU per workflow for the engine's pure work."""
    now = datetime.now(UTC)
    began = time.process_time()
    for i in range(workflows):
        run = RunSnapshot(
            id=i + 1,
            workflow_name="bench3",
            workflow_version=bench3.version,
            status=RunStatus.RUNNING,
            total_steps=3,
            input={"i": i},
        )
        for index in range(3):
            decode_payload("advance", {"run_id": i + 1, "step_index": index, "attempt": 1})
            step = definition_for(run).steps[run.current_step]
            outcome = execute_step(run, step, 1, journal={}, stored=as_is)
            transition = decide_step(run, outcome, attempt=1, now=now, jitter=0.5)
            plan_transition(transition, acknowledge=1, now=now, continue_until=now)
            run = attrs.evolve(transition.after, revision=run.revision + 1)
    return (time.process_time() - began) / workflows * 1e6


def main() -> None:
    """Print the figure."""
    logging.disable(logging.CRITICAL)
    out = {"system": "durable-sa", "scenario": "core_cpu", "us_per_wf": per_workflow_us()}
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
