"""The worker process: claims jobs, runs them, keeps its leases alive, stops gracefully."""

from durable_sa.worker.loop import Worker
from durable_sa.worker.stats import WorkerStats

__all__ = ["Worker", "WorkerStats"]
