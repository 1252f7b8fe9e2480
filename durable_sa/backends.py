"""The plugin API: what a queue backend implements and what it may build on.

- :class:`QueueBackend`: the protocol every backend satisfies, made of three roles
  (:class:`JobProducer`, :class:`JobConsumer`, :class:`QueueAdmin`); the jobs it hands
  out are :class:`ClaimedJob` values. A backend declares what more it can do in its
  :class:`Capabilities`, and implements the optional protocol each ability needs:
  :class:`BatchClaims` (claim several jobs at once) and :class:`InPlaceProducer` (insert
  a run's next job already claimed by the worker that wrote it, and let the applier
  write its rows in its group statement).
- :class:`JobsTableBackend`: the built-in backend, the jobs table.
- :class:`OutboxBackend` and :class:`Relay`: the base of relay backends (a broker beside
  the database) and the process that publishes their outbox; :class:`OutboxMessage` is
  a job as it travels through a broker.
- :data:`DEFER_DELAY`: how long a job a consumer cannot run here (a workflow or version
  it does not define) waits before it is offered again, the same for every backend.

See docs/backends/writing-your-own.md.
"""

from durable_sa.engine.delivery import DEFER_DELAY
from durable_sa.outbox.backend import OutboxBackend
from durable_sa.outbox.message import OutboxMessage
from durable_sa.outbox.relay import Relay
from durable_sa.queue.capabilities import Capabilities
from durable_sa.queue.jobs_table import JobsTableBackend
from durable_sa.queue.protocol import (
    BatchClaims,
    ClaimedJob,
    InPlaceProducer,
    JobConsumer,
    JobProducer,
    QueueAdmin,
    QueueBackend,
)

__all__ = [
    "DEFER_DELAY",
    "BatchClaims",
    "Capabilities",
    "ClaimedJob",
    "InPlaceProducer",
    "JobConsumer",
    "JobProducer",
    "JobsTableBackend",
    "OutboxBackend",
    "OutboxMessage",
    "QueueAdmin",
    "QueueBackend",
    "Relay",
]
