"""Input no column can hold gets a clear error before anything is written, on both databases.

Each case used to reach the driver (``DataError``, ``OverflowError``, a psycopg error, or
on SQLite a silently stored value), or to be accepted at definition and then fail in the
worker on every attempt.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import sqlalchemy as sa

from durable_sa import (
    DefinitionError,
    Durable,
    PayloadError,
    RunNotFoundError,
    durable,
)
from durable_sa.core.validation import NAME_LIMIT, STEP_NAME_LIMIT, UNIT_ID_LIMIT
from durable_sa.errors import DeadLetterNotFoundError, InvalidArgumentError
from durable_sa.store.models import runs_table
from durable_sa.testing import drain

OUT_OF_RANGE = [2**63, 2**64, -1, 0]
SURROGATE = "bad\udc80name"


def _runs(engine: Durable) -> int:
    with engine.sa_engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(runs_table)).scalar_one())


# ── run ids ───────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("run_id", OUT_OF_RANGE)
def test_a_run_id_outside_the_column_is_an_unknown_run(engine: Durable, run_id: int) -> None:
    with pytest.raises(RunNotFoundError):
        engine.status(run_id)
    with pytest.raises(RunNotFoundError):
        engine.resume(run_id, "go", {})
    with pytest.raises(RunNotFoundError):
        engine.cancel(run_id)
    with pytest.raises(RunNotFoundError):
        engine.wait(run_id, timeout=1)
    with pytest.raises(RunNotFoundError):
        asyncio.run(engine.wait_async(run_id, timeout=1))
    assert engine.list(parent_run_id=run_id) == []
    with pytest.raises(DeadLetterNotFoundError):
        engine.admin.requeue(run_id)


@pytest.mark.parametrize("run_id", ["5", 1.5, True, None])
def test_a_run_id_that_is_not_an_integer_is_a_mistake_in_the_call(
    engine: Durable, run_id: object
) -> None:
    with pytest.raises(InvalidArgumentError, match="integer"):
        engine.status(run_id)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="integer"):
        engine.cancel(run_id)  # type: ignore[arg-type]


# ── starts ────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "key",
    ["k" * 256, "nul\x00key", SURROGATE, ""],
    ids=["too-long", "nul", "surrogate", "empty"],
)
def test_an_idempotency_key_no_column_can_hold_is_refused(engine: Durable, key: str) -> None:
    durable("key-wf").step("a", lambda ctx: 1)
    with pytest.raises(PayloadError, match="idempotency_key"):
        engine.start("key-wf", {}, idempotency_key=key)
    assert _runs(engine) == 0


@pytest.mark.parametrize(
    "name",
    ["w" * (NAME_LIMIT + 1), "nul\x00wf", SURROGATE],
    ids=["too-long", "nul", "surrogate"],
)
def test_a_workflow_name_no_column_can_hold_is_refused_at_start(engine: Durable, name: str) -> None:
    with pytest.raises(DefinitionError, match="workflow name"):
        engine.start(name, {})
    assert _runs(engine) == 0


# ── definitions ───────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: durable("w" * (NAME_LIMIT + 1)), "workflow name"),
        (lambda: durable("nul\x00"), "NUL"),
        (lambda: durable(SURROGATE), "surrogate"),
        (lambda: durable("d1").step("s" * (STEP_NAME_LIMIT + 1), lambda ctx: 1), "step name"),
        (lambda: durable("d2").step("a\x00b", lambda ctx: 1), "NUL"),
        (lambda: durable("d3").wait_for_signal("w", "g" * (NAME_LIMIT + 1)), "signal"),
        (lambda: durable("d4").wait_for_signal("w", SURROGATE), "surrogate"),
        (
            lambda: durable("d5").parallel(
                "p" * 300, [("e" * (UNIT_ID_LIMIT - 300), lambda ctx: 1)]
            ),
            "entry name",
        ),
        (
            lambda: durable("d6").loop(
                "l" * (STEP_NAME_LIMIT - 2), lambda ctx: 1, max_iterations=10**9
            ),
            "iteration",
        ),
        (lambda: durable("d7").sleep("nap", timedelta.max), "years"),
        (lambda: durable("d8").sleep("nap", 1e20), "years"),
        (lambda: durable("d9").wait_for_signal("w", "go", timeout=timedelta(days=10**6)), "years"),
    ],
    ids=[
        "workflow-too-long",
        "workflow-nul",
        "workflow-surrogate",
        "step-too-long",
        "step-nul",
        "signal-too-long",
        "signal-surrogate",
        "entry-too-long-with-its-step",
        "loop-last-iteration-too-long",
        "sleep-beyond-any-date",
        "sleep-seconds-beyond-any-date",
        "timeout-beyond-any-date",
    ],
)
def test_a_definition_no_column_or_date_can_hold_is_refused(build: object, match: str) -> None:
    with pytest.raises(DefinitionError, match=match):
        build()  # type: ignore[operator]


def test_the_longest_names_that_fit_run_to_the_end(engine: Durable) -> None:
    step = "s" * STEP_NAME_LIMIT
    signal = "g" * NAME_LIMIT
    entry = "e" * (UNIT_ID_LIMIT - len("p") - 1)

    def fail(ctx: object) -> None:
        msg = "undo the longest step"
        raise RuntimeError(msg)

    durable("w" * NAME_LIMIT).step(step, lambda ctx: 1, compensate=lambda ctx: None).parallel(
        "p", [(entry, lambda ctx: 2)]
    ).wait_for_signal("wait", signal).step("boom", fail, max_retries=1)
    run = engine.start("w" * NAME_LIMIT, {}).run_id
    drain(engine)
    assert engine.status(run).awaiting_signal == signal
    assert engine.resume(run, signal, {"ok": True}).accepted
    drain(engine)
    final = engine.status(run)
    assert final.status == "failed"  # rolled back, the longest step's compensation included
    assert final.results[entry] == 2
