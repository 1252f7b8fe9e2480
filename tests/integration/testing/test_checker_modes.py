"""The checker's options beyond hypothesis's sampling, on SQLite and PostgreSQL.

- ``ignore_result_keys``: results that legitimately differ between runs (database
  ids) are left out of the outcome comparison, at any depth, children's too.
- The compensation example the hypothesis mode always plays: ``max_events=1`` can only
  ever touch the first job, so a failure found at a compensation job came from it.
- ``exhaustive=True`` walks every combination of the signal data alternatives given.
- ``before_example`` runs before every example, in both modes.
- Arguments the exhaustive mode cannot walk are refused with a message saying what to
  pass.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from hypothesis import strategies as st

from durable_sa import Durable, DurableContext, InvalidArgumentError, durable
from durable_sa.testing import check_every_fault, check_workflow, replay

if TYPE_CHECKING:
    from collections.abc import Callable

APP = sa.MetaData()
rows = sa.Table(
    "modes_rows",
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


def write(sa_engine: sa.Engine, run_id: int, what: str) -> int:
    """A row for ``run_id``, written on every execution; its new id."""
    with sa_engine.begin() as conn:
        result = conn.execute(sa.insert(rows).values(run_id=run_id, what=what))
        return int(result.inserted_primary_key[0])


def written(engine: Durable, run_id: int, what: str) -> int:
    with engine.sa_engine.connect() as conn:
        query = sa.select(sa.func.count()).where(rows.c.run_id == run_id, rows.c.what == what)
        return int(conn.execute(query.select_from(rows)).scalar_one())


def released_at_most_once(engine: Durable, run_id: int) -> None:
    count = written(engine, run_id, "release")
    assert count <= 1, f"run {run_id} released the stock {count} times"


def failure(check: Callable[[], object]) -> str:
    with pytest.raises(AssertionError) as caught:
        check()
    return str(caught.value)


def release_every_time(sa_engine: sa.Engine) -> Callable[[DurableContext], None]:
    """BUG: a compensator that releases again each time it runs."""

    def release(ctx: DurableContext) -> None:
        write(sa_engine, ctx.run_id, "release")

    return release


def refuse(ctx: DurableContext) -> None:
    msg = "the warehouse refuses the order"
    raise RuntimeError(msg)


# ── ignore_result_keys ───────────────────────────────────────────────────────────


def define_orders(sa_engine: sa.Engine) -> str:
    """A step returning a new row's id, beside a child whose result holds one deeper."""

    def ledger(ctx: DurableContext) -> dict[str, Any]:
        return {"entry": {"ledger_id": write(sa_engine, ctx.run_id, "ledger"), "cents": 5}}

    def order(ctx: DurableContext) -> dict[str, Any]:
        return {"order_row_id": write(sa_engine, ctx.run_id, "order"), "total": 10}

    durable("modes-ledger").step("book", ledger)
    durable("modes-order").step("order", order).child_workflow("ledger", "modes-ledger")
    return "modes-order"


def test_ids_that_differ_between_runs_are_left_out_of_the_comparison(app):
    name = define_orders(app.sa_engine)
    options: dict[str, Any] = {"max_examples": 3, "max_events": 2, "derandomize": True}

    message = failure(lambda: check_workflow(app, name, **options))
    assert "the outcome differs from a fault-free run" in message
    assert '"order_row_id": ' in message

    # Ignoring the top-level id only: the child's nested ledger_id still differs.
    message = failure(
        lambda: check_workflow(app, name, ignore_result_keys=["order_row_id"], **options)
    )
    assert '"order": {"total": 10}' in message
    assert '"ledger_id": ' in message
    assert "ignore_result_keys=['order_row_id'])" in message  # the replay call keeps it

    ignore = ["order_row_id", "ledger_id"]
    check_workflow(app, name, ignore_result_keys=ignore, **options)
    assert check_every_fault(app, name, ignore_result_keys=ignore, concurrent=False) > 1
    run_id = replay(app, name, ignore_result_keys=ignore)
    assert app.status(run_id).status == "completed"


# ── the compensation example of the hypothesis mode ──────────────────────────────


def test_the_hypothesis_mode_always_crashes_one_compensation(app):
    durable("modes-saga").step(
        "reserve", lambda ctx: "reserved", compensate=release_every_time(app.sa_engine)
    ).step("pack", refuse, max_retries=1)
    message = failure(
        lambda: check_workflow(
            app,
            "modes-saga",
            invariants=[released_at_most_once],
            max_examples=5,
            max_events=1,  # random schedules never get past the first job
            derandomize=True,
        )
    )
    assert "released the stock 2 times" in message
    assert "(a crash of the first compensation job of a fault-free run, always tried):" in message
    undo = re.search(
        r"^  3\. job 3 \(undo step 'reserve' of run \d+\): crashed", message, re.MULTILINE
    )
    assert undo is not None


