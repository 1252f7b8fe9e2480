"""Typed payloads: models in, models out, stored as JSON, on both databases.

Inputs, step results and signal data may be dataclasses, attrs classes or pydantic models
(and containers of them); ``input_type`` and ``result_type`` say how a handler reads them
back, ``max_payload_bytes`` bounds them, and a result reads back as it was written
(floats stay floats, ``-0.0`` keeps its sign) whether it was just produced or reloaded.
"""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

import attrs
import pydantic
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from durable_sa import Durable, DurableContext, ParallelEntry, PayloadError, WorkflowRun, durable
from durable_sa.errors import PayloadTooLargeError
from durable_sa.schema import JSONColumn
from durable_sa.testing import drain
from tests.integration.helpers import far_future, get_journal, get_run


@dataclasses.dataclass(frozen=True)
class Order:
    sku: str
    quantity: int
    placed_at: datetime


@attrs.frozen
class Quote:
    sku: str
    price: Decimal
    quote_id: UUID


class Receipt(pydantic.BaseModel):
    order: str
    total: float
    lines: list[str]


QUOTE_ID = UUID("12345678-1234-5678-1234-567812345678")
PLACED = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def _run_count(engine: Durable) -> int:
    with Session(engine.sa_engine) as session:
        return session.scalar(sa.select(sa.func.count()).select_from(WorkflowRun)) or 0


def test_models_go_in_and_come_out_typed(engine: Durable) -> None:
    seen: dict[str, object] = {}

    def quote(ctx: DurableContext) -> Quote:
        order = ctx.input
        seen["input"] = order
        return Quote(sku=order.sku, price=Decimal("9.90") * order.quantity, quote_id=QUOTE_ID)

    def receipt(ctx: DurableContext) -> Receipt:
        quoted = ctx.result("quote")  # result_type= on the step
        seen["quote"] = quoted
        seen["quote_json"] = ctx.results["quote"]
        return Receipt(order=quoted.sku, total=float(quoted.price), lines=[str(quoted.quote_id)])

    def after(ctx: DurableContext) -> list[Quote]:
        seen["receipt"] = ctx.result("receipt", Receipt)
        return [ctx.result("quote"), ctx.result("quote")]

    def count(ctx: DurableContext) -> int:
        seen["many"] = ctx.result("many", list[Quote])
        return len(seen["many"])  # type: ignore[arg-type]

    (
        durable("typed", input_type=Order)
        .step("quote", quote, result_type=Quote)
        .step("receipt", receipt)
        .step("many", after)
        .step("count", count)
    )
    run_id = engine.start("typed", Order("A-1", 2, PLACED)).run_id
    drain(engine)

    assert engine.status(run_id).status == "completed"
    assert seen["input"] == Order("A-1", 2, PLACED)
    quoted = Quote("A-1", Decimal("19.80"), QUOTE_ID)
    assert seen["quote"] == quoted
    assert seen["quote_json"] == {"sku": "A-1", "price": "19.80", "quote_id": str(QUOTE_ID)}
    assert seen["receipt"] == Receipt(order="A-1", total=19.8, lines=[str(QUOTE_ID)])
    assert seen["many"] == [quoted, quoted]
    result = engine.status(run_id).result
    assert result is not None  # status() stays JSON
    assert result["receipt"] == {"order": "A-1", "total": 19.8, "lines": [str(QUOTE_ID)]}
    assert get_run(engine, run_id).input == {
        "sku": "A-1",
        "quantity": 2,
        "placed_at": "2025-01-02T03:04:05+00:00",
    }


def test_a_pydantic_input_type_and_a_dict_input(engine: Durable) -> None:
    inputs: list[object] = []
    durable("pyd", input_type=Receipt).step("s", lambda ctx: inputs.append(ctx.input))
    engine.start("pyd", {"order": "o-1", "total": 1, "lines": []})
    drain(engine)
    assert inputs == [Receipt(order="o-1", total=1.0, lines=[])]
    assert isinstance(inputs[0], Receipt)
    assert isinstance(inputs[0].total, float)


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ({"sku": "A-1", "quantity": "2", "placed_at": "2025-01-02T03:04:05+00:00"}, "quantity"),
        ({"sku": "A-1"}, "quantity"),
        ({"sku": "A-1", "quantity": 2, "placed_at": "yesterday"}, "placed_at"),
    ],
)
def test_start_refuses_an_input_that_is_not_the_input_type(
    engine: Durable, given: dict[str, object], problem: str
) -> None:
    durable("strict", input_type=Order).step("s", lambda ctx: None)
    with pytest.raises(PayloadError, match="the input of workflow 'strict'") as caught:
        engine.start("strict", given)
    assert "cannot be read as Order" in str(caught.value)
    assert problem in str(caught.value)
    assert _run_count(engine) == 0  # refused before anything was written


