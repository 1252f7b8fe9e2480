"""Running a workflow's ``on_finish`` hook into an outcome value, with no database of its own.

The hook runs on the session of the transaction that ends the run; its writes are
flushed here, so a constraint that fails at flush fails the hook's attempt, like an
exception in the hook (and is retried the same way).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from durable_sa.core.outcomes import Failed
from durable_sa.core.units import FINISH_UNIT
from durable_sa.execute.failures import failure_info
from durable_sa.execute.invoke import call

if TYPE_CHECKING:
    from durable_sa.core.context import DurableContext
    from durable_sa.core.steps import FinishHook


def drive_finish(hook: FinishHook, ctx: DurableContext) -> Failed | None:
    """Call ``hook`` for ``ctx``; ``None`` when it succeeded, else its failed attempt."""
    try:
        call(hook.handler, ctx)
        if ctx.has_session:
            ctx.session.flush()
    except Exception as exc:  # noqa: BLE001 - any hook error fails the attempt
        info = failure_info(exc)
        return Failed(
            step_name=FINISH_UNIT,
            journal=(),
            failure=info.message,
            error_type=info.error_type,
            traceback=info.traceback,
            backoff=hook.retry_backoff,
            max_attempts=hook.max_retries,
        )
    return None
