"""The one converter between Python values and the JSON the engine stores.

Rules:
- Every value that reaches the database (run input, step results, signal data, job
  payloads) passes through :func:`to_json` first, so a value JSON cannot hold is refused
  before anything is written, with a message that names what was being stored.
- What ``json.dumps`` would store unchanged is accepted: ``None``, ``bool``, ``int``,
  finite ``float``, ``str``, lists, tuples (stored as lists) and string-keyed dicts.
  attrs classes, dataclasses and pydantic v2 models are unstructured by the one cattrs
  converter (:mod:`durable_sa.core.convert`: their datetime fields become ISO 8601
  strings); plain JSON values never reach it, so the hot path stays a walk of the value.
- Typed reads (``input_type``, ``ctx.result(name, T)``) structure stored JSON with the
  same converter (:func:`structure_as`), so a typed value reads back as it was written.
- Everything else is refused rather than silently changed: sets, bytes, datetimes,
  UUIDs and decimals outside a typed class (untyped, they could not read back as what
  they were), non-string keys, NaN and infinities, and strings holding a NUL
  character or a lone surrogate (PostgreSQL text cannot hold them), so a value
  behaves the same on every database.
- Never pickle.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import TypeAlias, TypeVar

from durable_sa.core.convert import converter, is_typed_value, type_name, unstructure
from durable_sa.errors import PayloadError, PayloadTooLargeError

JSONValue: TypeAlias = bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None
JSONObject: TypeAlias = dict[str, JSONValue]

__all__ = [
    "JSONObject",
    "JSONValue",
    "check_size",
    "converter",
    "from_json",
    "json_size",
    "structure_as",
    "to_json",
    "to_json_object",
]

T = TypeVar("T")

_MAX_DEPTH = 200


class _NotJSONError(Exception):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{reason} at {path}" if path else reason)


def _check(value: object, path: str, depth: int) -> JSONValue:  # noqa: PLR0911 - one per type
    if depth > _MAX_DEPTH:
        raise _NotJSONError(path, "nesting deeper than 200 levels (a cycle?)")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _check_str(value, path)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _NotJSONError(path, f"{value!r} is not a finite number")
        return float(value)
    if isinstance(value, Mapping):
        return _check_mapping(value, path, depth)
    if isinstance(value, (list, tuple)):
        return [_check(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
    if is_typed_value(value) and not isinstance(value, type):
        return _check(unstructure(value), path, depth + 1)
    raise _NotJSONError(path, f"an object of type {type(value).__name__}")


def _check_mapping(value: Mapping[object, object], path: str, depth: int) -> JSONObject:
    out: JSONObject = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise _NotJSONError(path, f"key {key!r} is a {type(key).__name__}, not a str")
        where = f"{path}.{key}" if path else key
        out[_check_str(key, where)] = _check(item, where, depth + 1)
    return out


def _check_str(value: str, path: str) -> str:
    if "\x00" in value:
        raise _NotJSONError(path, "a string holding a NUL character")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _NotJSONError(path, "a string holding a lone surrogate") from None
    return value if type(value) is str else str.__str__(value)


def to_json(value: object, *, what: str, error: type[PayloadError] = PayloadError) -> JSONValue:
    """Return ``value`` as plain JSON data, or raise ``error`` naming ``what``."""
    try:
        return _check(value, "", 0)
    except _NotJSONError as exc:
        msg = f"{what} is not JSON-serializable: {exc}"
        raise error(msg) from None
    except Exception as exc:  # a converter hook failed on an exotic value
        msg = f"{what} is not JSON-serializable: {type(exc).__name__}: {exc}"
        raise error(msg) from exc


def to_json_object(value: object, *, what: str) -> JSONObject:
    """Like :func:`to_json`, but the value must be a mapping (``None`` means ``{}``)."""
    if value is None:
        return {}
    data = to_json(value, what=what)
    if not isinstance(data, dict):
        msg = f"{what} must be a mapping (a dict of JSON values), not {type(value).__name__}"
        raise PayloadError(msg)
    return data


def from_json(data: object, cls: type[T], *, what: str) -> T:
    """Structure stored JSON into ``cls``, or raise :class:`PayloadError` naming ``what``."""
    try:
        return converter.structure(data, cls)
    except (BaseExceptionGroup, TypeError, ValueError, KeyError) as exc:
        detail = "; ".join(_flatten(exc))
        msg = f"{what} is malformed: {detail}"
        raise PayloadError(msg) from None


def structure_as(data: object, cls: type[T], *, what: str) -> T:
    """Structure stored JSON as the user's type ``cls``, or raise :class:`PayloadError`.

    ``cls`` is an attrs class, a dataclass, a pydantic model or a container of them; the
    error names ``what`` and the field that did not fit.
    """
    try:
        return converter.structure(data, cls)
    except Exception as exc:  # noqa: BLE001 - cattrs, pydantic or a user validator refused
        detail = "; ".join(_flatten(exc))
        msg = f"{what} cannot be read as {type_name(cls)}: {detail}"
        raise PayloadError(msg) from None


def json_size(value: JSONValue) -> int:
    """The size of ``value`` in bytes, as compact UTF-8 JSON text."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def check_size(value: JSONValue, limit: int | None, *, what: str) -> None:
    """Refuse ``value`` when its JSON is over ``limit`` bytes (``None``: no limit).

    Raises:
        PayloadTooLargeError: naming ``what``, the size and the limit.

    """
    if limit is None:
        return
    size = json_size(value)
    if size > limit:
        msg = (
            f"{what} is {size} bytes of JSON, over max_payload_bytes={limit}; store large "
            "data elsewhere (a table of your own, object storage) and pass a reference"
        )
        raise PayloadTooLargeError(msg, size=size, limit=limit)


def _flatten(exc: BaseException) -> list[str]:
    if isinstance(exc, BaseExceptionGroup):  # cattrs' class and iterable validation errors
        return [part for sub in exc.exceptions for part in _flatten(sub)]
    notes = getattr(exc, "__notes__", None)  # cattrs names the field: "... @ attribute x"
    where = f" ({notes[-1]})" if notes else ""
    return [f"{type(exc).__name__}: {exc}{where}"]
