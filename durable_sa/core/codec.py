"""The one converter between Python values and the JSON the engine stores.

Rules:
- Every value that reaches the database (run input, step results, signal data, job
  payloads) passes through :func:`to_json` first, so a value JSON cannot hold is refused
  before anything is written, with a message that names what was being stored.
- What ``json.dumps`` would store unchanged is accepted: ``None``, ``bool``, ``int``,
  finite ``float``, ``str``, lists, tuples (stored as lists) and string-keyed dicts.
  attrs classes and dataclasses are unstructured by the one cattrs converter
  (``cattrs.preconf.json``: their datetime fields become ISO 8601 strings).
- Everything else is refused rather than silently changed: sets, bytes, datetimes
  outside a typed class, non-string keys, NaN and infinities, and strings holding a NUL
  character or a lone surrogate (PostgreSQL's JSONB refuses those too), so a value
  behaves the same on every database.
- Never pickle.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import TypeAlias, TypeVar

import attrs
from cattrs.errors import ClassValidationError
from cattrs.preconf.json import make_converter

from durable_sa.errors import PayloadError

JSONValue: TypeAlias = bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None
JSONObject: TypeAlias = dict[str, JSONValue]

converter = make_converter()


def _strict_int(value: object, _cls: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"expected an integer, got {value!r}"
        raise TypeError(msg)
    return value


def _strict_str(value: object, _cls: type) -> str:
    if not isinstance(value, str):
        msg = f"expected a string, got {value!r}"
        raise TypeError(msg)
    return value


# Structuring stored data never coerces: "1", 1.5 or True is not a run id.
converter.register_structure_hook(int, _strict_int)
converter.register_structure_hook(str, _strict_str)

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
    if attrs.has(type(value)) or (dataclasses.is_dataclass(value) and not isinstance(value, type)):
        return _check(converter.unstructure(value), path, depth + 1)
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
    except (ClassValidationError, TypeError, ValueError, KeyError) as exc:
        detail = "; ".join(_flatten(exc))
        msg = f"{what} is malformed: {detail}"
        raise PayloadError(msg) from None


def _flatten(exc: BaseException) -> list[str]:
    if isinstance(exc, ClassValidationError):
        return [part for sub in exc.exceptions for part in _flatten(sub)]
    return [f"{type(exc).__name__}: {exc}"]
