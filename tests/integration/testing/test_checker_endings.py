"""The exhaustive checker reaches the jobs that end a run: finish jobs and
transactional compensators, on SQLite and PostgreSQL.

An ``on_finish`` hook and a ``transactional=True`` compensator write on ``ctx.session``,
in the transaction that journals them; every fault at every job (the finish job and the
compensation jobs included) leaves exactly one row each. The same writes made outside
the engine's transaction (a second connection) are caught at the job the fault hits; that
is shown on PostgreSQL only, since on SQLite a second writer waits for the engine's write
lock until it gives up.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from durable_sa import Durable, DurableContext, durable
from durable_sa.core.jobs import AdvanceJob, encode_payload
from durable_sa.store.models import jobs_table
from durable_sa.testing import check_every_fault

if TYPE_CHECKING:
    from collections.abc import Callable

APP = sa.MetaData()
marks = sa.Table(
    "endings_marks",
    APP,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("what", sa.String(32), nullable=False),
)


@pytest.fixture
def app(engine: Durable) -> Durable:
    """The test's engine (one per database) with the application's table."""
    APP.create_all(engine.sa_engine)
    return engine


def count(engine: Durable, run_id: int, what: str) -> int:
    with engine.sa_engine.connect() as conn:
        query = sa.select(sa.func.count()).where(marks.c.run_id == run_id, marks.c.what == what)
        return int(conn.execute(query.select_from(marks)).scalar_one())


def once(what: str) -> Callable[[Durable, int], None]:
    def check(engine: Durable, run_id: int) -> None:
        written = count(engine, run_id, what)
        assert written == 1, f"run {run_id} wrote {what!r} {written} times"

    return check


def in_session(what: str) -> Callable[[DurableContext], None]:
    def write(ctx: DurableContext) -> None:
        ctx.session.execute(sa.insert(marks).values(run_id=ctx.run_id, what=what))

    return write


def outside(sa_engine: sa.Engine, what: str) -> Callable[[DurableContext], None]:
    """BUG: the write commits on its own connection, whatever happens to the job."""

    def write(ctx: DurableContext) -> None:
        with sa_engine.begin() as conn:
            conn.execute(sa.insert(marks).values(run_id=ctx.run_id, what=what))

    return write


def refuse(ctx: DurableContext) -> None:
    msg = "the carrier refuses the parcel"
    raise RuntimeError(msg)


def define(
    name: str, *, release: Callable[[DurableContext], None], end: Callable[[DurableContext], None]
) -> None:
    durable(name).step(
        "reserve", lambda ctx: "reserved", compensate=release, transactional=True
    ).step("ship", refuse, max_retries=1).on_finish(end)


def test_every_fault_at_every_job_writes_the_rollback_and_the_ending_once(app):
    define("endings-ok", release=in_session("release"), end=in_session("end"))
    played = check_every_fault(
        app, "endings-ok", invariants=[once("release"), once("end")], concurrent=True
    )
    # reserve, ship, undo reserve, the finish job: 4 jobs x 4 faults, plus the clean run
    assert played >= 1 + 4 * 4


@pytest.fixture
def pg(pg_engine: sa.Engine) -> Durable:
    """A durable engine with the application's table on PostgreSQL."""
    engine = Durable(pg_engine)
    engine.create_tables()
    APP.create_all(pg_engine)
    return engine


@pytest.mark.parametrize("buggy", ["release", "end"])
def test_a_write_outside_the_engine_transaction_is_caught(pg, buggy):
    app = pg
    writers = {
        what: outside(app.sa_engine, what) if what == buggy else in_session(what)
        for what in ("release", "end")
    }
    define("endings-bug", release=writers["release"], end=writers["end"])
    with pytest.raises(AssertionError, match=f"wrote '{buggy}' 2 times"):
        check_every_fault(
            app, "endings-bug", invariants=[once("release"), once("end")], concurrent=False
        )


def test_a_job_left_behind_is_named_in_the_report(app):
    """The report says which job outlived its run: kind, step, holder, due time, attempts,
    which is where a search for the engine's mistake starts."""
    later = datetime(2031, 1, 1, tzinfo=UTC)

    def leave_a_job(ctx: DurableContext) -> None:
        with app.sa_engine.begin() as conn:
            conn.execute(
                sa.insert(jobs_table).values(
                    kind="advance",
                    run_id=ctx.run_id,
                    workflow_name="endings-stray",
                    payload=encode_payload(AdvanceJob(run_id=ctx.run_id, step_index=0)),
                    available_at=later,
                )
            )

    durable("endings-stray").step("reserve", leave_a_job)
    with pytest.raises(AssertionError) as caught:
        check_every_fault(app, "endings-stray")
    assert re.search(
        r"broke a property: 1 job\(s\) were left behind after the run ended: job \d+ "
        r"\(advance step 'reserve' of run \d+, not claimed, due at 2031-01-01 00:00:00"
        r"(\+00:00)?, 0 attempt\(s\)\)\n",
        str(caught.value),
    )
