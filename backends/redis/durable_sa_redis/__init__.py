"""durable-sa's Redis Streams backend: ``Durable(engine, backend="redis://host:6379/0")``.

Jobs are written to durable-sa's outbox in the engine's transaction; a relay publishes
them to one Redis stream per queue; durable-sa workers read the streams through a
consumer group and acknowledge a message only after the step it drove has committed.
"""

from durable_sa_redis.backend import RedisStreamsBackend

__all__ = ["RedisStreamsBackend"]
