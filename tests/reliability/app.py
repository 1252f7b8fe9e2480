"""The workload the reliability tests run in real worker processes.

Every handler records each execution in ``rel_effects`` (through its own connection, so
the record survives even when the step's checkpoint does not): that is how the tests
count duplicate executions and overlapping ones.

The database comes from ``DURABLE_SA_DATABASE_URL``; ``REL_STEP_SECONDS`` sets how long
each handler works (a little, so kills land inside steps). ``DURABLE_SA_BACKEND``, when
set, is the URL of a queue backend to use instead of the jobs table (the relay backends'
kill tests run the same workload through their broker).
"""

from __future__ import annotations

import os
import random
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from durable_sa import Durable, DurableContext, durable

if TYPE_CHECKING:
    from collections.abc import Callable

effects_metadata = sa.MetaData()
effects = sa.Table(
    "rel_effects",
    effects_metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("run_id", sa.BigInteger, nullable=False),
    sa.Column("unit", sa.String(100), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=True),
)

STEP_SECONDS = float(os.environ.get("REL_STEP_SECONDS", "0.01"))

engine = Durable(
    sa.create_engine(
        os.environ.get("DURABLE_SA_DATABASE_URL", "sqlite:///reliability.sqlite"),
        pool_pre_ping=True,
    ),
    backend=os.environ.get("DURABLE_SA_BACKEND") or None,
)


def record(unit: str, seconds: float | None = None) -> Callable[[DurableContext], str]:
    """A handler that logs its start, works a little, and logs its end."""

    def handler(ctx: DurableContext) -> str:
        with engine.sa_engine.begin() as conn:
            effect_id = conn.execute(
                effects.insert()
                .values(run_id=ctx.run_id, unit=unit, pid=os.getpid(), started_at=time.time())
                .returning(effects.c.id)
            ).scalar_one()
        time.sleep(seconds if seconds is not None else random.uniform(0, 2 * STEP_SECONDS))  # noqa: S311
        with engine.sa_engine.begin() as conn:
            conn.execute(
                effects.update().where(effects.c.id == effect_id).values(finished_at=time.time())
            )
        return f"{unit}@{datetime.now(UTC).isoformat()}"

    return handler


def fail(ctx: DurableContext) -> None:
    """The saga's last step fails for good."""
    record("s4")(ctx)
    msg = "the last step always fails"
    raise RuntimeError(msg)


wf = durable("rel-seq")
for i in range(5):
    wf.step(f"s{i}", record(f"s{i}"))

durable("rel-par").step("a", record("a")).parallel(
    "p", [(name, record(f"p#{name}")) for name in ("x", "y", "z")]
).step("b", record("b")).step("c", record("c")).step("d", record("d"))

saga = durable("rel-saga")
for i in range(4):
    saga.step(f"s{i}", record(f"s{i}"), compensate=record(f"s{i}#compensate"))
saga.step("s4", fail, max_retries=1)

durable("rel-slow").step("slow", record("slow", seconds=3.0)).step("after", record("after"))
durable("rel-slower").step("slow", record("slow", seconds=8.0)).step("after", record("after"))

EXPECTED = {"rel-seq": "completed", "rel-par": "completed", "rel-saga": "failed"}
UNITS = {
    "rel-seq": {f"s{i}" for i in range(5)},
    "rel-par": {"a", "p#x", "p#y", "p#z", "p", "b", "c", "d"},
    "rel-saga": {*(f"s{i}" for i in range(5)), *(f"s{i}#compensate" for i in range(4))},
}
"""Every journal row a run of each workflow must end with, exactly once."""


def crash_the_worker(ctx: DurableContext) -> None:
    """Kill the worker process from inside the step, every time it runs."""
    record("boom")(ctx)
    os.kill(os.getpid(), 9)


durable("rel-crash").step("boom", crash_the_worker)