def test_start_refuses_an_input_a_pydantic_model_rejects(engine: Durable) -> None:
    durable("strict-pyd", input_type=Receipt).step("s", lambda ctx: None)
    with pytest.raises(PayloadError, match="cannot be read as Receipt") as caught:
        engine.start("strict-pyd", {"order": "o", "total": "lots", "lines": []})
    assert "total" in str(caught.value)
    assert _run_count(engine) == 0


def test_result_type_on_every_step_kind(engine: Durable) -> None:
    seen: dict[str, object] = {}

    def check(ctx: DurableContext) -> None:
        for name in ("entry", "route", "loop", "signal", "child"):
            seen[name] = ctx.result(name)

    durable("child-typed").step("q", lambda ctx: {"sku": "C", "quantity": 1})
    (
        durable("every-kind")
        .parallel(
            "p",
            [
                ParallelEntry(
                    "entry", lambda ctx: Quote("P", Decimal(1), QUOTE_ID), result_type=Quote
                )
            ],
        )
        .route(
            "route",
            lambda ctx: "a",
            {"a": lambda ctx: Receipt(order="r", total=2, lines=[])},
            result_type=Receipt,
        )
        .loop(
            "loop",
            lambda value, ctx: [Quote("L", Decimal(3), QUOTE_ID)],
            max_iterations=1,
            result_type=list[Quote],
        )
        .wait_for_signal("signal", "go", result_type=Receipt)
        .child_workflow("child", "child-typed", result_type=dict[str, dict[str, int | str]])
        .step("check", check)
    )
    run_id = engine.start("every-kind").run_id
    drain(engine)
    accepted = engine.resume(run_id, "go", Receipt(order="s", total=0.5, lines=["x"]))
    assert accepted.accepted
    drain(engine)
    assert engine.status(run_id).status == "completed"
    assert seen == {
        "entry": Quote("P", Decimal(1), QUOTE_ID),
        "route": Receipt(order="r", total=2.0, lines=[]),
        "loop": [Quote("L", Decimal(3), QUOTE_ID)],
        "signal": Receipt(order="s", total=0.5, lines=["x"]),
        "child": {"q": {"sku": "C", "quantity": 1}},
    }


def test_a_stored_result_that_does_not_fit_its_type_fails_the_reading_step(
    engine: Durable,
) -> None:
    durable("misfit").step("a", lambda ctx: {"sku": 1}, result_type=Quote).step(
        "b", lambda ctx: ctx.result("a"), max_retries=1
    )
    run_id = engine.start("misfit").run_id
    drain(engine, now=far_future())
    run = get_run(engine, run_id)
    assert run.status == "failed"
    assert "the result 'a' cannot be read as Quote" in (run.error or "")


def test_a_child_input_that_is_not_its_input_type_fails_the_step(engine: Durable) -> None:
    durable("typed-child", input_type=Order).step("s", lambda ctx: None)
    durable("parent").child_workflow("c", "typed-child", lambda ctx: {"sku": "x"})
    run_id = engine.start("parent").run_id
    drain(engine, now=far_future())
    run = get_run(engine, run_id)
    assert run.status == "failed"
    assert "cannot be read as Order" in (run.error or "")
    assert _run_count(engine) == 1  # no child run was created


# ── max_payload_bytes ──────────────────────────────────────────────────────────


def _limited(engine: Durable, limit: int) -> Durable:
    return Durable(engine.sa_engine, max_payload_bytes=limit)


def test_no_limit_by_default(engine: Durable) -> None:
    durable("big").step("s", lambda ctx: "x" * 300_000)
    run_id = engine.start("big", {"blob": "y" * 300_000}).run_id
    drain(engine)
    assert engine.status(run_id).status == "completed"


def test_a_large_input_is_refused_at_start(engine: Durable) -> None:
    limited = _limited(engine, 100)
    durable("big").step("s", lambda ctx: None)
    limited.start("big", {"blob": "y" * 80})  # 91 bytes: fits
    with pytest.raises(
        PayloadTooLargeError, match=r"start\('big'\)'s input is 111 bytes"
    ) as caught:
        limited.start("big", {"blob": "y" * 100})
    assert (caught.value.size, caught.value.limit) == (111, 100)
    assert "max_payload_bytes=100" in str(caught.value)
    assert _run_count(engine) == 1


def test_a_large_signal_is_refused_at_resume(engine: Durable) -> None:
    limited = _limited(engine, 50)
    durable("sig").wait_for_signal("w", "go")
    run_id = limited.start("sig").run_id
    drain(limited)
    with pytest.raises(PayloadTooLargeError, match=r"resume\(\)'s data of 'go' is 62 bytes"):
        limited.resume(run_id, "go", "z" * 60)
    assert limited.status(run_id).status == "suspended"
    assert limited.resume(run_id, "go", "small").accepted


