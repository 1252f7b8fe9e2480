"""A run started under a span and finished by a real worker process is one trace.

The test starts the run under its own span (spans recorded in memory); a ``durable-sa
worker --log-format json`` process, whose APP sets a tracer provider writing spans to a
file, runs its steps. Every span of both processes has the test's trace id, each step
span's parent is the run's start span, and the handler's own span nests under its step.
The worker's log lines are JSON objects carrying the run's fields and the step's ids.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from opentelemetry import trace

from durable_sa import Durable, RunStatus
from durable_sa.testing.processes import WorkerProcess
from tests.processes.traced_app import SPANS_ENV, WORKFLOW, define
from tests.support.tracing import read_spans, recording

if TYPE_CHECKING:
    from collections.abc import Iterator

    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    yield from recording()


def wait_for(engine: Durable, run_id: int, worker: WorkerProcess) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if engine.status(run_id).status is RunStatus.COMPLETED:
            return
        assert worker.running(), worker.output()
        time.sleep(0.1)
    pytest.fail(f"run {run_id} did not complete:\n{worker.output()}")


def test_a_run_finished_by_a_worker_process_is_one_trace(
    durable_each_database_url: str, spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    sa_engine = sa.create_engine(durable_each_database_url)
    engine = Durable(sa_engine)
    engine.create_tables()
    define()
    with trace.get_tracer("the-app").start_as_current_span("POST /orders") as request:
        run_id = engine.start(WORKFLOW, {"order": 7}).run_id
    spans_file = tmp_path / "worker-spans.jsonl"
    worker = WorkerProcess(
        durable_each_database_url,
        "--poll-interval",
        "0.2",
        "--log-format",
        "json",
        command=("worker", "tests.processes.traced_app:app"),
        env={SPANS_ENV: str(spans_file)},
        pythonpath=[ROOT],
    ).start()
    with worker:
        wait_for(engine, run_id, worker)
        output = worker.output()
    sa_engine.dispose()

    trace_id = f"{request.get_span_context().trace_id:032x}"
    (start,) = [s for s in spans.get_finished_spans() if s.name == f"durable_sa.start {WORKFLOW}"]
    start_id = f"{start.context.span_id:016x}"
    assert f"{start.context.trace_id:032x}" == trace_id
    worker_spans = {span["name"]: span for span in read_spans(spans_file)}
    charge = worker_spans[f"durable_sa.step {WORKFLOW}.charge"]
    ship = worker_spans[f"durable_sa.step {WORKFLOW}.ship"]
    bank = worker_spans["call the bank"]
    assert {span["trace_id"] for span in worker_spans.values()} == {trace_id}
    assert charge["parent_id"] == ship["parent_id"] == start_id
    assert bank["parent_id"] == charge["span_id"]
    assert charge["kind"] == "CONSUMER"
    assert charge["attributes"] == {
        "durable_sa.workflow": WORKFLOW,
        "durable_sa.run_id": run_id,
        "durable_sa.step": "charge",
        "durable_sa.attempt": 1,
        "durable_sa.outcome": "advance",
    }

    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert records, output
    assert all({"time", "level", "logger", "message"} <= record.keys() for record in records)
    (step_record,) = [r for r in records if r.get("step") == "charge"]
    assert step_record["run_id"] == run_id
    assert step_record["workflow"] == WORKFLOW
    assert step_record["attempt"] == 1
    assert step_record["outcome"] == "advance"
    assert step_record["trace_id"] == trace_id  # the log line joins its span
    assert step_record["span_id"] == charge["span_id"]
