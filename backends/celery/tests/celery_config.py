"""How the tests configure Celery: one function, shared by the test process and workers."""

from __future__ import annotations

from celery import Celery
from durable_sa_celery import settings

VISIBILITY_TIMEOUT = 6
"""Seconds before the broker hands a killed worker's unacknowledged message out again."""


def make_app(broker_url: str) -> Celery:
    """A Celery app on ``broker_url`` configured the way durable-sa needs it."""
    app = Celery("durable-sa-tests", broker=broker_url)
    app.conf.update(settings(visibility_timeout=VISIBILITY_TIMEOUT, restore_every=1))
    app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)
    return app


probe = make_app("redis://127.0.0.1:1/0")
"""An app no test connects to, for naming an app by its import path."""
