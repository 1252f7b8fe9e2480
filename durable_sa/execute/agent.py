"""Recognising an AI agent's suspended run by its shape, with no agent library imported.

An agent runner may stop mid-run waiting for tool results and hand back a snapshot shaped
``{"status": "suspended", "state": ..., "pending_tool_calls": [...]}`` (a mapping or an
object with those attributes; ``pendingToolCalls`` is accepted for the TypeScript shape).
A step returning one parks the whole run until it is resumed under the step's name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import attrs

_PENDING = ("pending_tool_calls", "pendingToolCalls")


def is_suspended_agent(value: object) -> bool:
    """True when ``value`` looks like an agent's suspended run."""
    if isinstance(value, Mapping):
        return (
            value.get("status") == "suspended"
            and "state" in value
            and any(key in value for key in _PENDING)
        )
    if value is None or isinstance(value, (str, bytes, int, float, list, tuple)):
        return False
    return (
        getattr(value, "status", None) == "suspended"
        and hasattr(value, "state")
        and any(hasattr(value, key) for key in _PENDING)
    )


def agent_snapshot(value: object) -> object:
    """The storable form of a suspended run: a mapping as it is, an object by its fields.

    An attrs class or dataclass is left to the codec; another object keeps ``status``,
    ``state`` and its pending tool calls (the parts needed to resume it).
    """
    if isinstance(value, Mapping) or attrs_or_dataclass(value):
        return value
    pending = next(key for key in _PENDING if hasattr(value, key))
    return {
        "status": "suspended",
        "state": getattr(value, "state", None),
        pending: getattr(value, pending),
    }


def attrs_or_dataclass(value: object) -> bool:
    """True for instances the codec unstructures field by field."""
    return attrs.has(type(value)) or dataclasses.is_dataclass(value)
