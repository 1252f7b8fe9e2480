"""A unit whose transaction's connection is lost: its span says so, not what was rolled back.

When a transactional compensator or an ``on_finish`` hook loses its ``ctx.session``
connection, its writes roll back and it runs again without using an attempt. The span
of that first attempt must end with the lost connection as its error, never with the
``compensated`` or ``finished`` outcome the rolled-back code reported. PostgreSQL only:
a SQLite file has no connection to lose.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import sqlalchemy as sa
from opentelemetry.trace import StatusCode

from durable_sa import Durable, DurableContext, RunStatus, durable
from durable_sa.testing import drain
from tests.integration.helpers import far_future
from tests.integration.telemetry.test_traces import by_name

if TYPE_CHECKING:
    from collections.abc import Callable

    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def dropping(calls: list[int]) -> Callable[[DurableContext], None]:
    """A unit whose first run has the server end its connection (as a failover would)."""

    def unit(ctx: DurableContext) -> None:
        calls.append(1)
        assert ctx.session is not None
        if len(calls) == 1:
            # the code swallows the failure and reports success
            with contextlib.suppress(sa.exc.OperationalError):
                ctx.session.execute(sa.text("SELECT pg_terminate_backend(pg_backend_pid())"))

    return unit


def test_a_compensator_that_lost_its_connection_has_a_failed_span(
    pg_engine: sa.Engine, spans: InMemorySpanExporter
) -> None:
    engine = Durable(pg_engine)
    engine.create_tables()
    calls: list[int] = []

    def decline(ctx: DurableContext) -> None:
        msg = "card declined"
        raise RuntimeError(msg)

    durable("lost-undo").step(
        "reserve", lambda ctx: 1, compensate=dropping(calls), transactional=True
    ).step("charge", decline, max_retries=1)
    run_id = engine.start("lost-undo").run_id
    drain(engine, now=far_future())

    assert engine.status(run_id).status is RunStatus.FAILED
    assert len(calls) == 2  # ran again, once
    found = by_name(spans)["durable_sa.step lost-undo.reserve#compensate"]
    first, second = sorted(found, key=lambda span: span.start_time or 0)
    assert first.status.status_code is StatusCode.ERROR
    assert "connection of its transaction was lost" in (first.status.description or "")
    assert (first.attributes or {}).get("durable_sa.outcome") != "compensated"
    assert (second.attributes or {}).get("durable_sa.outcome") == "compensated"


def test_a_hook_that_lost_its_connection_has_a_failed_span(
    pg_engine: sa.Engine, spans: InMemorySpanExporter
) -> None:
    engine = Durable(pg_engine)
    engine.create_tables()
    calls: list[int] = []
    durable("lost-hook").step("one", lambda ctx: 1).on_finish(dropping(calls), max_retries=1)
    run_id = engine.start("lost-hook").run_id
    drain(engine, now=far_future())

    assert engine.status(run_id).status is RunStatus.COMPLETED
    assert len(calls) == 2
    found = by_name(spans)["durable_sa.step lost-hook.#finish"]
    first, second = sorted(found, key=lambda span: span.start_time or 0)
    assert first.status.status_code is StatusCode.ERROR
    assert (first.attributes or {}).get("durable_sa.outcome") != "finished"
    assert (second.attributes or {}).get("durable_sa.outcome") == "finished"
