"""Benchmarks of durable-sa and of peer libraries, run as ``python -m benchmarks.…``."""
