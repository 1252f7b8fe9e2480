"""Why a begun run makes no progress, in words: a pause, or a step held by a rate limit.

``status()`` and ``list()`` say why a run waits (``waiting_reason``). For a pending run
the words come from :mod:`durable_sa.core.admission`; this module gives them for the
holds that apply to any run that has not ended, read from what the engine already
stores, so the status read costs a bounded query and the hot path no new write:

- a run of a paused workflow (``durable_paused_workflows`` holds its name) waits for
  ``unpause``: :data:`PAUSED`;
- a step deferred by a rate limit is a job row given back with the refusal as its
  ``last_error`` and due again at ``available_at``: :func:`rate_limit_hold` reads that
  pair back into ``rate limit 'api' (next at ...)``.

The refusals' wording is :func:`durable_sa.core.rates.decide_grant`'s; the tests check
every one of them is recognised here, so the two cannot drift apart silently.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final

PAUSED: Final = "workflow paused"
"""The reason of a run whose workflow is paused (``engine.pause``)."""

_NAME: Final = r"(?P<name>'[^']*'|\"[^\"]*\")"
_REACHED: Final = re.compile(rf"^rate limit {_NAME} \(\d+ per [^)]*\) reached$")
_MISCONFIGURED: Final = (
    re.compile(rf"^rate limit {_NAME} is not set: call engine\.set_rate_limit\("),
    re.compile(rf"^the step needs \d+ executions of rate limit {_NAME} at once "),
)
"""Anchored: a handler's own error that mentions a rate limit is not taken for a hold."""


def iso_utc(instant: datetime) -> str:
    """An instant as the waiting reasons show one: ``2030-01-02T03:04:05+00:00``."""
    return instant.astimezone(UTC).isoformat(timespec="seconds")


def rate_limit_hold(last_error: str | None, available_at: datetime) -> str | None:
    """Why a job given back by a rate limit waits, or ``None`` if it was not one.

    ``last_error`` is the reason stored with the deferred job; ``available_at`` when it
    is due again. A limit doing its job reads ``rate limit 'api' (next at <time>)``; a
    limit that is not set, or too small for the step, keeps the stored advice (what to
    fix) and says when the step looks again.
    """
    if last_error is None:
        return None
    reached = _REACHED.match(last_error)
    if reached is not None:
        return f"rate limit {reached['name']} (next at {iso_utc(available_at)})"
    if any(pattern.match(last_error) for pattern in _MISCONFIGURED):
        return f"{last_error} (next look at {iso_utc(available_at)})"
    return None


def paused_hold(pending_reason: str | None) -> str:
    """The reason of a run of a paused workflow, with what a pending run also waits for."""
    return PAUSED if pending_reason is None else f"{PAUSED}; then {pending_reason}"
