from __future__ import annotations

import dataclasses
import json
import math
from datetime import UTC, datetime, timedelta, timezone

import attrs
import pytest
from hypothesis import given, settings

from durable_sa.core.codec import JSONValue, from_json, to_json, to_json_object
from durable_sa.core.jobs import (
    JOB_KINDS,
    AdvanceJob,
    BeginJob,
    CompensateJob,
    FinishJob,
    JobPayload,
    JobSpec,
    SignalTimeoutJob,
    decode_payload,
    encode_payload,
)
from durable_sa.errors import DurableError, PayloadError
from tests.unit.core.strategies import json_values


@attrs.frozen
class Point:
    x: int
    y: int


@dataclasses.dataclass
class Order:
    id: int
    tags: tuple[str, ...]
    where: Point
    placed: datetime


class Opaque:
    pass


# ── to_json: what it accepts ───────────────────────────────────────────────────


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -7,
        2**62,
        1.5,
        "",
        "héllo",
        [],
        {},
        {"a": [1, 2.5, None, True, "x", {"b": {"c": []}}]},
        [[[[]]]],
    ],
)
def test_json_values_pass_through(value: JSONValue) -> None:
    assert to_json(value, what="input") == value
    assert type(to_json(value, what="input")) is type(value)


@settings(max_examples=100, deadline=None)
@given(value=json_values)
def test_any_json_value_round_trips(value: JSONValue) -> None:
    data = to_json(value, what="input")
    assert data == value
    assert json.loads(json.dumps(data)) == value


def test_booleans_stay_booleans() -> None:
    assert to_json({"flag": True}, what="input") == {"flag": True}
    assert to_json({"flag": True}, what="input")["flag"] is True  # type: ignore[index]


def test_attrs_classes_become_dicts() -> None:
    assert to_json(Point(1, 2), what="result") == {"x": 1, "y": 2}
    assert to_json({"p": [Point(3, 4)]}, what="result") == {"p": [{"x": 3, "y": 4}]}


def test_dataclasses_become_dicts() -> None:
    placed = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    data = to_json(Order(7, ("a", "b"), Point(0, 1), placed), what="result")
    assert data == {
        "id": 7,
        "tags": ["a", "b"],
        "where": {"x": 0, "y": 1},
        "placed": "2030-01-02T03:04:05+00:00",
    }
    assert json.loads(json.dumps(data)) == data


def test_datetimes_are_refused_outside_typed_classes() -> None:
    when = datetime(2030, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=2)))
    with pytest.raises(PayloadError, match="datetime at at"):
        to_json({"at": when}, what="x")


