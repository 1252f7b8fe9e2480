"""The schema as users query it: durable-sa's ORM entities and their ``MetaData``.

Map them in your own queries (``select(WorkflowRun).where(...)``), include ``metadata``
in your Alembic ``target_metadata``, or join your rows to a run's. The hot path writes
through the same ``Table`` objects (``WorkflowRun.__table__`` ...), so your engine's
type processors, schema translation and events see every write.
"""

from durable_sa.store.models import (
    DeadLetter,
    Job,
    JournalEntry,
    OutboxEntry,
    PendingSignal,
    Schedule,
    Slots,
    WorkerRecord,
    WorkflowRun,
    metadata,
)

__all__ = [
    "DeadLetter",
    "Job",
    "JournalEntry",
    "OutboxEntry",
    "PendingSignal",
    "Schedule",
    "Slots",
    "WorkerRecord",
    "WorkflowRun",
    "metadata",
]
