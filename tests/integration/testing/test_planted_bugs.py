"""Planted bugs: ``check_workflow`` finds each one, and passes its correct twin.

Each planted bug is one a durable workflow really gets wrong, each twin the usual fix:

- a handler that charges again on every redelivery, vs. one keyed by the run id;
- a compensator that refunds again when it is re-run, vs. one keyed by the run id;
- a step whose result depends on the wall clock, vs. one that takes the time from the
  run's input;
- a nine-step saga whose refund (the compensator of its fifth step) is not idempotent,
  vs. one keyed by the run id: found by ``exhaustive=True``, which plays every fault at
  every job of the fault-free run, compensation jobs included.

The handlers write to the application's own tables through their own connections (as a
payment client would call its provider), and the invariants count those rows. Every
check uses the default example budget (``max_examples=100``) on a real SQLite file.

The options beyond the budget, and why:

- ``max_events=4`` on every check, bugs and twins alike: five simulated crashes of one
  job exceed the engine's default ``max_job_attempts`` (5), so the engine dead-letters
  it, as designed, and the checker reports even a correct workflow as broken (about 4
  checks in 10 with the default ``max_events=12``). Four events cannot do that, and no
  bug here needs more than three.
- ``concurrent=False`` for the bugs: whether two concurrent deliveries both run a
  handler depends on thread timing, so a failure found that way may not reproduce, and
  hypothesis then raises ``FlakyFailure`` instead of the checker's ``AssertionError``.
  The twins keep concurrent duplicates: they must survive them.
- ``derandomize=True`` for the bugs: the double refund needs three events in a row (two
  deliveries, then a crash of the compensation), which a random 100-example run of
  at-most-4-event schedules draws about 2 times in 3. A fixed sequence makes the test
  say the same thing every time; the twins stay random, so each run tries new schedules.
- hypothesis's explain phase is off: after a failure it replays examples under a line
  tracer (through the whole engine) only to point at the checker's own lines, which
  takes a found bug from about 2 s to about 30 s.
"""

from __future__ import annotations

import ast
import json
import re
import string
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from hypothesis import Phase, settings
from hypothesis import strategies as st
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from durable_sa import Durable, DurableContext, durable
from durable_sa.testing import check_every_fault, check_workflow, faults, replay

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from durable_sa.testing.faults import Event

# ── the application's own tables ─────────────────────────────────────────────────

APP = sa.MetaData()
charges = sa.Table(
    "app_charges",
    APP,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("amount_cents", sa.Integer, nullable=False),
    # The payment provider's idempotency key: NULL when the caller sends none.
    sa.Column("idempotency_key", sa.String(64), unique=True),
)
refunds = sa.Table(
    "app_refunds",
    APP,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("amount_cents", sa.Integer, nullable=False),
    sa.Column("idempotency_key", sa.String(64), unique=True),
)

# ── inputs and signals as they come in real life ─────────────────────────────────

ORDERS = st.fixed_dictionaries(
    {
        "order_id": st.integers(min_value=1, max_value=10**9),
        "customer": st.text(string.ascii_lowercase, min_size=1, max_size=12),
        "amount_cents": st.integers(min_value=1, max_value=500_000),
        "postcode": st.from_regex(r"[0-9]{4}", fullmatch=True),
    }
)
TIMED_ORDERS = st.fixed_dictionaries(
    {
        "order_id": st.integers(min_value=1, max_value=10**9),
        "amount_cents": st.integers(min_value=1, max_value=500_000),
        "ordered_at": st.datetimes(
            min_value=datetime(2024, 1, 1),  # noqa: DTZ001 - hypothesis wants naive bounds
            max_value=datetime(2035, 12, 31),  # noqa: DTZ001
            timezones=st.just(UTC),
        ).map(datetime.isoformat),
    }
)
APPROVALS = {
    "manager-approval": st.fixed_dictionaries(
        {"approved": st.booleans(), "by": st.sampled_from(["ada", "grace", "linus"])}
    )
}

BUG_OPTIONS: dict[str, Any] = {"max_events": 4, "concurrent": False, "derandomize": True}
TWIN_OPTIONS: dict[str, Any] = {"max_events": 4}


