"""A crash-test workload: workflows that leave a row for every execution of every step.

Tests that kill, stop and restart real worker, relay or consumer processes run this
workload in them (``durable-sa worker durable_sa.testing.workload:app``, see
:mod:`durable_sa.testing.processes`) and then check what happened with the functions
here: every run ended as it must (:data:`EXPECTED`), every journal unit was written once
(:data:`UNITS`), no execution of a unit overlapped another (:func:`overlaps`).

Every handler records each execution in the ``rel_effects`` table through a connection
of its own, so the record survives even when the step's checkpoint does not: that is how
duplicate and overlapping executions are counted.

Workflows (:func:`define_workload` registers them):

- ``rel-seq``: five steps; ``rel-par``: a step, a parallel step of three, three steps;
- ``rel-saga``: four steps with compensators and a last step that always fails, so the
  run compensates and ends ``failed``;
- ``rel-slow`` and ``rel-slower``: a 3 s (8 s) step, then a quick one;
- ``rel-crash``: a step that kills its own worker process (SIGKILL), every time.

The process-side engine (:func:`app`) comes from the environment: the database from
:data:`DATABASE_URL_ENV`, a queue backend URL from :data:`BACKEND_ENV` (the jobs table
when unset), and how long each handler works from :data:`STEP_SECONDS_ENV` (a little,
so kills land inside steps).
"""

from __future__ import annotations

import os
import random
import signal
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy.orm import Session

