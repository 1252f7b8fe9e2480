"""durable-sa's Celery backend: durable steps run as tasks of your own Celery app.

``Durable(engine, backend="celery", backend_options={"app": celery_app})`` relays jobs
through the outbox to Celery; :func:`install` registers the task that runs them on the
same app, for your Celery workers.
"""

from durable_sa_celery.backend import TASK_NAME, CeleryBackend
from durable_sa_celery.settings import settings
from durable_sa_celery.task import install

__all__ = ["TASK_NAME", "CeleryBackend", "install", "settings"]