# ── fixtures ─────────────────────────────────────────────────────────────────────


@pytest.fixture
def engine(sqlite_engine: sa.Engine) -> Durable:
    """One engine per test, on a fresh SQLite file, with durable-sa's and the app's tables."""
    durable_engine = Durable(sqlite_engine)
    durable_engine.create_tables()
    APP.create_all(sqlite_engine)
    return durable_engine


settings.register_profile(
    "durable-sa-planted-bugs",
    parent=settings.get_profile("default"),
    phases=[phase for phase in Phase if phase is not Phase.explain],
)


@pytest.fixture(autouse=True)
def _no_explain_phase() -> Iterator[None]:
    previous = settings.get_current_profile_name()
    settings.load_profile("durable-sa-planted-bugs")
    yield
    settings.load_profile(previous)


# ── handlers: the planted bugs and their fixes ───────────────────────────────────


def charge_every_time(sa_engine: sa.Engine) -> Callable[[DurableContext], dict[str, Any]]:
    """BUG: charges the card on every execution; a redelivery charges it again."""

    def charge(ctx: DurableContext) -> dict[str, Any]:
        with sa_engine.begin() as conn:
            conn.execute(
                sa.insert(charges).values(run_id=ctx.run_id, amount_cents=ctx.input["amount_cents"])
            )
        return {"charged_cents": ctx.input["amount_cents"]}

    return charge


def charge_once(sa_engine: sa.Engine) -> Callable[[DurableContext], dict[str, Any]]:
    """FIX: the charge is keyed by the run id; a repeat is ignored."""

    def charge(ctx: DurableContext) -> dict[str, Any]:
        with sa_engine.begin() as conn:
            conn.execute(
                sqlite_insert(charges)
                .values(
                    run_id=ctx.run_id,
                    amount_cents=ctx.input["amount_cents"],
                    idempotency_key=f"charge-{ctx.run_id}",
                )
                .on_conflict_do_nothing(index_elements=["idempotency_key"])
            )
        return {"charged_cents": ctx.input["amount_cents"]}

    return charge


def refund_every_time(sa_engine: sa.Engine) -> Callable[[DurableContext], None]:
    """BUG: refunds on every execution; a re-run compensator refunds twice."""

    def refund(ctx: DurableContext) -> None:
        with sa_engine.begin() as conn:
            conn.execute(
                sa.insert(refunds).values(
                    run_id=ctx.run_id, amount_cents=ctx.results["charge"]["charged_cents"]
                )
            )

    return refund


def refund_once(sa_engine: sa.Engine) -> Callable[[DurableContext], None]:
    """FIX: the refund is keyed by the run id; a repeat is ignored."""

    def refund(ctx: DurableContext) -> None:
        with sa_engine.begin() as conn:
            conn.execute(
                sqlite_insert(refunds)
                .values(
                    run_id=ctx.run_id,
                    amount_cents=ctx.results["charge"]["charged_cents"],
                    idempotency_key=f"refund-{ctx.run_id}",
                )
                .on_conflict_do_nothing(index_elements=["idempotency_key"])
            )

    return refund


def quote_at_wall_clock(ctx: DurableContext) -> dict[str, Any]:
    """BUG: the quote is stamped, and priced, by the wall clock at execution time."""
    return price(ctx.input["amount_cents"], datetime.now(UTC))


def quote_at_order_time(ctx: DurableContext) -> dict[str, Any]:
    """FIX: the time comes from the run's input, so every execution agrees."""
    return price(ctx.input["amount_cents"], datetime.fromisoformat(ctx.input["ordered_at"]))


