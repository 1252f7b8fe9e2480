"""durable-sa: durable, crash-resumable workflows in your own SQLAlchemy database.

A workflow is a flat, ordered list of named steps. Each step's result is checkpointed in
a journal table; the job that drives the next step commits in the same transaction; a
process killed at any instant resumes from the first unfinished step.

The top level holds what an application writes every day. The rest has a home of its
own: every exception in :mod:`durable_sa.errors`, the ORM entities in
:mod:`durable_sa.models`, result values in :mod:`durable_sa.results`, the plugin API in
:mod:`durable_sa.backends`, what an Alembic migration needs in :mod:`durable_sa.schema`,
the testing toolkit in :mod:`durable_sa.testing`.

Importing the package is cheap: the names below are loaded on first use (PEP 562), so
``import durable_sa.core.decide`` loads the pure core alone, without SQLAlchemy.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from durable_sa.core.context import DurableContext
    from durable_sa.core.definition import DurableWorkflow, ParallelEntry, durable
    from durable_sa.core.registry import registry
    from durable_sa.core.status import RunStatus
    from durable_sa.errors import (
        DefinitionError,
        DurableError,
        InvalidArgumentError,
        PayloadError,
        RunNotFoundError,
        WaitTimeoutError,
        WorkflowNotRegisteredError,
    )
    from durable_sa.facade import Durable
    from durable_sa.results import (
        CancelResult,
        ResumeResult,
        RunStatusSnapshot,
        SendResult,
        StartResult,
    )
    from durable_sa.store.models import DeadLetter, Job, JournalEntry, WorkflowRun, metadata
    from durable_sa.worker import Worker

# A library logs; the application decides where logs go. Without this, Python's last-resort
# handler would print every WARNING (a step's failed attempt, with its traceback) to
# stderr of a program that configured no logging. The CLI configures its own.
logging.getLogger(__name__).addHandler(logging.NullHandler())

_EXPORTS: Final[dict[str, str]] = {
    "CancelResult": "durable_sa.results",
    "DeadLetter": "durable_sa.store.models",
    "DefinitionError": "durable_sa.errors",
    "Durable": "durable_sa.facade",
    "DurableContext": "durable_sa.core.context",
    "DurableError": "durable_sa.errors",
    "DurableWorkflow": "durable_sa.core.definition",
    "InvalidArgumentError": "durable_sa.errors",
    "Job": "durable_sa.store.models",
    "JournalEntry": "durable_sa.store.models",
    "ParallelEntry": "durable_sa.core.definition",
    "PayloadError": "durable_sa.errors",
    "ResumeResult": "durable_sa.results",
    "RunNotFoundError": "durable_sa.errors",
    "RunStatus": "durable_sa.core.status",
    "RunStatusSnapshot": "durable_sa.results",
    "SendResult": "durable_sa.results",
    "StartResult": "durable_sa.results",
    "WaitTimeoutError": "durable_sa.errors",
    "Worker": "durable_sa.worker",
    "WorkflowNotRegisteredError": "durable_sa.errors",
    "WorkflowRun": "durable_sa.store.models",
    "durable": "durable_sa.core.definition",
    "metadata": "durable_sa.store.models",
    "registry": "durable_sa.core.registry",
}
"""Where each top-level name lives: imported on first use (PEP 562)."""

_ELSEWHERE: Final[dict[str, str]] = {
    **dict.fromkeys(
        (
            "BackendNotFound",
            "DeadLetterNotFoundError",
            "DefinitionChanged",
            "IllegalTransition",
            "PayloadTooLargeError",
            "ResultNotSerializableError",
            "RunTerminalError",
            "ScheduleNotFoundError",
            "StepNotTransactionalError",
            "UnknownWorkflowError",
            "WrongSessionError",
        ),
        "durable_sa.errors",
    ),
    **dict.fromkeys(
        (
            "DeadLetterInfo",
            "FiredTick",
            "JobOutcome",
            "PruneResult",
            "ResumeReason",
            "ScheduleInfo",
        ),
        "durable_sa.results",
    ),
    **dict.fromkeys(
        ("OutboxEntry", "PendingSignal", "Schedule", "WorkerRecord"), "durable_sa.models"
    ),
    **dict.fromkeys(
        ("JSONColumn", "StatusType", "UTCDateTime", "create_triggers", "drop_triggers"),
        "durable_sa.schema",
    ),
    **dict.fromkeys(
        ("ClaimedJob", "JobsTableBackend", "OutboxBackend", "QueueBackend", "Relay"),
        "durable_sa.backends",
    ),
    **dict.fromkeys(
        (
            "ChildStep",
            "LoopStep",
            "ParallelStep",
            "RouteStep",
            "SignalStep",
            "SleepStep",
            "StepType",
            "TaskStep",
        ),
        "durable_sa.core.definition",
    ),
    "WorkflowRegistry": "durable_sa.core.registry",
    "WorkerStats": "durable_sa.worker",
    "WorkerInfo": "durable_sa.runtime.presence",
}
"""Names a user may look for here that live in a module of their own: the error says where."""

__version__ = "0.1.0"

__all__ = [
    "CancelResult",
    "DeadLetter",
    "DefinitionError",
    "Durable",
    "DurableContext",
    "DurableError",
    "DurableWorkflow",
    "InvalidArgumentError",
    "Job",
    "JournalEntry",
    "ParallelEntry",
    "PayloadError",
    "ResumeResult",
    "RunNotFoundError",
    "RunStatus",
    "RunStatusSnapshot",
    "SendResult",
    "StartResult",
    "WaitTimeoutError",
    "Worker",
    "WorkflowNotRegisteredError",
    "WorkflowRun",
    "durable",
    "metadata",
    "registry",
]


def __getattr__(name: str) -> object:
    """Import a top-level name from the module that holds it, on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        home = _ELSEWHERE.get(name)
        where = f"; import it from {home}" if home else ""
        msg = f"module 'durable_sa' has no attribute {name!r}{where}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The package's names, loaded or not."""
    return sorted({*globals(), *__all__})
