"""durable-sa: durable, crash-resumable workflows in your own SQLAlchemy database.

A workflow is a flat, ordered list of named steps. Each step's result is checkpointed in
a journal table; the job that drives the next step commits in the same transaction; a
process killed at any instant resumes from the first unfinished step.

Importing the package is cheap: the names below are loaded on first use (PEP 562), so
``import durable_sa.core.decide`` loads the pure core alone, without SQLAlchemy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from durable_sa.core.context import DurableContext
    from durable_sa.core.definition import (
        ChildStep,
        DurableWorkflow,
        LoopStep,
        ParallelEntry,
        ParallelStep,
        RouteStep,
        SignalStep,
        SleepStep,
        StepType,
        TaskStep,
        durable,
    )
    from durable_sa.core.registry import WorkflowRegistry, registry
    from durable_sa.core.status import RunStatus
    from durable_sa.errors import (
        BackendNotFound,
        DeadLetterNotFoundError,
        DefinitionChanged,
        DefinitionError,
        DurableError,
        IllegalTransition,
        InvalidArgumentError,
        PayloadError,
        ResultNotSerializableError,
        RunNotFoundError,
        StepNotTransactionalError,
        WaitTimeoutError,
        WorkflowNotRegisteredError,
    )
    from durable_sa.facade import Durable
    from durable_sa.outbox import OutboxBackend, Relay
    from durable_sa.queue.jobs_table import JobsTableBackend
    from durable_sa.queue.protocol import ClaimedJob, QueueBackend
    from durable_sa.results import (
        CancelResult,
        DeadLetterInfo,
        JobOutcome,
        PruneResult,
        ResumeResult,
        RunStatusSnapshot,
        StartResult,
    )
    from durable_sa.runtime.presence import WorkerInfo
    from durable_sa.store.models import (
        DeadLetter,
        Job,
        JournalEntry,
        OutboxEntry,
        WorkerRecord,
        WorkflowRun,
        metadata,
    )
    from durable_sa.worker import Worker, WorkerStats

_EXPORTS: Final[dict[str, str]] = {
    "BackendNotFound": "durable_sa.errors",
    "CancelResult": "durable_sa.results",
    "ChildStep": "durable_sa.core.definition",
    "ClaimedJob": "durable_sa.queue.protocol",
    "DeadLetter": "durable_sa.store.models",
    "DeadLetterInfo": "durable_sa.results",
    "DeadLetterNotFoundError": "durable_sa.errors",
    "DefinitionChanged": "durable_sa.errors",
    "DefinitionError": "durable_sa.errors",
    "Durable": "durable_sa.facade",
    "DurableContext": "durable_sa.core.context",
    "DurableError": "durable_sa.errors",
    "DurableWorkflow": "durable_sa.core.definition",
    "IllegalTransition": "durable_sa.errors",
    "InvalidArgumentError": "durable_sa.errors",
    "Job": "durable_sa.store.models",
    "JobOutcome": "durable_sa.results",
    "JobsTableBackend": "durable_sa.queue.jobs_table",
    "JournalEntry": "durable_sa.store.models",
    "LoopStep": "durable_sa.core.definition",
    "OutboxBackend": "durable_sa.outbox",
    "OutboxEntry": "durable_sa.store.models",
    "ParallelEntry": "durable_sa.core.definition",
    "ParallelStep": "durable_sa.core.definition",
    "PayloadError": "durable_sa.errors",
    "PruneResult": "durable_sa.results",
    "QueueBackend": "durable_sa.queue.protocol",
    "Relay": "durable_sa.outbox",
    "ResultNotSerializableError": "durable_sa.errors",
    "ResumeResult": "durable_sa.results",
    "RouteStep": "durable_sa.core.definition",
    "RunNotFoundError": "durable_sa.errors",
    "RunStatus": "durable_sa.core.status",
    "RunStatusSnapshot": "durable_sa.results",
    "SignalStep": "durable_sa.core.definition",
    "SleepStep": "durable_sa.core.definition",
    "StartResult": "durable_sa.results",
    "StepNotTransactionalError": "durable_sa.errors",
    "StepType": "durable_sa.core.definition",
    "TaskStep": "durable_sa.core.definition",
    "WaitTimeoutError": "durable_sa.errors",
    "Worker": "durable_sa.worker",
    "WorkerInfo": "durable_sa.runtime.presence",
    "WorkerRecord": "durable_sa.store.models",
    "WorkerStats": "durable_sa.worker",
    "WorkflowNotRegisteredError": "durable_sa.errors",
    "WorkflowRegistry": "durable_sa.core.registry",
    "WorkflowRun": "durable_sa.store.models",
    "durable": "durable_sa.core.definition",
    "metadata": "durable_sa.store.models",
    "registry": "durable_sa.core.registry",
}
"""Where each top-level name lives: imported on first use (PEP 562)."""

__version__ = "0.1.0"

__all__ = [
    "BackendNotFound",
    "CancelResult",
    "ChildStep",
    "ClaimedJob",
    "DeadLetter",
    "DeadLetterInfo",
    "DeadLetterNotFoundError",
    "DefinitionChanged",
    "DefinitionError",
    "Durable",
    "DurableContext",
    "DurableError",
    "DurableWorkflow",
    "IllegalTransition",
    "InvalidArgumentError",
    "Job",
    "JobOutcome",
    "JobsTableBackend",
    "JournalEntry",
    "LoopStep",
    "OutboxBackend",
    "OutboxEntry",
    "ParallelEntry",
    "ParallelStep",
    "PayloadError",
    "PruneResult",
    "QueueBackend",
    "Relay",
    "ResultNotSerializableError",
    "ResumeResult",
    "RouteStep",
    "RunNotFoundError",
    "RunStatus",
    "RunStatusSnapshot",
    "SignalStep",
    "SleepStep",
    "StartResult",
    "StepNotTransactionalError",
    "StepType",
    "TaskStep",
    "WaitTimeoutError",
    "Worker",
    "WorkerInfo",
    "WorkerRecord",
    "WorkerStats",
    "WorkflowNotRegisteredError",
    "WorkflowRegistry",
    "WorkflowRun",
    "durable",
    "metadata",
    "registry",
]


def __getattr__(name: str) -> object:
    """Import a top-level name from the module that holds it, on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        msg = f"module 'durable_sa' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The package's names, loaded or not."""
    return sorted({*globals(), *__all__})