def test_when_only_a_timeout_compensates_the_example_lets_the_deadline_pass(app):
    durable("modes-approval").step(
        "reserve", lambda ctx: "reserved", compensate=release_every_time(app.sa_engine)
    ).wait_for_signal("approval", "approve", timeout=timedelta(hours=1)).step(
        "ship", lambda ctx: "shipped"
    )
    message = failure(
        lambda: check_workflow(
            app,
            "modes-approval",
            signals={"approve": st.just(True)},  # approved: nothing is ever compensated
            invariants=[released_at_most_once],
            max_examples=5,
            max_events=1,
            derandomize=True,
        )
    )
    assert "released the stock 2 times" in message
    assert "the clock jumped forward 1 hour(s)" in message
    assert "signals sent when awaited: none" in message


# ── exhaustive: signal alternatives, before_example, arguments ───────────────────


def define_approval_saga(sa_engine: sa.Engine) -> str:
    """Reserve, wait for a decision, then ship or (when refused) roll back."""

    def ship(ctx: DurableContext) -> str:
        if not ctx.signal("approval")["approved"]:
            msg = "the manager refused"
            raise RuntimeError(msg)
        return "shipped"

    durable("modes-decision").step(
        "reserve", lambda ctx: "reserved", compensate=release_every_time(sa_engine)
    ).wait_for_signal("approval", "approve", timeout=timedelta(days=1)).step(
        "ship", ship, max_retries=1
    )
    return "modes-decision"


YES = {"approved": True}
NO = {"approved": False}


def test_every_signal_alternative_is_a_path_of_its_own(app):
    name = define_approval_saga(app.sa_engine)
    resets: list[int] = []

    def count_resets(engine: Durable) -> None:
        resets.append(1)

    played = check_every_fault(
        app,
        name,
        signals={"approve": [YES]},
        invariants=[released_at_most_once],
        before_example=count_resets,
    )
    assert played == 1 + 3 * 4  # jobs: reserve, the wait, ship; 4 faults each
    assert len(resets) == played  # before every example

    message = failure(
        lambda: check_workflow(
            app,
            name,
            signals={"approve": [YES, NO]},
            invariants=[released_at_most_once],
            exhaustive=True,
        )
    )
    assert "released the stock 2 times" in message
    assert "signals={'approve': {'approved': False}}" in message
    assert "signal 'approve' was sent: accepted" in message  # the prefix replays the path


def test_the_exhaustive_mode_refuses_what_it_cannot_walk(app):
    name = define_approval_saga(app.sa_engine)
    with pytest.raises(InvalidArgumentError, match=r"signals=\{'approve': \[data, \.\.\.\]\}"):
        check_every_fault(app, name, signals={"approve": "yes"})
    with pytest.raises(InvalidArgumentError, match="inputs= as one input"):
        check_workflow(app, name, inputs=[1, 2], exhaustive=True)  # type: ignore[list-item]


# ── invariants over shared tables ────────────────────────────────────────────────


def test_invariants_see_the_tables_as_the_checked_run_left_them(app):
    """An invariant over the whole table (every row, not only the run's) holds when
    before_example empties it: the fault-free run the outcome is compared with is made
    after the invariants, so its rows are not counted."""

    def take(ctx: DurableContext) -> None:
        ctx.session.execute(sa.insert(rows).values(run_id=ctx.run_id, what="take"))

    durable("modes-stock").step("take", take, transactional=True)

    def empty(engine: Durable) -> None:
        with engine.sa_engine.begin() as conn:
            conn.execute(sa.delete(rows))

    def one_take_in_all(engine: Durable, run_id: int) -> None:
        with engine.sa_engine.connect() as conn:
            takes = conn.execute(sa.select(sa.func.count()).select_from(rows)).scalar_one()
        assert takes == 1, f"{takes} takes in the table"

    options: dict[str, Any] = {"invariants": [one_take_in_all], "before_example": empty}
    check_workflow(app, "modes-stock", max_examples=5, max_events=2, derandomize=True, **options)
    assert check_every_fault(app, "modes-stock", concurrent=False, **options) > 1

    def more_takes(engine: Durable, run_id: int) -> None:
        msg = "always"  # a property the run breaks with no fault at all
        raise AssertionError(msg)

    message = failure(
        lambda: check_every_fault(app, "modes-stock", invariants=[more_takes], concurrent=False)
    )
    assert "the run breaks the property without any" in message
    assert "two fault-free runs disagree" not in message


# ── typed inputs ─────────────────────────────────────────────────────────────────


@dataclasses.dataclass(frozen=True)
class Parcel:
    weight_kg: float
    to: str


def test_both_modes_take_inputs_of_the_workflows_input_type(app):
    def label(ctx: DurableContext) -> str:
        parcel: Parcel = ctx.input
        return f"{parcel.weight_kg} kg to {parcel.to}"

    durable("modes-typed", input_type=Parcel).step("label", label)
    parcel = Parcel(weight_kg=1.5, to="Lyon")
    assert check_every_fault(app, "modes-typed", inputs=parcel, concurrent=False) > 1
    assert check_every_fault(app, "modes-typed", inputs=[parcel], concurrent=False) > 1
    check_workflow(
        app,
        "modes-typed",
        inputs=st.builds(Parcel, weight_kg=st.floats(0.1, 30), to=st.sampled_from(["Lyon"])),
        max_examples=5,
        max_events=2,
        derandomize=True,
    )
    check_workflow(app, "modes-typed", inputs=parcel, max_examples=3, derandomize=True)
