"""The Celery settings durable-sa relies on, as one mapping to merge into an app's conf.

``app.conf.update(durable_sa_celery.settings(visibility_timeout=...))`` sets:

- ``task_acks_late``: a message is acknowledged after its task returned, that is after
  the step's checkpoint committed (the task sets it too; this makes it the default).
- ``worker_prefetch_multiplier=1``: a worker holds no message it is not running, so no
  message waits unacknowledged in a buffer long enough to be handed out twice.
- ``broker_transport_options`` for the Redis and SQS transports: the visibility timeout
  (longer than any step), and on the Redis transport how often unacknowledged messages
  of dead workers are looked for (kombu >= 5.7 reads ``unacked_restore_interval`` and
  ``unacked_restore_throttle``; older kombu ignores them and looks about every 100 s),
  and how long a dead worker's hold on that sweep's lock may last.
"""

from __future__ import annotations

from typing import Any


def settings(*, visibility_timeout: float = 3600.0, restore_every: float = 10.0) -> dict[str, Any]:
    """Celery configuration for durable jobs; merge it with ``app.conf.update(...)``.

    ``visibility_timeout``: seconds before the broker hands an unacknowledged message
    out again; it must be longer than your longest step. ``restore_every``: seconds
    between two looks for the messages of dead workers (Redis transport).
    """
    every = max(1, round(restore_every))
    return {
        "task_acks_late": True,
        "worker_prefetch_multiplier": 1,
        "broker_transport_options": {
            "visibility_timeout": visibility_timeout,
            "unacked_restore_interval": every,
            "unacked_restore_throttle": 1,
            "unacked_mutex_expire": max(every * 2, 10),
        },
    }
