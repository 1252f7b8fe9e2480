"""The APP of the limits process test: a limited workflow whose steps record intervals.

``durable-sa worker tests.processes.limits_app:app`` runs it, on the database in
``$DURABLE_SA_WORKLOAD_URL``. Each run records, in the application table
``app_limit_intervals``, when its first step began (kept from the first execution) and
when its last step ran (the last execution): an interval inside the run's active time,
measured by the database's clock.
"""

from __future__ import annotations

import os
import time

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from durable_sa import Durable, DurableContext, durable
from durable_sa.testing.workload import DATABASE_URL_ENV

MAX_ACTIVE = 3
PER_KEY = 1

app_metadata = sa.MetaData()
intervals = sa.Table(
    "app_limit_intervals",
    app_metadata,
    sa.Column("run_id", sa.BigInteger, primary_key=True),
    sa.Column("key", sa.String(16)),
    sa.Column("began", sa.DateTime(timezone=True)),
    sa.Column("ended", sa.DateTime(timezone=True)),
)


def define(sa_engine: sa.Engine) -> None:
    """Register the limited workflow; its steps write to ``sa_engine``."""

    def begin(ctx: DurableContext) -> None:
        with sa_engine.begin() as conn:
            conn.execute(
                insert(intervals)
                .values(run_id=ctx.run_id, key=ctx.input["key"], began=sa.func.clock_timestamp())
                .on_conflict_do_nothing()
            )

    def work(_ctx: DurableContext) -> None:
        time.sleep(0.3)

    def end(ctx: DurableContext) -> None:
        with sa_engine.begin() as conn:
            conn.execute(
                intervals.update()
                .where(intervals.c.run_id == ctx.run_id)
                .values(ended=sa.func.clock_timestamp())
            )

    durable("limited-proc", max_active=MAX_ACTIVE, max_active_per_key=PER_KEY).step(
        "begin", begin
    ).step("work", work).step("end", end)


def app() -> Durable:
    """The engine a worker process runs."""
    sa_engine = sa.create_engine(os.environ[DATABASE_URL_ENV], pool_pre_ping=True)
    define(sa_engine)
    return Durable(sa_engine)
