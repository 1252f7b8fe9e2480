"""The Celery task that runs durable jobs, registered on the user's own Celery app.

Rules:
- ``acks_late``: Celery acknowledges the message after the task returns, that is after
  the step's checkpoint committed. ``reject_on_worker_lost``: a pool process killed
  mid-step puts its message back on the queue.
- The task never fails in Celery's eyes for a job's own reasons: a failing step is the
  engine's business (retries, compensation), a bad message is dead-lettered. It only
  gives the message back (``Reject(requeue=True)``, after ``retry_delay``) when the
  outcome could not be saved or the engine could not be reached at all.
- A prefork worker forks after importing the app: each pool process drops the
  database connections it inherited, so no two processes share a socket.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from celery.exceptions import Reject
from celery.signals import worker_process_init

from durable_sa.errors import InvalidArgumentError
from durable_sa.facade import Durable
from durable_sa_celery.backend import TASK_NAME, CeleryBackend

if TYPE_CHECKING:
    from collections.abc import Callable

    from celery import Celery, Task

logger = logging.getLogger(__name__)

_DEFAULT_RETRY_DELAY = 1.0


def install(app: Celery, engine: Durable | Callable[[], Durable], *, name: str = TASK_NAME) -> Task:
    """Register the task that runs durable jobs on ``app``; the task.

    ``engine`` is the durable engine whose jobs the task runs (its backend must be a
    :class:`CeleryBackend`), or a function returning it, called on first use. Import
    the module that calls this in your Celery workers (``celery -A yourapp worker``).
    """
    resolve: Callable[[], Durable] = (lambda: engine) if isinstance(engine, Durable) else engine

    def backend_of(durable: Durable) -> CeleryBackend:
        backend = durable.backend
        if not isinstance(backend, CeleryBackend):
            msg = f"the task {name!r} needs an engine with the celery backend, not {backend!r}"
            raise InvalidArgumentError(msg)
        return backend

    @app.task(  # type: ignore[untyped-decorator]
        name=name,
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        ignore_result=True,
    )
    def run_durable_job(task: Task, document: str) -> str:
        """Run one durable job; the outcome's name."""
        delivery: Any = task.request.delivery_info or {}
        backend: CeleryBackend | None = None
        try:
            durable = resolve()
            backend = backend_of(durable)
            outcome = backend.consume(
                durable, document, redelivered=bool(delivery.get("redelivered"))
            )
        except Exception as exc:  # NotPersisted, or no engine: the message goes back
            delay = backend.retry_delay if backend is not None else _DEFAULT_RETRY_DELAY
            logger.warning(
                "durable job message goes back to the queue in %.1f s: %s",
                delay,
                exc,
                extra={"action": "requeue"},
            )
            time.sleep(delay)
            raise Reject(str(exc), requeue=True) from exc
        return outcome.value

    def drop_inherited_connections(**_: object) -> None:
        try:
            resolve().sa_engine.dispose(close=False)
        except Exception:  # the task will report it on first use
            logger.warning("could not reset the database pool of a pool process", exc_info=True)

    worker_process_init.connect(drop_inherited_connections, weak=False)
    return run_durable_job