from durable_sa.core.definition import durable
from durable_sa.core.status import TERMINAL_STATUSES
from durable_sa.errors import InvalidArgumentError
from durable_sa.facade import Durable
from durable_sa.store.models import (
    DeadLetter,
    Job,
    JournalEntry,
    WorkflowRun,
    outbox_table,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from durable_sa.core.context import DurableContext

DATABASE_URL_ENV: Final = "DURABLE_SA_DATABASE_URL"
"""The database of the engine :func:`app` builds."""
BACKEND_ENV: Final = "DURABLE_SA_BACKEND"
"""A queue backend's URL for :func:`app` (the relay backends' kill tests); unset: jobs table."""
STEP_SECONDS_ENV: Final = "DURABLE_SA_WORKLOAD_STEP_SECONDS"
"""About how long each handler works, in seconds (default 0.01)."""
DEFAULT_STEP_SECONDS: Final = 0.01

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
"""One row per execution of a unit: which process ran it, when it started and ended."""

EXPECTED: Final = {"rel-seq": "completed", "rel-par": "completed", "rel-saga": "failed"}
"""How a run of each checked workflow ends."""
UNITS: Final = {
    "rel-seq": {f"s{i}" for i in range(5)},
    "rel-par": {"a", "p#x", "p#y", "p#z", "p", "b", "c", "d"},
    "rel-saga": {*(f"s{i}" for i in range(5)), *(f"s{i}#compensate" for i in range(4))},
}
"""Every journal row a run of each workflow must end with, exactly once."""


def step_seconds_from_env() -> float:
    """How long handlers work, from :data:`STEP_SECONDS_ENV` (default 0.01 s)."""
    return float(os.environ.get(STEP_SECONDS_ENV) or DEFAULT_STEP_SECONDS)


def define_workload(sa_engine: sa.Engine, *, step_seconds: float | None = None) -> None:
    """Register the workload's workflows; their handlers record into ``sa_engine``.

    Call it again freely (a test's registry cleanup, another engine): each call replaces
    the definitions. ``step_seconds`` (default: :func:`step_seconds_from_env`) is the
    mean time a handler works, drawn at random between none and twice that.
    """
    mean = step_seconds_from_env() if step_seconds is None else step_seconds

    def record(unit: str, seconds: float | None = None) -> Callable[[DurableContext], str]:
        """A handler that logs its start, works a little, and logs its end."""

        def handler(ctx: DurableContext) -> str:
            with sa_engine.begin() as conn:
                effect_id = conn.execute(
                    effects.insert()
                    .values(run_id=ctx.run_id, unit=unit, pid=os.getpid(), started_at=time.time())
                    .returning(effects.c.id)
                ).scalar_one()
            pause = seconds if seconds is not None else random.uniform(0, 2 * mean)  # noqa: S311
            time.sleep(pause)
            with sa_engine.begin() as conn:
                conn.execute(
                    effects.update()
                    .where(effects.c.id == effect_id)
                    .values(finished_at=time.time())
                )
            return f"{unit}@{datetime.now(UTC).isoformat()}"

        return handler

    def fail(ctx: DurableContext) -> None:
        """The saga's last step fails for good."""
        record("s4")(ctx)
        msg = "the last step always fails"
        raise RuntimeError(msg)

    def crash_the_worker(ctx: DurableContext) -> None:
        """Kill the worker process from inside the step, every time it runs."""
        record("boom")(ctx)
        os.kill(os.getpid(), signal.SIGKILL)

    sequence = durable("rel-seq")
    for i in range(5):
        sequence.step(f"s{i}", record(f"s{i}"))

    durable("rel-par").step("a", record("a")).parallel(
        "p", [(name, record(f"p#{name}")) for name in ("x", "y", "z")]
    ).step("b", record("b")).step("c", record("c")).step("d", record("d"))

    saga = durable("rel-saga")
    for i in range(4):
        saga.step(f"s{i}", record(f"s{i}"), compensate=record(f"s{i}#compensate"))
    saga.step("s4", fail, max_retries=1)

    durable("rel-slow").step("slow", record("slow", seconds=3.0)).step("after", record("after"))
    durable("rel-slower").step("slow", record("slow", seconds=8.0)).step("after", record("after"))
    durable("rel-crash").step("boom", crash_the_worker)


def app() -> Durable:
    """The engine a worker or relay process runs, its workflows defined; see the module doc.

    ``durable-sa worker durable_sa.testing.workload:app`` calls it.

    Raises:
        InvalidArgumentError: :data:`DATABASE_URL_ENV` is not set.

    """
    url = os.environ.get(DATABASE_URL_ENV)
    if not url:
        msg = f"the workload's database comes from ${DATABASE_URL_ENV}, which is not set"
        raise InvalidArgumentError(msg)
    engine = Durable(
        sa.create_engine(url, pool_pre_ping=True),
        backend=os.environ.get(BACKEND_ENV) or None,
    )
    define_workload(engine.sa_engine)
    return engine


# ── what happened ───────────────────────────────────────────────────────────────


def prepare_database(url: str) -> str:
    """Create the engine's tables and the effects table in the database at ``url``."""
    sa_engine = sa.create_engine(url)
    try:
        Durable(sa_engine).create_tables()
        effects_metadata.create_all(sa_engine)
    finally:
        sa_engine.dispose()
    return url


def unpublished_outbox_rows(sa_engine: sa.Engine) -> int:
    """Outbox rows no relay has published: stranded, once every run has ended."""
    with Session(sa_engine) as session:
        return _count(
            session,
            sa.select(sa.func.count())
            .select_from(outbox_table)
            .where(outbox_table.c.published_at.is_(None)),
        )


def assert_runs_ended_as_expected(
    sa_engine: sa.Engine, run_ids: Mapping[str, Sequence[int]]
) -> None:
    """Each run of each workflow has its expected status and every unit journaled once.

    Raises:
        AssertionError: naming the first run that did not.

    """
    with Session(sa_engine) as session:
        statuses = dict(session.execute(sa.select(WorkflowRun.id, WorkflowRun.status)).all())
        journal: dict[int, list[str]] = {}
        for run_id, step_id in session.execute(
            sa.select(JournalEntry.run_id, JournalEntry.step_id)
        ):
            journal.setdefault(run_id, []).append(step_id)
    for name, ids in run_ids.items():
        for run_id in ids:
            if statuses.get(run_id) != EXPECTED[name]:
                msg = f"run {run_id} of {name} is {statuses.get(run_id)}, not {EXPECTED[name]}"
                raise AssertionError(msg)
            if sorted(journal.get(run_id, [])) != sorted(UNITS[name]):
                msg = f"run {run_id} of {name} journaled {sorted(journal.get(run_id, []))}"
                raise AssertionError(msg)


def wait_until_all_terminal(sa_engine: sa.Engine, run_ids: Sequence[int], timeout: float) -> int:
    """Wait until every run is terminal; how many are not when time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        with Session(sa_engine) as session:
            open_runs = _count(
                session,
                sa.select(sa.func.count())
                .select_from(WorkflowRun)
                .where(WorkflowRun.id.in_(run_ids), _not_terminal()),
            )
        if not open_runs or time.monotonic() > deadline:
            return open_runs
        time.sleep(0.5)


def summary(sa_engine: sa.Engine) -> dict[str, int]:
    """The counts a crash test reports and checks, over the whole database."""
    with Session(sa_engine) as session:
        executions = session.execute(
            sa.select(effects.c.run_id, effects.c.unit, sa.func.count()).group_by(
                effects.c.run_id, effects.c.unit
            )
        ).all()
        duplicate_journal = sa.select(sa.func.count()).select_from(
            sa.select(JournalEntry.run_id, JournalEntry.step_id)
            .group_by(JournalEntry.run_id, JournalEntry.step_id)
            .having(sa.func.count() > 1)
            .subquery()
        )
        return {
            "units_executed": len(executions),
            "duplicate_executions": sum(n - 1 for *_, n in executions if n > 1),
            "duplicate_journal_rows": _count(session, duplicate_journal),
            "jobs_left": _count(session, sa.select(sa.func.count()).select_from(Job)),
            "dead_letters": _count(session, sa.select(sa.func.count()).select_from(DeadLetter)),
            "non_terminal_runs": _count(
                session, sa.select(sa.func.count()).select_from(WorkflowRun).where(_not_terminal())
            ),
        }


def overlaps(sa_engine: sa.Engine) -> int:
    """Pairs of executions of the same unit of the same run that ran at the same time."""
    with Session(sa_engine) as session:
        rows = session.execute(
            sa.select(
                effects.c.run_id, effects.c.unit, effects.c.started_at, effects.c.finished_at
            ).order_by(effects.c.run_id, effects.c.unit, effects.c.started_at)
        ).all()
    count = 0
    previous: tuple[int, str, float] | None = None
    for run_id, unit, started, finished in rows:
        end = finished if finished is not None else float("inf")
        if previous is not None and previous[:2] == (run_id, unit) and started < previous[2]:
            count += 1
        if previous is None or previous[:2] != (run_id, unit):
            previous = (run_id, unit, end)
        else:
            previous = (run_id, unit, max(previous[2], end))
    return count


def _not_terminal() -> sa.ColumnElement[bool]:
    return WorkflowRun.status.notin_([str(status) for status in TERMINAL_STATUSES])


def _count(session: Session, query: sa.Select[Any]) -> int:
    return int(session.scalar(query) or 0)
