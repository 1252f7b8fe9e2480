"""durable-sa: durable, crash-resumable workflows in your own SQLAlchemy database.

A workflow is a flat, ordered list of named steps. Each step's result is checkpointed in
a journal table; the job that drives the next step commits in the same transaction; a
process killed at any instant resumes from the first unfinished step.
"""

from durable_sa.context import DurableContext
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
from durable_sa.worker.presence import WorkerInfo

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