def test_datetime_fields_of_typed_classes_become_iso_strings() -> None:
    @attrs.frozen
    class Stamp:
        at: datetime

    when = datetime(2030, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=2)))
    assert to_json(Stamp(when), what="x") == {"at": "2030-05-06T07:08:09+02:00"}


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({1, 2}, "set"),
        (b"raw", "bytes"),
        ("a\x00b", "NUL"),
        ({"k\x00": 1}, "NUL"),
        ("\ud800", "surrogate"),
    ],
)
def test_values_json_would_change_or_jsonb_refuses_are_refused(value: object, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        to_json(value, what="x")


def test_tuples_become_lists() -> None:
    assert to_json((1, (2, 3)), what="x") == [1, [2, 3]]
    data = to_json({"t": (1, "a", (None,))}, what="x")
    assert data == {"t": [1, "a", [None]]}
    assert isinstance(data, dict)
    assert isinstance(data["t"], list)
    assert isinstance(data["t"][2], list)  # type: ignore[index]


def test_moderately_deep_nesting_is_fine() -> None:
    value: JSONValue = 1
    for _ in range(100):
        value = [value]
    assert to_json(value, what="x") == value


# ── to_json: what it refuses ───────────────────────────────────────────────────


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused(number: float) -> None:
    with pytest.raises(PayloadError, match="run input is not JSON-serializable") as excinfo:
        to_json(number, what="run input")
    assert "finite" in str(excinfo.value)


def test_non_finite_number_error_names_the_path() -> None:
    with pytest.raises(PayloadError) as excinfo:
        to_json({"scores": [1.0, math.nan]}, what="result of step 'score'")
    message = str(excinfo.value)
    assert "result of step 'score'" in message
    assert "scores[1]" in message
    assert "nan" in message


def test_non_str_keys_are_refused() -> None:
    with pytest.raises(PayloadError) as excinfo:
        to_json({"outer": {1: "x"}}, what="signal data")
    message = str(excinfo.value)
    assert "signal data" in message
    assert "key 1" in message
    assert "outer" in message


def test_top_level_non_str_keys_are_refused() -> None:
    with pytest.raises(PayloadError, match="input is not JSON-serializable: key 1 is a int"):
        to_json({1: "x"}, what="input")
    with pytest.raises(PayloadError, match="input is not JSON-serializable"):
        to_json({(1, 2): "x"}, what="input")


@pytest.mark.parametrize(
    ("value", "path"),
    [
        (Opaque(), ""),
        ({"a": {"b": Opaque()}}, "a.b"),
        ([1, {"k": Opaque()}], "[1].k"),
        ({"list": [0, 0, Opaque()]}, "list[2]"),
    ],
)
def test_arbitrary_objects_are_refused_with_their_path(value: object, path: str) -> None:
    with pytest.raises(PayloadError) as excinfo:
        to_json(value, what="result of step 'charge'")
    message = str(excinfo.value)
    assert message.startswith("result of step 'charge' is not JSON-serializable")
    assert "Opaque" in message
    if path:
        assert f"at {path}" in message


@pytest.mark.parametrize("value", [1 + 2j, object(), Opaque])
def test_other_unsupported_values_are_refused(value: object) -> None:
    with pytest.raises(PayloadError, match="the value"):
        to_json(value, what="the value")


def test_cycles_are_refused_not_crashing() -> None:
    cycle: list[object] = []
    cycle.append(cycle)
    with pytest.raises(PayloadError, match="input is not JSON-serializable"):
        to_json(cycle, what="input")


def test_too_deep_nesting_is_refused() -> None:
    value: object = 1
    for _ in range(250):
        value = [value]
    with pytest.raises(PayloadError, match="deeper than 200"):
        to_json(value, what="input")


def test_payload_error_is_a_value_error_and_a_durable_error() -> None:
    assert issubclass(PayloadError, ValueError)
    assert issubclass(PayloadError, DurableError)
    with pytest.raises(ValueError, match="x"):
        to_json(math.nan, what="x")


# ── to_json_object ─────────────────────────────────────────────────────────────


def test_to_json_object_maps_none_to_an_empty_dict() -> None:
    assert to_json_object(None, what="input") == {}


def test_to_json_object_accepts_mappings_and_objects() -> None:
    assert to_json_object({"a": 1}, what="input") == {"a": 1}
    assert to_json_object(Point(1, 2), what="input") == {"x": 1, "y": 2}


@pytest.mark.parametrize("value", [[1, 2], (1,), "text", 3, 2.5, True])
def test_to_json_object_refuses_non_mappings(value: object) -> None:
    with pytest.raises(PayloadError) as excinfo:
        to_json_object(value, what="workflow input")
    message = str(excinfo.value)
    assert "workflow input" in message
    assert "mapping" in message


def test_to_json_object_still_refuses_bad_values() -> None:
    with pytest.raises(PayloadError, match=r"input is not JSON-serializable.*at a"):
        to_json_object({"a": math.inf}, what="input")


# ── from_json ──────────────────────────────────────────────────────────────────


def test_from_json_structures_and_names_what_on_failure() -> None:
    assert from_json({"x": 1, "y": 2}, Point, what="point") == Point(1, 2)
    with pytest.raises(PayloadError, match="point is malformed"):
        from_json({"x": 1}, Point, what="point")


# ── job payloads ───────────────────────────────────────────────────────────────

PAYLOADS: list[JobPayload] = [
    AdvanceJob(run_id=1, step_index=0),
    AdvanceJob(run_id=42, step_index=7, attempt=3),
    CompensateJob(run_id=5, index=0),
    CompensateJob(run_id=5, index=12),
    SignalTimeoutJob(run_id=9, step_index=2, signal="approve"),
    FinishJob(run_id=3),
    FinishJob(run_id=3, attempt=2),
]


def test_job_kinds() -> None:
    assert dict(JOB_KINDS) == {
        "advance": AdvanceJob,
        "compensate": CompensateJob,
        "signal_timeout": SignalTimeoutJob,
        "finish": FinishJob,
        "begin": BeginJob,
    }


@pytest.mark.parametrize("payload", PAYLOADS, ids=repr)
def test_job_payload_round_trip(payload: JobPayload) -> None:
    data = encode_payload(payload)
    assert isinstance(data, dict)
    stored = json.loads(json.dumps(data))
    assert decode_payload(payload.kind, stored) == payload
    assert type(decode_payload(payload.kind, stored)) is type(payload)


def test_encoded_payloads_are_plain_fields() -> None:
    assert encode_payload(AdvanceJob(run_id=42, step_index=7, attempt=3)) == {
        "run_id": 42,
        "step_index": 7,
        "attempt": 3,
    }
    assert encode_payload(CompensateJob(run_id=5, index=2)) == {"run_id": 5, "index": 2}
    assert encode_payload(SignalTimeoutJob(run_id=9, step_index=2, signal="go")) == {
        "run_id": 9,
        "step_index": 2,
        "signal": "go",
    }


def test_advance_attempt_defaults_to_one() -> None:
    assert decode_payload("advance", {"run_id": 1, "step_index": 4}) == AdvanceJob(
        run_id=1, step_index=4, attempt=1
    )


def test_job_spec_exposes_kind_and_run_id() -> None:
    when = datetime(2030, 1, 1, tzinfo=UTC)
    for payload in PAYLOADS:
        spec = JobSpec(payload=payload, available_at=when)
        assert spec.kind == payload.kind
        assert spec.run_id == payload.run_id


@pytest.mark.parametrize(
    "build",
    [
        lambda: AdvanceJob(run_id=0, step_index=0),
        lambda: AdvanceJob(run_id=1, step_index=-1),
        lambda: AdvanceJob(run_id=1, step_index=0, attempt=0),
        lambda: AdvanceJob(run_id=True, step_index=0),
        lambda: CompensateJob(run_id=1, index=-1),
        lambda: SignalTimeoutJob(run_id=-3, step_index=0, signal="go"),
    ],
)
def test_job_payload_fields_are_validated(build: object) -> None:
    with pytest.raises(ValueError, match="must be a"):
        build()  # type: ignore[operator]


def test_decode_refuses_unknown_kinds() -> None:
    with pytest.raises(PayloadError) as excinfo:
        decode_payload("teleport", {"run_id": 1})
    message = str(excinfo.value)
    assert "'teleport'" in message
    assert "advance, begin, compensate, finish, signal_timeout" in message


@pytest.mark.parametrize("data", [None, [], [1, 2], "advance", 3, 1.5, True])
@pytest.mark.parametrize("kind", sorted(JOB_KINDS))
def test_decode_refuses_non_objects(kind: str, data: object) -> None:
    with pytest.raises(PayloadError, match=f"{kind} job payload is malformed"):
        decode_payload(kind, data)


@pytest.mark.parametrize(
    ("kind", "data", "field"),
    [
        ("advance", {}, "run_id"),
        ("advance", {"run_id": 1}, "step_index"),
        ("advance", {"step_index": 0}, "run_id"),
        ("compensate", {"run_id": 1}, "index"),
        ("compensate", {"index": 0}, "run_id"),
        ("signal_timeout", {"run_id": 1, "step_index": 0}, "signal"),
        ("signal_timeout", {"run_id": 1, "signal": "go"}, "step_index"),
    ],
)
def test_decode_refuses_missing_fields(kind: str, data: object, field: str) -> None:
    with pytest.raises(PayloadError) as excinfo:
        decode_payload(kind, data)
    message = str(excinfo.value)
    assert f"{kind} job payload is malformed" in message
    assert field in message


WRONG_TYPES = [
    ("advance", {"run_id": "x", "step_index": 0}),
    ("advance", {"run_id": 1, "step_index": None}),
    ("advance", {"run_id": 1, "step_index": []}),
    ("advance", {"run_id": 1, "step_index": {"i": 0}}),
    ("advance", {"run_id": 1, "step_index": 0, "attempt": "two"}),
    ("compensate", {"run_id": 1, "index": "last"}),
    ("signal_timeout", {"run_id": 1, "step_index": "x", "signal": "go"}),
]


@pytest.mark.parametrize(("kind", "data"), WRONG_TYPES, ids=[repr(d) for _, d in WRONG_TYPES])
def test_decode_refuses_wrong_types(kind: str, data: object) -> None:
    with pytest.raises(PayloadError, match=f"{kind} job payload is malformed"):
        decode_payload(kind, data)


# The stored JSON holds another type than the field's: structuring must not coerce it
# (1.5 -> 1 points the job at another run; None -> "None" invents a signal name).
COERCED_TYPES = [
    ("advance", {"run_id": 1.5, "step_index": 0}),
    ("advance", {"run_id": 1, "step_index": 0.5}),
    ("advance", {"run_id": True, "step_index": 0}),
    ("advance", {"run_id": "1", "step_index": 0}),
    ("signal_timeout", {"run_id": 1, "step_index": 0, "signal": None}),
    ("signal_timeout", {"run_id": 1, "step_index": 0, "signal": 3}),
    ("signal_timeout", {"run_id": 1, "step_index": 0, "signal": ["go"]}),
]


@pytest.mark.parametrize(("kind", "data"), COERCED_TYPES, ids=[repr(d) for _, d in COERCED_TYPES])
def test_decode_refuses_values_it_would_have_to_coerce(kind: str, data: object) -> None:
    with pytest.raises(PayloadError, match=f"{kind} job payload is malformed"):
        decode_payload(kind, data)


@pytest.mark.parametrize(
    ("kind", "data", "field"),
    [
        ("advance", {"run_id": 1, "step_index": -1}, "step_index"),
        ("advance", {"run_id": 1, "step_index": 0, "attempt": 0}, "attempt"),
        ("advance", {"run_id": 0, "step_index": 0}, "run_id"),
        ("compensate", {"run_id": 1, "index": -1}, "index"),
        ("compensate", {"run_id": 1, "index": -5}, "index"),
        ("signal_timeout", {"run_id": 1, "step_index": -2, "signal": "go"}, "step_index"),
    ],
)
def test_decode_refuses_negative_indexes(kind: str, data: object, field: str) -> None:
    with pytest.raises(PayloadError) as excinfo:
        decode_payload(kind, data)
    message = str(excinfo.value)
    assert f"{kind} job payload is malformed" in message
    assert field in message
