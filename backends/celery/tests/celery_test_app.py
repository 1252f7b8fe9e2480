"""The Celery app the tests' Celery worker processes run, and its durable engine.

Everything comes from the environment, so worker processes and the test agree:
``CELERY_BROKER_URL`` (the test Redis server), ``DURABLE_SA_DATABASE_URL`` and
``DURABLE_SA_REDELIVER_AFTER`` and ``DURABLE_SA_DEFER_DELAY`` (seconds). Only
worker processes import this module: it registers workflows for good.
"""

from __future__ import annotations

import os
from datetime import timedelta

import sqlalchemy as sa
from celery_config import make_app
from durable_sa_celery import install

from durable_sa import Durable
from durable_sa.testing.scenarios import define_scenarios
from durable_sa.testing.workload import define_workload

app = make_app(os.environ["CELERY_BROKER_URL"])
engine = Durable(
    sa.create_engine(os.environ["DURABLE_SA_DATABASE_URL"], pool_pre_ping=True),
    backend="celery",
    backend_options={
        "app": app,
        "redeliver_after": timedelta(
            seconds=float(os.environ.get("DURABLE_SA_REDELIVER_AFTER", "900"))
        ),
    },
    defer_delay=timedelta(seconds=float(os.environ.get("DURABLE_SA_DEFER_DELAY", "5"))),
)
define_scenarios()
define_workload(engine.sa_engine)  # the crash tests' workflows
task = install(app, engine)
