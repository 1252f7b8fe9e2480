"""The one converter: typed values to JSON and back, pydantic by shape, sizes."""

from __future__ import annotations

import dataclasses
import enum
import json
import subprocess
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from uuid import UUID

import attrs
import pydantic
import pytest

from durable_sa.core.codec import check_size, json_size, structure_as, to_json
from durable_sa.core.convert import is_pydantic_model, is_typed_value
from durable_sa.errors import PayloadError, PayloadTooLargeError


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass(frozen=True)
class Leaves:
    when: datetime
    day: date
    ident: UUID
    amount: Decimal
    color: Color
    raw: bytes
    tags: frozenset[str]


@attrs.frozen
class Line:
    sku: str
    quantity: int


class Cart(pydantic.BaseModel):
    lines: list[str]
    total: float
    created: datetime


@attrs.frozen
class Holder:
    cart: Cart
    lines: list[Line]


LEAVES = Leaves(
    when=datetime(2025, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
    day=date(2025, 5, 6),
    ident=UUID(int=7),
    amount=Decimal("0.10"),
    color=Color.RED,
    raw=b"\x00\xff",
    tags=frozenset({"a"}),
)
CART = Cart(lines=["x"], total=2, created=datetime(2025, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("value", "cls"),
    [
        (LEAVES, Leaves),
        (Line("A", 2), Line),
        (CART, Cart),
        (Holder(CART, [Line("A", 1)]), Holder),
        ([Line("A", 1), Line("B", 2)], list[Line]),
        ({"k": CART}, dict[str, Cart]),
        ((Line("A", 1), None), tuple[Line, Line | None]),
    ],
)
def test_typed_values_round_trip_through_json_text(value: object, cls: type) -> None:
    data = to_json(value, what="v")
    assert json.loads(json.dumps(data)) == data  # plain JSON, nothing else
    assert structure_as(json.loads(json.dumps(data)), cls, what="v") == value


def test_leaves_inside_a_typed_class_have_a_documented_json_form() -> None:
    data = to_json(LEAVES, what="v")
    assert data == {
        "when": "2025-05-06T07:08:09.123456+00:00",
        "day": "2025-05-06",
        "ident": "00000000-0000-0000-0000-000000000007",
        "amount": "0.10",
        "color": "red",
        "raw": data["raw"],  # type: ignore[index,call-overload]
        "tags": ["a"],
    }
    assert isinstance(data["raw"], str)  # type: ignore[index,call-overload]
    assert to_json(CART, what="v") == {
        "lines": ["x"],
        "total": 2.0,
        "created": "2025-01-01T00:00:00Z",
    }


@pytest.mark.parametrize(
    "value",
    [datetime(2025, 1, 1, tzinfo=UTC), UUID(int=1), Decimal("1.5"), b"x", {1, 2}, Line],
)
def test_leaves_outside_a_typed_class_are_refused(value: object) -> None:
    with pytest.raises(PayloadError, match="the result is not JSON-serializable"):
        to_json(value, what="the result")


@pytest.mark.parametrize(
    ("data", "cls", "field"),
    [
        ({"sku": "A", "quantity": "2"}, Line, "quantity"),
        ({"sku": "A", "quantity": True}, Line, "quantity"),
        ({"sku": 1, "quantity": 2}, Line, "sku"),
        ({"sku": "A"}, Line, "quantity"),
        ({"lines": [], "total": "2", "created": "2025-01-01T00:00:00Z"}, Holder, "cart"),
        ({"lines": "x", "total": 1, "created": "2025-01-01T00:00:00Z"}, Cart, "lines"),
    ],
)
def test_structuring_never_coerces_and_names_the_field(data: object, cls: type, field: str) -> None:
    with pytest.raises(PayloadError, match=f"the input cannot be read as {cls.__name__}") as err:
        structure_as(data, cls, what="the input")
    assert field in str(err.value)


def test_float_fields_take_integers_but_not_strings_or_booleans() -> None:
    @attrs.frozen
    class Price:
        value: float
        ok: bool

    assert structure_as({"value": 2, "ok": False}, Price, what="v") == Price(2.0, ok=False)
    for bad in ({"value": "2", "ok": True}, {"value": 2, "ok": "false"}):
        with pytest.raises(PayloadError):
            structure_as(bad, Price, what="v")


def test_a_generic_alias_is_named_in_errors() -> None:
    with pytest.raises(PayloadError, match=r"cannot be read as list\[.*Line\]"):
        structure_as([{"sku": 1}], list[Line], what="v")


def test_pydantic_is_recognised_by_shape() -> None:
    assert is_pydantic_model(Cart)
    assert not is_pydantic_model(Line)
    assert not is_pydantic_model(CART)  # an instance is not a model class
    assert is_typed_value(CART)
    assert is_typed_value(Line("a", 1))
    assert not is_typed_value({"a": 1})


def test_the_engine_never_imports_pydantic_itself() -> None:
    code = (
        "import sys, dataclasses\n"
        "import durable_sa, durable_sa.facade, durable_sa.core.convert\n"
        "from durable_sa.core.codec import to_json, structure_as\n"
        "@dataclasses.dataclass\n"
        "class A:\n"
        "    x: int\n"
        "assert structure_as(to_json(A(1), what='a'), A, what='a') == A(1)\n"
        "print('pydantic' in sys.modules)\n"
    )
    out = subprocess.run(  # noqa: S603 - this interpreter, our own code
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


def test_sizes_are_compact_utf8_json() -> None:
    assert json_size({"a": [1, 2]}) == len('{"a":[1,2]}')
    assert json_size("é") == 4  # two quotes and two UTF-8 bytes
    check_size({"a": 1}, None, what="v")
    check_size({"a": 1}, 7, what="v")
    with pytest.raises(
        PayloadTooLargeError, match="v is 7 bytes of JSON, over max_payload_bytes=6"
    ):
        check_size({"a": 1}, 6, what="v")
