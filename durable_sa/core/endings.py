"""How a run remembers, in its own state, how it is to end: the engine's reserved keys.

Three facts about a run's ending live in its ``state`` under reserved keys
(:data:`~durable_sa.core.keys.RESERVED_PREFIX`, hidden from ``ctx.results`` and from
the run's result), so no column is added and every reader of a run sees them:

- :data:`HOOK_KEY`: the run's workflow has an ``on_finish`` hook. Written at start (the
  run's only initial state), so every decision that would end the run knows, without
  the definition, that the final status waits for the hook (a parent settled by a child's
  worker, a cancel from a process that does not define the workflow).
- :data:`FINISH_KEY`: the run's steps are done and its final status is decided but not
  written: ``{"status": ..., "error": ..., "attempt": n}``. The run shows ``running``
  (it completes) or ``compensating`` (it fails or is canceled) until its finish job
  writes the status together with the hook's writes.
- :data:`CANCEL_KEY`: the run rolls back because it was canceled with
  ``compensate=True``; when the rollback is done it ends ``canceled``, not ``failed``.

Pure, like the rest of the core.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import attrs

from durable_sa.core.keys import RESERVED_PREFIX
from durable_sa.core.status import RunStatus

if TYPE_CHECKING:
    from durable_sa.core.codec import JSONObject
    from durable_sa.core.snapshot import RunSnapshot

HOOK_KEY: Final = f"{RESERVED_PREFIX}_on_finish"
FINISH_KEY: Final = f"{RESERVED_PREFIX}_finish"
CANCEL_KEY: Final = f"{RESERVED_PREFIX}_cancel"

HOOKED_STATE: Final[JSONObject] = {HOOK_KEY: True}
"""The initial state of a run whose workflow has an ``on_finish`` hook."""


@attrs.frozen(kw_only=True)
class PendingFinish:
    """A run's decided, not yet written, final status (:data:`FINISH_KEY`)."""

    status: RunStatus
    error: str | None = None
    attempt: int = 1
    """The hook's attempt the run's finish job is meant for."""

    def as_json(self) -> JSONObject:
        """The value stored under :data:`FINISH_KEY`."""
        return {"status": self.status.value, "error": self.error, "attempt": self.attempt}


def has_finish_hook(run: RunSnapshot) -> bool:
    """True when ``run``'s workflow had an ``on_finish`` hook when it started."""
    return run.state.get(HOOK_KEY) is True


def canceled_with_compensation(run: RunSnapshot) -> bool:
    """True when ``run`` rolls back because it was canceled with ``compensate=True``."""
    return run.state.get(CANCEL_KEY) is True


def pending_finish(run: RunSnapshot) -> PendingFinish | None:
    """The final status ``run`` waits to write with its hook; ``None``: not finishing."""
    if run.status.is_terminal:
        return None
    stored = run.state.get(FINISH_KEY)
    if not isinstance(stored, dict):
        return None
    error = stored.get("error")
    attempt = stored.get("attempt")
    return PendingFinish(
        status=RunStatus(str(stored.get("status"))),
        error=error if isinstance(error, str) else None,
        attempt=attempt if isinstance(attempt, int) and attempt > 0 else 1,
    )


def signals_refused(run: RunSnapshot) -> str | None:
    """Why ``run`` can take no more signals (``None`` when it can, now or at a later wait).

    An ended run; a run whose steps are done and whose ``on_finish`` hook only is left; a
    run rolling back (after a failure or ``cancel(compensate=True)``): none of them will
    ever wait for a signal again, so a signal kept for them would be lost.
    """
    if run.status.is_terminal:
        return str(run.status)
    pending = pending_finish(run)
    if pending is not None:
        return f"{pending.status} (its on_finish hook pending)"
    if run.status is RunStatus.COMPENSATING:
        return "compensating (rolling back its completed steps)"
    return None