def test_a_step_with_a_large_result_fails_like_one_whose_result_cannot_be_encoded(
    engine: Durable,
) -> None:
    limited = _limited(engine, 1_000)
    durable("big-result").step("fits", lambda ctx: "a" * 900).step(
        "huge", lambda ctx: {"rows": ["b" * 100] * 20}, max_retries=2
    )
    run_id = limited.start("big-result").run_id
    drain(limited, now=far_future())
    run = get_run(limited, run_id)
    assert run.status == "failed"
    assert run.error is not None
    assert "the result of step 'huge' is 2070 bytes of JSON" in run.error
    assert "max_payload_bytes=1000" in run.error
    assert run.attempt == 2  # retried like any failing step
    steps = {row.step_id for row in get_journal(limited, run_id) if row.status == "completed"}
    assert "huge" not in steps
    assert "fits" in steps


def test_max_payload_bytes_must_be_a_positive_integer(engine: Durable) -> None:
    from durable_sa.errors import InvalidArgumentError  # noqa: PLC0415

    for bad in (0, -1, 1.5, True, "10"):
        with pytest.raises(InvalidArgumentError, match="max_payload_bytes"):
            Durable(engine.sa_engine, max_payload_bytes=bad)  # type: ignore[arg-type]


# ── floats read back as written ────────────────────────────────────────────────

AWKWARD = {
    "big": 1e16,
    "neg_zero": -0.0,
    "half": 1.5,
    "huge": 1e300,
    "tiny": 5e-324,
    "whole": 100.0,
    "int": 10**16,
    "nested": {"z": [-0.0, 2.0, {"deep": 1e-7}], "a": "naïve ☃ \U0001f600"},
    "ünïcode": "日本語",
}


def _exact(value: object) -> str:
    """Key order and number types included: ``1`` is not ``1.0``, nor ``0.0`` ``-0.0``."""
    return json.dumps(value, ensure_ascii=False)


def test_floats_and_key_order_read_back_as_written(engine: Durable) -> None:
    later: list[object] = []
    durable("floats").step("make", lambda ctx: AWKWARD).step(
        "read", lambda ctx: later.append(ctx.results["make"])
    )
    run_id = engine.start("floats", {"input": AWKWARD}).run_id
    drain(engine)

    status = engine.status(run_id)
    assert status.status == "completed"
    assert status.result is not None
    for value in (status.result["make"], later[0], get_run(engine, run_id).input["input"]):
        assert value == AWKWARD
        assert _exact(value) == _exact(AWKWARD)
        assert isinstance(value["big"], float)  # type: ignore[index]
        assert isinstance(value["whole"], float)  # type: ignore[index]
        assert isinstance(value["int"], int)  # type: ignore[index]
        assert math.copysign(1.0, value["neg_zero"]) == -1.0  # type: ignore[index]
        assert math.copysign(1.0, value["nested"]["z"][0]) == -1.0  # type: ignore[index]


# ── tables created as JSONB by an earlier release ──────────────────────────────

_JSON_COLUMNS = [
    (table.name, column.name)
    for table in WorkflowRun.metadata.sorted_tables
    for column in table.columns
    if isinstance(column.type, JSONColumn)
]


def _alter_json_columns(sa_engine: sa.Engine, to: str) -> None:
    with sa_engine.begin() as conn:
        for table, column in _JSON_COLUMNS:
            conn.exec_driver_sql(
                f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {to} USING {column}::{to}"
            )


def _column_types(sa_engine: sa.Engine) -> set[str]:
    query = sa.text(
        "SELECT data_type FROM information_schema.columns "
        "WHERE table_name = :table AND column_name = :column"
    )
    with sa_engine.connect() as conn:
        return {
            conn.execute(query, {"table": table, "column": column}).scalar_one()
            for table, column in _JSON_COLUMNS
        }


def test_jsonb_tables_of_an_earlier_release_keep_working_and_migrate(
    pg_engine: sa.Engine,
) -> None:
    engine = Durable(pg_engine)
    engine.create_tables()
    assert _column_types(pg_engine) == {"json"}
    _alter_json_columns(pg_engine, "jsonb")  # as an earlier release created them
    assert _column_types(pg_engine) == {"jsonb"}

    durable("old-tables").step("make", lambda ctx: AWKWARD).wait_for_signal("w", "go").step(
        "read", lambda ctx: ctx.results["make"]["big"]
    )
    run_id = engine.start("old-tables", {"n": 1e16}, idempotency_key="k").run_id
    drain(engine)
    assert engine.resume(run_id, "go", {"x": -0.0}).accepted
    drain(engine)
    status = engine.status(run_id)
    assert status.status == "completed"
    assert status.result is not None
    assert status.result["make"]["nested"] == AWKWARD["nested"]
    assert isinstance(status.result["read"], int)  # JSONB made 1e16 an integer: not migrated

    _alter_json_columns(pg_engine, "json")  # the migration of docs/schema.md
    assert _column_types(pg_engine) == {"json"}
    run_id = engine.start("old-tables", {"n": 1e16}).run_id
    drain(engine)
    engine.resume(run_id, "go", None)
    drain(engine)
    status = engine.status(run_id)
    assert status.result is not None
    assert _exact(status.result["make"]) == _exact(AWKWARD)
    assert isinstance(status.result["read"], float)
