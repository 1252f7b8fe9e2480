"""How the tests configure Celery: one function, shared by the test process and workers."""

from __future__ import annotations

from celery import Celery

VISIBILITY_TIMEOUT = 6
"""Seconds before the broker hands a killed worker's unacknowledged message out again."""


def make_app(broker_url: str) -> Celery:
    """A Celery app on ``broker_url`` configured the way durable-sa needs it."""
    app = Celery("durable-sa-tests", broker=broker_url)
    app.conf.update(
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": VISIBILITY_TIMEOUT,
            "unacked_restore_interval": 1,
            "unacked_restore_throttle": 1,
            # A worker killed while it held the restore lock must not block the
            # other workers' restores for the default 300 s.
            "unacked_mutex_expire": 10,
        },
        worker_hijack_root_logger=False,
    )
    return app


probe = make_app("redis://127.0.0.1:1/0")
"""An app no test connects to, for naming an app by its import path."""
