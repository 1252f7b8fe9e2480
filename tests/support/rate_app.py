"""An application for the rate-limit process test: ``durable-sa worker tests.support.rate_app:app``.

Its one workflow runs a step under the shared rate limit ``proc-api``; the step records
when it began, by the database's clock on PostgreSQL (``clock_timestamp()``) and by the
engine's on SQLite, in the application's own table ``rate_starts``. The database comes
from ``DURABLE_SA_DATABASE_URL``.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from durable_sa import Durable, durable

if TYPE_CHECKING:
    from durable_sa import DurableContext

LIMIT_NAME = "proc-api"
metadata = sa.MetaData()
starts = sa.Table(
    "rate_starts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
)


def define(sa_engine: sa.Engine) -> None:
    """Register the workflow, its step recording its start on ``sa_engine``."""

    def call(ctx: DurableContext) -> int:
        with sa_engine.begin() as conn:
            now = (
                sa.func.clock_timestamp()
                if sa_engine.dialect.name == "postgresql"
                else sa.literal(datetime.now(UTC).replace(tzinfo=None))
            )
            conn.execute(
                sa.insert(starts).values(run_id=ctx.run_id, pid=os.getpid(), started_at=now)
            )
        return ctx.run_id

    durable("rated").step("call", call, rate_limit=LIMIT_NAME)


def app() -> Durable:
    """The worker's engine, on ``$DURABLE_SA_DATABASE_URL``."""
    sa_engine = sa.create_engine(os.environ["DURABLE_SA_DATABASE_URL"], pool_pre_ping=True)
    define(sa_engine)
    return Durable(sa_engine)
