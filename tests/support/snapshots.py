"""A run's status snapshot for tests of what is shown about a run (CLI notes, views)."""

from __future__ import annotations

from typing import Any

from durable_sa import RunStatus, RunStatusSnapshot


def snapshot(**changes: Any) -> RunStatusSnapshot:
    """Run 7 of ``order``, running at step 1 of 4, with ``changes`` applied."""
    values: dict[str, Any] = {
        "run_id": 7,
        "workflow_name": "order",
        "status": RunStatus.RUNNING,
        "current_step": 1,
        "total_steps": 4,
        "awaiting_signal": None,
        "wake_at": None,
        "results": {},
        "error": None,
        "parent_run_id": None,
    }
    return RunStatusSnapshot(**{**values, **changes})
