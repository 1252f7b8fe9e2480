"""The one cattrs converter between typed Python values and JSON data.

Why one: a value stored by a start, a step or a signal must read back as the same value
in whatever process decodes it, so every typed value, and every job payload, goes through
this converter and nothing else.

Rules:
- It is ``cattrs.preconf.json``'s converter: attrs classes and dataclasses are handled
  field by field; inside them a ``datetime`` or ``date`` becomes ISO 8601 text, ``bytes``
  base85 text, an ``Enum`` its value, a ``set`` a list. Added here: ``UUID`` and
  ``Decimal`` as their exact text.
- pydantic v2 models are recognised by shape (a class with ``model_dump`` and
  ``model_validate``), so pydantic is never imported here: it is used only by values
  that are already pydantic models. Unstructuring is ``model_dump(mode="json")``,
  structuring ``Model.model_validate(data)`` (pydantic's own validation and errors).
- Structuring never coerces a JSON scalar: ``"1"``, ``1.5`` or ``True`` is not an
  ``int``, ``"1.5"`` not a ``float`` (an integer is), ``"false"`` not a ``bool``.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar
from uuid import UUID

import attrs
from cattrs.preconf.json import make_converter

T = TypeVar("T")

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


def _strict_float(value: object, _cls: type) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = f"expected a number, got {value!r}"
        raise TypeError(msg)
    return float(value)


def _strict_bool(value: object, _cls: type) -> bool:
    if not isinstance(value, bool):
        msg = f"expected true or false, got {value!r}"
        raise TypeError(msg)
    return value


def _uuid(value: object, _cls: type) -> UUID:
    if not isinstance(value, str):
        msg = f"expected a UUID string, got {value!r}"
        raise TypeError(msg)
    return UUID(value)


def _decimal(value: object, _cls: type) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        msg = f"expected a decimal string, got {value!r}"
        raise TypeError(msg)
    try:
        return Decimal(value)
    except InvalidOperation:
        msg = f"expected a decimal string, got {value!r}"
        raise ValueError(msg) from None


def is_pydantic_model(cls: object) -> bool:
    """True for a pydantic v2 model class, judged by shape: pydantic is not imported."""
    return (
        isinstance(cls, type)
        and callable(getattr(cls, "model_dump", None))
        and callable(getattr(cls, "model_validate", None))
    )


def _dump_model(value: Any) -> object:  # noqa: ANN401 - a pydantic model instance
    return value.model_dump(mode="json")


def _validate_model(data: object, cls: Any) -> object:  # noqa: ANN401 - a pydantic model class
    return cls.model_validate(data)


converter.register_structure_hook(int, _strict_int)
converter.register_structure_hook(str, _strict_str)
converter.register_structure_hook(float, _strict_float)
converter.register_structure_hook(bool, _strict_bool)
converter.register_unstructure_hook(UUID, str)
converter.register_structure_hook(UUID, _uuid)
converter.register_unstructure_hook(Decimal, str)
converter.register_structure_hook(Decimal, _decimal)
converter.register_unstructure_hook_func(is_pydantic_model, _dump_model)
converter.register_structure_hook_func(is_pydantic_model, _validate_model)


def is_typed_value(value: object) -> bool:
    """True for an instance the converter unstructures: attrs, dataclass or pydantic model."""
    cls = type(value)
    return attrs.has(cls) or dataclasses.is_dataclass(cls) or is_pydantic_model(cls)


def unstructure(value: object) -> object:
    """``value`` as JSON-shaped data (the codec checks the result is JSON)."""
    return converter.unstructure(value)


def structure(data: object, cls: type[T]) -> T:
    """``data`` as a ``cls``; raises what cattrs or pydantic raise when it does not fit."""
    return converter.structure(data, cls)


def type_name(cls: object) -> str:
    """A readable name for a type or a generic alias (``Quote``, ``list[Quote]``)."""
    return cls.__name__ if isinstance(cls, type) else str(cls).replace("typing.", "")
