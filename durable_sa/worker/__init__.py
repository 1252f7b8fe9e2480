"""The worker process: claims jobs, runs them, keeps its leases alive, stops gracefully."""

from durable_sa.worker.loop import Worker, WorkerStats

__all__ = ["Worker", "WorkerStats"]
