"""The transactional outbox: jobs relayed from the engine's database to an outside broker.

- :mod:`~durable_sa.outbox.message`: the job as it travels through a broker.
- :mod:`~durable_sa.outbox.backend`: :class:`OutboxBackend`, the base of relay backends
  (the producer half writes outbox rows; a subclass delivers through its broker), built
  on :mod:`~durable_sa.outbox.deliveries`, :mod:`~durable_sa.outbox.producer` and
  :mod:`~durable_sa.outbox.consumer`.
- :mod:`~durable_sa.outbox.relay`: :class:`Relay`, which publishes committed rows.
"""

from durable_sa.outbox.backend import OutboxBackend
from durable_sa.outbox.message import OutboxMessage, decode_message, encode_message
from durable_sa.outbox.relay import Relay, RelayStats

__all__ = [
    "OutboxBackend",
    "OutboxMessage",
    "Relay",
    "RelayStats",
    "decode_message",
    "encode_message",
]