def price(amount_cents: int, when: datetime) -> dict[str, Any]:
    weekend = when.weekday() >= 5  # Saturday and Sunday
    total = amount_cents + (amount_cents // 10 if weekend else 0)
    return {"quoted_at": when.isoformat(), "total_cents": total}


def ship_after_approval(ctx: DurableContext) -> str:
    decision = ctx.signal("approval")
    if not decision["approved"]:
        return f"held: {decision['by']} did not approve"
    return f"shipped order {ctx.input['order_id']}"


def no_courier(ctx: DurableContext) -> None:
    msg = f"no courier serves postcode {ctx.input['postcode']}"
    raise RuntimeError(msg)


# ── workflows ────────────────────────────────────────────────────────────────────


def define_checkout(name: str, charge: Callable[[DurableContext], dict[str, Any]]) -> str:
    """Charge, wait up to a day for a manager's approval, then ship (or hold)."""
    durable(name).step("charge", charge).wait_for_signal(
        "approval", "manager-approval", timeout=timedelta(days=1)
    ).step("ship", ship_after_approval)
    return name


def define_saga(
    name: str,
    charge: Callable[[DurableContext], dict[str, Any]],
    refund: Callable[[DurableContext], None],
) -> str:
    """Charge (refunded on rollback), then ship, which always fails: the saga rolls back."""
    durable(name).step("charge", charge, compensate=refund).step("ship", no_courier, max_retries=1)
    return name


def define_quote(name: str, quote: Callable[[DurableContext], dict[str, Any]]) -> str:
    """Quote a price, then invoice it."""
    durable(name).step("quote", quote).step(
        "invoice", lambda ctx: {"invoice_cents": ctx.results["quote"]["total_cents"]}
    )
    return name


# ── the application's invariants ─────────────────────────────────────────────────


def count(engine: Durable, table: sa.Table, run_id: int) -> int:
    with engine.sa_engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(table).where(table.c.run_id == run_id)
        return int(conn.execute(query).scalar_one())


def exactly_one_charge(engine: Durable, run_id: int) -> None:
    charged = count(engine, charges, run_id)
    assert charged == 1, f"run {run_id} charged the customer {charged} times"


def at_most_one_refund_per_charge(engine: Durable, run_id: int) -> None:
    charged, refunded = count(engine, charges, run_id), count(engine, refunds, run_id)
    assert refunded <= min(charged, 1), (
        f"run {run_id} refunded {refunded} times for {charged} charge(s)"
    )


# ── reading a failure ────────────────────────────────────────────────────────────


def failure(check: Callable[[], None]) -> str:
    """The message of the AssertionError ``check`` raises."""
    with pytest.raises(AssertionError) as caught:
        check()
    return str(caught.value)


def assert_readable(message: str, *, explanation: str, schedule: list[Event]) -> None:
    """The message explains the failure, shows the input, the schedule and the replay."""
    assert explanation in message
    assert re.search(r"^input: \{.*\}$", message, re.MULTILINE)
    if schedule:
        assert re.search(r"^  1\. job 1 \(run step 'charge' of run \d+", message, re.MULTILINE)
        numbered = re.findall(r"^  (\d+)\. ", message, re.MULTILINE)
        assert numbered == [str(i) for i in range(1, len(schedule) + 1)]
    else:
        assert "  (no faults at all: two fault-free runs disagree" in message
    assert "replay(engine, " in message
    shown = ", ".join(f"faults.{event!r}" for event in schedule)
    assert f"schedule=[{shown}]" in message  # shrunk to exactly this


def shown_input(message: str) -> dict[str, Any]:
    found = re.search(r"^input: (.*)$", message, re.MULTILINE)
    assert found is not None
    value: dict[str, Any] = json.loads(found[1])
    return value


def shown_signals(message: str) -> dict[str, Any]:
    found = re.search(r"^ +signals=(.*), invariants=\[[\w, ]*\]\)$", message, re.MULTILINE)
    assert found is not None
    value: dict[str, Any] = ast.literal_eval(found[1])
    return value


# ── a. a handler that is not idempotent ──────────────────────────────────────────


def test_a_handler_that_charges_on_every_redelivery_is_caught(engine):
    name = define_checkout("checkout-double-charge", charge_every_time(engine.sa_engine))
    invariants = [exactly_one_charge]
    message = failure(
        lambda: check_workflow(
            engine,
            name,
            inputs=ORDERS,
            signals=APPROVALS,
            invariants=invariants,
            **BUG_OPTIONS,
        )
    )

    schedule: list[Event] = [faults.CrashAfterPhaseA()]
    assert_readable(message, explanation="invariant exactly_one_charge failed", schedule=schedule)
    assert re.search(r"charged the customer 2 times", message)
    assert "crashed after its handlers ran, before committing" in message

    again = failure(
        lambda: replay(
            engine,
            name,
            input=shown_input(message),
            schedule=schedule,
            signals=shown_signals(message),
            invariants=invariants,
        )
    )
    assert "charged the customer 2 times" in again


def test_a_charge_keyed_by_the_run_survives_every_schedule(engine):
    name = define_checkout("checkout-charge-once", charge_once(engine.sa_engine))
    check_workflow(
        engine,
        name,
        inputs=ORDERS,
        signals=APPROVALS,
        invariants=[exactly_one_charge],
        **TWIN_OPTIONS,
    )


YES = faults.Signal("manager-approval", {"approved": True, "by": "ada"})
NO = faults.Signal("manager-approval", {"approved": False, "by": "grace"})
A_DAY = faults.ClockJump(86_400)
ORDER = {"order_id": 42, "customer": "bob", "amount_cents": 1999, "postcode": "1234"}


@pytest.mark.parametrize(
    ("schedule", "status", "ship"),
    [
        pytest.param(
            [YES, faults.Deliver(), faults.Deliver()],
            "completed",
            "held: grace did not approve",
            id="early",
        ),
        pytest.param(
            [faults.Deliver(), faults.Deliver(), YES], "completed", "shipped order 42", id="on-time"
        ),
        pytest.param(
            [faults.Deliver(), faults.Deliver(), YES, NO],
            "completed",
            "shipped order 42",
            id="twice",
        ),
        pytest.param(
            [faults.Deliver(), faults.Deliver(), A_DAY, faults.Deliver(), YES],
            "failed",
            None,
            id="late",
        ),
        pytest.param([faults.Deliver(), faults.Deliver(), A_DAY], "failed", None, id="never"),
        pytest.param(
            [faults.CrashAfterPhaseA(), faults.Deliver(), faults.Deliver(), YES, YES],
            "completed",
            "shipped order 42",
            id="crash-then-twice",
        ),
    ],
)
def test_the_charge_keyed_by_the_run_with_signals_early_late_twice_never(
    engine, schedule, status, ship
):
    """Signals early, on time, twice, late and never, spelled out one by one.

    The property test above draws a scheduled signal in about one example in ten (its
    schedules are short) and a deadline passing almost never, so these are played here.
    When the run still waits at the end, the checker sends the example's own signal data
    (here: not approved), so an early, refused signal ends in "held".
    """
    name = define_checkout("checkout-signals", charge_once(engine.sa_engine))
    run_id = replay(
        engine,
        name,
        input=ORDER,
        schedule=schedule,
        signals={"manager-approval": {"approved": False, "by": "grace"}},
        invariants=[exactly_one_charge],
    )
    snapshot = engine.status(run_id)
    assert snapshot.status == status
    assert (snapshot.result or {}).get("ship") == ship
    if status == "failed":
        assert "timed out waiting for signal 'manager-approval'" in (snapshot.error or "")


# ── b. a compensator that is not safe to re-run ──────────────────────────────────


def test_a_compensator_that_refunds_on_every_run_is_caught(engine):
    name = define_saga(
        "saga-double-refund", charge_once(engine.sa_engine), refund_every_time(engine.sa_engine)
    )
    invariants = [exactly_one_charge, at_most_one_refund_per_charge]
    message = failure(
        lambda: check_workflow(engine, name, inputs=ORDERS, invariants=invariants, **BUG_OPTIONS)
    )

    schedule: list[Event] = [faults.Deliver(), faults.Deliver(), faults.CrashAfterPhaseA()]
    assert_readable(
        message, explanation="invariant at_most_one_refund_per_charge failed", schedule=schedule
    )
    assert "refunded 2 times for 1 charge(s)" in message
    assert re.search(
        r"^  3\. job 3 \(undo step 'charge' of run \d+\): crashed", message, re.MULTILINE
    )

    again = failure(
        lambda: replay(
            engine, name, input=shown_input(message), schedule=schedule, invariants=invariants
        )
    )
    assert "refunded 2 times for 1 charge(s)" in again


def test_a_compensator_keyed_by_the_run_survives_every_schedule(engine):
    name = define_saga(
        "saga-refund-once", charge_once(engine.sa_engine), refund_once(engine.sa_engine)
    )
    check_workflow(
        engine,
        name,
        inputs=ORDERS,
        invariants=[exactly_one_charge, at_most_one_refund_per_charge],
        **TWIN_OPTIONS,
    )


# ── c. a step that depends on the wall clock ─────────────────────────────────────


def test_a_step_that_reads_the_wall_clock_is_caught(engine):
    name = define_quote("quote-wall-clock", quote_at_wall_clock)
    message = failure(lambda: check_workflow(engine, name, inputs=TIMED_ORDERS, **BUG_OPTIONS))

    # Two fault-free runs already disagree, so the schedule shrinks to nothing at all.
    schedule: list[Event] = []
    assert_readable(
        message,
        explanation="the outcome differs from a fault-free run with the same input",
        schedule=schedule,
    )
    assert re.search(r"^    with faults: completed .*\"quoted_at\": \"20", message, re.MULTILINE)
    assert re.search(r"^    fault-free:  completed .*\"quoted_at\": \"20", message, re.MULTILINE)

    again = failure(lambda: replay(engine, name, input=shown_input(message), schedule=schedule))
    assert "differs from a fault-free run" in again


def test_a_step_that_takes_the_time_from_its_input_survives_every_schedule(engine):
    name = define_quote("quote-order-time", quote_at_order_time)
    check_workflow(engine, name, inputs=TIMED_ORDERS, **TWIN_OPTIONS)


# ── d. a long saga whose refund, in the middle, is not safe to re-run ────────────

SAGA_STEPS = (
    "validate",
    "reserve-stock",
    "quote",
    "authorize",
    "charge",
    "invoice",
    "pack",
    "label",
)
"""Eight steps that complete, then ``ship``, which always fails: the saga rolls back."""

SAGA_JOBS = 9 + 8
"""Jobs of the fault-free run: one per step (ship fails at once), then one undo job per
completed step, ``validate``'s too (it has no compensator, so its job only moves on)."""


def insert_once(sa_engine: sa.Engine, table: sa.Table, **values: Any) -> None:
    """Insert a row keyed by ``values["idempotency_key"]``; a repeat is ignored."""
    insert = postgresql_insert if sa_engine.dialect.name == "postgresql" else sqlite_insert
    with sa_engine.begin() as conn:
        conn.execute(
            insert(table)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
        )


def charge_keyed(sa_engine: sa.Engine) -> Callable[[DurableContext], dict[str, Any]]:
    def charge(ctx: DurableContext) -> dict[str, Any]:
        amount = ctx.input["amount_cents"]
        insert_once(
            sa_engine,
            charges,
            run_id=ctx.run_id,
            amount_cents=amount,
            idempotency_key=f"c-{ctx.run_id}",
        )
        return {"charged_cents": amount}

    return charge


def refund_keyed(sa_engine: sa.Engine) -> Callable[[DurableContext], None]:
    def refund(ctx: DurableContext) -> None:
        amount = ctx.results["charge"]["charged_cents"]
        insert_once(
            sa_engine,
            refunds,
            run_id=ctx.run_id,
            amount_cents=amount,
            idempotency_key=f"r-{ctx.run_id}",
        )

    return refund


def define_long_saga(
    name: str,
    charge: Callable[[DurableContext], dict[str, Any]],
    refund: Callable[[DurableContext], None],
) -> str:
    """Nine steps; every step after ``validate`` is undone on rollback, ``charge`` by a refund."""
    flow = durable(name)
    for step in SAGA_STEPS:
        handler = charge if step == "charge" else (lambda ctx, step=step: f"{step} done")
        undo = refund if step == "charge" else (None if step == "validate" else nothing_to_undo)
        flow = flow.step(step, handler, compensate=undo)
    flow.step("ship", no_courier, max_retries=1)
    return name


def nothing_to_undo(ctx: DurableContext) -> None:
    """A compensator with no side effect: its journal row is the evidence it ran."""


SAGA_ORDER = {"order_id": 7, "customer": "ann", "amount_cents": 2500, "postcode": "9999"}


def test_a_nine_step_saga_refunding_on_every_run_is_caught_by_every_fault(engine):
    """The refund is the compensator of step 5 of 9: the 13th of 17 jobs.

    A random schedule reaches it only by delivering the twelve jobs before it first,
    which hypothesis with the default options almost never draws (100 examples of up to
    twelve events passed in each of our tries), and the one compensation example the
    hypothesis mode always plays crashes the first compensation (``label``), not this
    one. Every fault at every job finds it in about a second (69 examples in all when
    it passes: 1 + 17 jobs x 4 faults).
    """
    name = define_long_saga(
        "saga9-double-refund", charge_keyed(engine.sa_engine), refund_every_time(engine.sa_engine)
    )
    invariants = [exactly_one_charge, at_most_one_refund_per_charge]
    started = time.monotonic()
    message = failure(
        lambda: check_workflow(engine, name, inputs=ORDERS, invariants=invariants, exhaustive=True)
    )
    elapsed = time.monotonic() - started

    assert "invariant at_most_one_refund_per_charge failed" in message
    assert "refunded 2 times for 1 charge(s)" in message
    assert re.search(
        r"\(every fault at every job: job 13 of 17 got CrashAfterPhaseA\(\)\):", message
    )
    assert re.search(
        r"^  13\. job 13 \(undo step 'charge' of run \d+\): crashed after its handlers ran",
        message,
        re.MULTILINE,
    )
    assert re.search(
        r"^  12\. job 12 \(undo step 'invoice' of run \d+\): delivered", message, re.MULTILINE
    )
    assert shown_input(message) == {
        "amount_cents": 1,
        "customer": "a",
        "order_id": 1,
        "postcode": "0000",
    }
    schedule: list[Event] = [*[faults.Deliver()] * 12, faults.CrashAfterPhaseA()]
    assert f"schedule=[{', '.join(f'faults.{e!r}' for e in schedule)}]" in message
    assert elapsed < 60, f"exhaustive mode took {elapsed:.1f} s on a nine-step saga"

    again = failure(
        lambda: replay(
            engine, name, input=shown_input(message), schedule=schedule, invariants=invariants
        )
    )
    assert "refunded 2 times for 1 charge(s)" in again


def test_a_nine_step_saga_keyed_by_the_run_survives_every_fault_at_every_job(engine):
    name = define_long_saga(
        "saga9-refund-once", charge_keyed(engine.sa_engine), refund_keyed(engine.sa_engine)
    )
    played = check_every_fault(
        engine,
        name,
        inputs=SAGA_ORDER,
        invariants=[exactly_one_charge, at_most_one_refund_per_charge],
    )
    kinds = 4  # crash before commit, crash after commit, duplicate, concurrent duplicate
    assert played == 1 + SAGA_JOBS * kinds  # the fault-free run, then every fault at every job


@pytest.fixture
def pg(pg_engine: sa.Engine) -> Durable:
    """The same tables on a fresh PostgreSQL database."""
    durable_engine = Durable(pg_engine)
    durable_engine.create_tables()
    APP.create_all(pg_engine)
    return durable_engine


def test_every_fault_finds_the_double_refund_on_postgresql_too(pg):
    name = define_long_saga(
        "saga9-double-refund-pg", charge_keyed(pg.sa_engine), refund_every_time(pg.sa_engine)
    )
    message = failure(
        lambda: check_every_fault(
            pg, name, inputs=SAGA_ORDER, invariants=[at_most_one_refund_per_charge]
        )
    )
    assert "refunded 2 times for 1 charge(s)" in message
    assert re.search(
        r"^  13\. job 13 \(undo step 'charge' of run \d+\): crashed", message, re.MULTILINE
    )
