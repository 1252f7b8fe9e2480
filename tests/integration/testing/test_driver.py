"""The fault-injecting driver and the fake clock, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from durable_sa import Durable, DurableContext, InvalidArgumentError, JournalEntry, durable
from durable_sa.testing import Driver, FakeClock, faults, pending_jobs
from tests.integration.helpers import get_run


class Base(DeclarativeBase):
    pass


class Ledger(Base):
    __tablename__ = "drv_ledger"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def driven(sa_engine: sa.Engine, clock: FakeClock) -> Durable:
    durable_engine = Durable(sa_engine, clock=clock)
    durable_engine.create_tables()
    Base.metadata.create_all(sa_engine)
    return durable_engine


def journal(durable_engine: Durable, run_id: int) -> list[str]:
    with Session(durable_engine.sa_engine) as session:
        return list(
            session.scalars(
                sa.select(JournalEntry.step_id)
                .where(JournalEntry.run_id == run_id)
                .order_by(JournalEntry.id)
            )
        )


def counting(calls: list[str], name: str):
    def handler(ctx: DurableContext) -> str:
        calls.append(name)
        return name

    return handler


def test_fake_clock_moves_only_forward() -> None:
    clock = FakeClock(datetime(2030, 5, 1, tzinfo=UTC))
    assert clock() == datetime(2030, 5, 1, tzinfo=UTC)
    assert clock.advance(60) == datetime(2030, 5, 1, 0, 1, tzinfo=UTC)
    clock.advance(timedelta(hours=1))
    clock.set(datetime(2030, 6, 1, tzinfo=UTC))
    assert clock() == datetime(2030, 6, 1, tzinfo=UTC)
    with pytest.raises(InvalidArgumentError):
        clock.advance(-1)
    with pytest.raises(InvalidArgumentError):
        clock.set(datetime(2030, 1, 1, tzinfo=UTC))
    with pytest.raises(InvalidArgumentError):
        FakeClock(datetime(2030, 1, 1))  # noqa: DTZ001 - naive on purpose


def test_driver_needs_a_fake_clock(sa_engine: sa.Engine) -> None:
    with pytest.raises(Exception, match="FakeClock"):
        Driver(Durable(sa_engine))


def test_crash_after_phase_a_reruns_the_handler_and_journals_once(driven: Durable) -> None:
    calls: list[str] = []
    durable("d-crash").step("a", counting(calls, "a")).step("b", counting(calls, "b"))
    run_id = driven.start("d-crash").run_id
    driver = Driver(driven)
    driver.apply(faults.CrashAfterPhaseA(), run_id)
    assert calls == ["a"]
    assert journal(driven, run_id) == []  # nothing committed...
    assert get_run(driven, run_id).current_step == 0
    assert pending_jobs(driven) == 1  # ...and the job comes back
    driver.apply(faults.Deliver(), run_id)
    assert calls == ["a", "a"]  # at-least-once: the handler ran again
    assert journal(driven, run_id) == ["a"]
    assert driver.trace[0].startswith("job 1 (run step 'a' of run")
    assert "crashed after its handlers ran" in driver.trace[0]


def test_crash_after_commit_and_duplicates_are_harmless(driven: Durable) -> None:
    calls: list[str] = []
    durable("d-dup").step("a", counting(calls, "a")).step("b", counting(calls, "b"))
    run_id = driven.start("d-dup").run_id
    driver = Driver(driven)
    driver.apply(faults.CrashAfterCommit(), run_id)  # a, then a redelivered copy
    assert pending_jobs(driven) == 2
    driver.apply(faults.DuplicateDelivery(), run_id)  # the stale copy of a, twice
    driver.apply(faults.Deliver(), run_id)  # b
    assert calls == ["a", "b"]
    assert journal(driven, run_id) == ["a", "b"]
    assert get_run(driven, run_id).status == "completed"
    assert pending_jobs(driven) == 0


def test_concurrent_duplicate_journals_once(driven: Durable) -> None:
    calls: list[str] = []
    durable("d-conc").step("a", counting(calls, "a")).step("b", counting(calls, "b"))
    run_id = driven.start("d-conc").run_id
    driver = Driver(driven)
    driver.apply(faults.ConcurrentDuplicate(), run_id)
    assert 1 <= calls.count("a") <= 2
    assert journal(driven, run_id) == ["a"]
    assert pending_jobs(driven) == 1
    driver.settle(run_id, lambda *_: (False, None))
    assert get_run(driven, run_id).status == "completed"


def test_a_crashed_transactional_step_leaves_no_write(driven: Durable) -> None:
    def pay(ctx: DurableContext) -> int:
        ctx.session.add(Ledger(run_id=ctx.run_id))
        return 1

    durable("d-tx").step("pay", pay, transactional=True)
    run_id = driven.start("d-tx").run_id
    driver = Driver(driven)
    driver.apply(faults.CrashAfterPhaseA(), run_id)
    with Session(driven.sa_engine) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Ledger)) == 0
    driver.apply(faults.Deliver(), run_id)
    with Session(driven.sa_engine) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Ledger)) == 1


def test_clock_jumps_and_signals(driven: Durable, clock: FakeClock) -> None:
    durable("d-time").sleep("nap", timedelta(hours=1)).wait_for_signal(
        "gate", "go", timeout=timedelta(days=1)
    ).step("after", lambda ctx: ctx.results["gate"])
    run_id = driven.start("d-time").run_id
    driver = Driver(driven)
    driver.apply(faults.Signal("go", "early"), run_id)  # nobody waits yet
    driver.apply(faults.Deliver(), run_id)  # the sleep step
    driver.apply(faults.Deliver(), run_id)  # nothing due: the run sleeps
    driver.apply(faults.ClockJump(3_600), run_id)
    driver.apply(faults.Deliver(), run_id)  # the gate parks the run
    driver.apply(faults.Signal("go", "on time"), run_id)
    driver.apply(faults.Signal("go", "twice"), run_id)
    driver.run_due()
    assert get_run(driven, run_id).result == {"gate": "on time", "after": "on time"}
    assert driver.trace == [
        "signal 'go' was sent: refused (nobody waited for it)",
        f"job 1 (run step 'nap' of run {run_id}, attempt 1): delivered normally",
        "(no job was due, so nothing was delivered normally)",
        "the clock jumped forward 1 hour(s)",
        f"job 2 (run step 'gate' of run {run_id}, attempt 1): delivered normally",
        "signal 'go' was sent: accepted",
        "signal 'go' was sent: refused (nobody waited for it)",
    ]
    assert [a.data for a in driver.accepted] == ["on time"]
    assert clock() == datetime(2030, 1, 1, 1, tzinfo=UTC)


def test_settle_sends_awaited_signals_before_moving_time(driven: Durable) -> None:
    durable("d-settle").wait_for_signal("gate", "go", timeout=60).step(
        "after", lambda ctx: ctx.results["gate"]
    )
    run_id = driven.start("d-settle").run_id
    driver = Driver(driven)
    driver.settle(run_id, lambda rid, step, signal: (signal == "go", {"ok": True}))
    assert get_run(driven, run_id).status == "completed"

    other = driven.start("d-settle").run_id
    driver.settle(other, lambda *_: (False, None))  # nobody answers: the deadline passes
    run = get_run(driven, other)
    assert run.status == "failed"
    assert run.error is not None
    assert "timed out" in run.error


def test_what_the_driver_played_replays_the_same_path(driven: Durable) -> None:
    """``Driver.played`` records settling too: playing it again takes a run the same way.

    The exhaustive checker relies on it to reach the n-th job of a fault-free run.
    """
    calls: list[str] = []

    def refuse(ctx: DurableContext) -> None:
        msg = "refused"
        raise RuntimeError(msg)

    durable("d-path").step("a", counting(calls, "a"), compensate=lambda ctx: None).sleep(
        "nap", timedelta(minutes=5)
    ).wait_for_signal("ok", "go", timeout=timedelta(hours=1)).step("b", refuse, max_retries=1)
    first = driven.start("d-path").run_id
    recorder = Driver(driven)
    recorder.settle(first, lambda _run, _step, _signal: (True, {"n": 1}))
    events = [played.event for played in recorder.played]
    assert faults.ClockJump(300.0) in events
    assert faults.Signal("go", {"n": 1}) in events
    assert [p.undo for p in recorder.played if isinstance(p.event, faults.Deliver)][-2:] == [
        True,
        True,
    ]  # undo jobs, after 'b' failed

    again = driven.start("d-path").run_id
    replayer = Driver(driven)
    replayer.play(events, again)
    assert replayer.played == recorder.played
    assert get_run(driven, again).status == "failed"
    assert driven.status(again).results == driven.status(first).results
    assert calls == ["a", "a"]
