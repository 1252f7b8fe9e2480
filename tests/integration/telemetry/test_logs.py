"""Structured logs: the engine's step records carry the run's fields, JSON lines show them."""

from __future__ import annotations

import io
import json
import logging
from typing import TYPE_CHECKING

import pytest
from opentelemetry import trace

from durable_sa import Durable, DurableContext, durable
from durable_sa.cli import CliError
from durable_sa.cli.parser import parse
from durable_sa.cli.scrubbing import Invocation, configure_logging
from durable_sa.telemetry.json_logs import JsonFormatter
from durable_sa.testing import drain
from tests.integration.helpers import far_future

if TYPE_CHECKING:
    from collections.abc import Iterator

    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """The engine's records at INFO, as JsonFormatter writes them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("durable_sa")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(level)


def records(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_step_records_carry_the_runs_fields(engine: Durable, json_lines: io.StringIO) -> None:
    def flaky(ctx: DurableContext) -> int:
        if ctx.attempt == 1:
            msg = "try again"
            raise ValueError(msg)
        return 1

    durable("logged").step("flaky", flaky, max_retries=2)
    run_id = engine.start("logged").run_id
    drain(engine, now=far_future())

    steps = [r for r in records(json_lines) if r.get("action") == "step"]
    assert [(r["step"], r["attempt"], r["outcome"], r["level"]) for r in steps] == [
        ("flaky", 1, "retry", "WARNING"),
        ("flaky", 2, "advance", "INFO"),
    ]
    for record in steps:
        assert record["run_id"] == run_id
        assert record["workflow"] == "logged"
        assert record["logger"] == "durable_sa.engine.runner"
        assert isinstance(record["duration_ms"], float)
    assert steps[0]["error_type"] == "ValueError"
    assert "try again" in str(steps[0]["message"])  # the traceback too, inside one line
    assert "trace_id" not in steps[0]  # no span: no ids


def test_a_record_inside_a_traced_step_names_its_span(
    engine: Durable, json_lines: io.StringIO, spans: InMemorySpanExporter
) -> None:
    durable("logged-traced").step("one", lambda ctx: 1)
    engine.start("logged-traced")
    drain(engine)
    (step_span,) = [s for s in spans.get_finished_spans() if s.name.startswith("durable_sa.step")]
    (record,) = [r for r in records(json_lines) if r.get("action") == "step"]
    assert record["trace_id"] == f"{step_span.context.trace_id:032x}"
    assert record["span_id"] == f"{step_span.context.span_id:016x}"


def fail(message: str) -> None:
    raise RuntimeError(message)


def test_json_formatter_writes_one_line_with_extras_and_exception() -> None:
    logger = logging.getLogger("test.json")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(scrub=lambda text: text.replace("s3cret", "***")))
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            fail("password s3cret rejected")
        except RuntimeError:
            logger.exception("failed for %s", "run 7", extra={"run_id": 7, "when": object()})
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["message"] == "failed for run 7"
    assert record["level"] == "ERROR"
    assert record["run_id"] == 7
    assert record["when"].startswith("<object object")  # not JSON: written as its str
    assert record["exc_type"] == "RuntimeError"
    assert "Traceback" in record["exc_info"]
    assert "s3cret" not in line
    assert "password *** rejected" in record["exc_info"]


def test_worker_and_relay_take_log_format() -> None:
    assert parse(["worker", "app:app"]).log_format == "text"
    assert parse(["worker", "app:app", "--log-format", "json"]).log_format == "json"
    assert parse(["relay", "app:app", "--log-format", "json"]).log_format == "json"
    with pytest.raises(CliError, match="invalid choice: 'xml'"):
        parse(["worker", "app:app", "--log-format", "xml"])


def test_configure_logging_json_installs_the_json_formatter() -> None:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    root.handlers.clear()
    try:
        configure_logging("INFO", Invocation(), "json")
        (handler,) = root.handlers
        assert isinstance(handler.formatter, JsonFormatter)
    finally:
        root.handlers[:] = saved
        root.setLevel(level)


def test_no_span_ids_without_a_span() -> None:
    assert not trace.get_current_span().get_span_context().is_valid
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", (), None)
    assert "trace_id" not in json.loads(JsonFormatter().format(record))
