"""Limits on active runs: whether a run may begin, and why a pending run waits.

A workflow declared with ``max_active`` and/or ``max_active_per_key`` counts its active
runs (begun and not ended; suspended runs count) in the slots table, one count for the
workflow (key ``""``) and one per concurrency key. The shell locks those counts in the
transaction that starts, admits or ends a run (:mod:`durable_sa.engine.limits`); the
decisions made on them are these pure functions, so they can be property-tested alone:

- :func:`has_room`: a count with a limit has a place free;
- :func:`admits`: a run may begin now: its workflow's count and its key's have room;
- :func:`waiting_reason`, :func:`debounce_reason`: what a pending run waits for, as
  ``list`` and ``status`` say.

Pending runs are admitted in priority order (lower first), then by arrival (run id).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

import attrs

from durable_sa.errors import DefinitionError, PayloadError

MAX_KEY: Final = 255
"""The length of the concurrency key's column."""

WORKFLOW_KEY: Final = ""
"""The slots row that counts every active run of a workflow (a key cannot be empty)."""


def _limit(_inst: object, attribute: attrs.Attribute[int | None], value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"{attribute.name} must be a positive integer or None, not {value!r}"
        raise DefinitionError(msg)


@attrs.frozen(kw_only=True)
class Limits:
    """A workflow's limits on its active runs; ``None``: no such limit."""

    max_active: int | None = attrs.field(default=None, validator=_limit)
    max_active_per_key: int | None = attrs.field(default=None, validator=_limit)

    @property
    def any(self) -> bool:
        """True when the workflow has a limit (its runs are counted)."""
        return self.max_active is not None or self.max_active_per_key is not None

    def keyed(self, concurrency_key: str | None) -> bool:
        """True when a run with ``concurrency_key`` is counted under its key too."""
        return concurrency_key is not None and self.max_active_per_key is not None


NO_LIMITS: Final = Limits()


@attrs.frozen(kw_only=True)
class Count:
    """One slots row: how many runs are active, and the most that may be (``None``: any)."""

    active: int
    limit: int | None = None

    @property
    def has_room(self) -> bool:
        """True when one more run may become active under this count."""
        return has_room(self.active, self.limit)


def has_room(active: int, limit: int | None) -> bool:
    """True when ``active`` runs leave a place under ``limit`` (``None``: no limit)."""
    return limit is None or active < limit


def admits(workflow: Count, key: Count | None) -> bool:
    """True when a run counted by ``workflow`` (and by ``key``, if keyed) may begin now."""
    return workflow.has_room and (key is None or key.has_room)


def debounce_reason(begin_at: datetime) -> str:
    """Why a debounced run waits: its window, which a start of its key may move on."""
    return f"debounce until {begin_at.astimezone(UTC).isoformat(timespec='seconds')}"


def waiting_reason(
    workflow: Count, key: Count | None, concurrency_key: str | None, workflow_name: str
) -> str:
    """Why a pending run of ``workflow_name`` waits, in words ``list`` and ``status`` show.

    Every limit that binds is named (both, joined by ``and``, when the workflow's and the
    key's counts are full): the run begins only once each has a place.
    """
    full = []
    if not workflow.has_room:
        full.append(
            f"limit of workflow {workflow_name!r} ({workflow.active}/{workflow.limit} active)"
        )
    if key is not None and not key.has_room:
        full.append(f"limit of key {concurrency_key!r} ({key.active}/{key.limit} active)")
    if full:
        return " and ".join(full)
    return "admission (a place is free; it begins when the run that freed it commits)"


def check_concurrency_key(key: object, what: str = "concurrency_key") -> None:
    """A key its column can hold: 1 to 255 characters (a concurrency or debounce key).

    Raises:
        PayloadError: it is not such a string.

    """
    if not isinstance(key, str) or not key or len(key) > MAX_KEY:
        msg = f"{what} must be a non-empty string of at most {MAX_KEY} characters"
        raise PayloadError(msg)


def check_priority(priority: object) -> None:
    """A priority is an integer (lower runs first); it fits a 32-bit column.

    Raises:
        PayloadError: it is not.

    """
    if isinstance(priority, bool) or not isinstance(priority, int) or abs(priority) >= 2**31:
        msg = f"priority must be an integer between -2**31 and 2**31 - 1, not {priority!r}"
        raise PayloadError(msg)
