"""``wait_for_run`` and its asyncio twin, called directly on the engine's shell.

On PostgreSQL a notification ends the wait as soon as the run ends; on SQLite the
status is polled. A run that ends in another thread a moment after the wait began is
the common case; a timeout, an unknown run and a run that ended already are the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Self

import pytest
import sqlalchemy as sa

from durable_sa import Durable, InvalidArgumentError, RunNotFoundError, RunStatus, durable
from durable_sa.errors import WaitTimeoutError
from durable_sa.testing import drain
from durable_sa.waiting import wait_for_run, wait_for_run_async

if TYPE_CHECKING:
    from collections.abc import Iterator

QUICK = "waiting-quick"
ENDS_AFTER = 0.15  # seconds after the wait began


@pytest.fixture(autouse=True)
def quick() -> None:
    durable(QUICK).step("only", lambda ctx: "done")


def _durable(sa_engine: sa.Engine) -> Durable:
    engine = Durable(sa_engine)
    engine.create_tables()
    return engine


class Finisher:
    """Runs the engine's due jobs in a thread after ``delay``; when they had committed."""

    def __init__(self, engine: Durable, delay: float = ENDS_AFTER) -> None:
        self.committed_at: float | None = None
        self._engine = engine
        self._thread = threading.Timer(delay, self._finish)

    def _finish(self) -> None:
        drain(self._engine)
        self.committed_at = time.monotonic()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.cancel()
        self._thread.join(timeout=30)


@contextlib.contextmanager
def status_reads(sa_engine: sa.Engine) -> Iterator[list[float]]:
    """When ``wait_for_run`` read a run's status (it reads that one column alone)."""
    reads: list[float] = []

    def count(*args: object) -> None:  # conn, cursor, statement, parameters, context, many
        if str(args[2]).startswith("SELECT durable_runs.status \nFROM durable_runs"):
            reads.append(time.monotonic())

    sa.event.listen(sa_engine, "before_cursor_execute", count)
    try:
        yield reads
    finally:
        sa.event.remove(sa_engine, "before_cursor_execute", count)


def test_a_run_that_ends_meanwhile_ends_the_wait(engine: Durable) -> None:
    run_id = engine.start(QUICK).run_id
    with Finisher(engine) as finisher:
        status = wait_for_run(engine.shell, run_id, timeout=30)
    assert status is RunStatus.COMPLETED
    assert finisher.committed_at is not None


def test_on_postgresql_the_notification_ends_the_wait_at_once(pg_engine: sa.Engine) -> None:
    engine = _durable(pg_engine)
    run_id = engine.start(QUICK).run_id
    with status_reads(pg_engine) as reads, Finisher(engine) as finisher:
        status = wait_for_run(engine.shell, run_id, timeout=30)
        returned_at = time.monotonic()
    assert status is RunStatus.COMPLETED
    assert finisher.committed_at is not None
    # The status is read once before the run ends and once after the notification; the
    # next look without one would come a second after the first (the re-check).
    assert len(reads) == 2
    assert returned_at - finisher.committed_at < 0.5


def test_on_sqlite_the_status_is_polled(sqlite_engine: sa.Engine) -> None:
    engine = _durable(sqlite_engine)
    run_id = engine.start(QUICK).run_id
    with status_reads(sqlite_engine) as reads, Finisher(engine, delay=0.3):
        status = wait_for_run(engine.shell, run_id, timeout=30)
    assert status is RunStatus.COMPLETED
    # Reads at 0, 20, 60, 140, 300 ms... (the pause doubles from 20 ms, up to half a
    # second): a few reads, further and further apart, not one every 20 ms.
    assert 4 <= len(reads) <= 8
    gaps = [later - earlier for earlier, later in itertools.pairwise(reads)]
    assert gaps[2] >= 0.08


def test_a_run_that_ended_already_returns_at_once(engine: Durable) -> None:
    completed = engine.start(QUICK).run_id
    drain(engine)
    canceled = engine.start(QUICK).run_id
    engine.cancel(canceled)
    started = time.monotonic()
    assert wait_for_run(engine.shell, completed, timeout=0) is RunStatus.COMPLETED
    assert wait_for_run(engine.shell, canceled, timeout=None) is RunStatus.CANCELED
    assert time.monotonic() - started < 1


def test_a_run_still_going_at_the_timeout_raises(engine: Durable) -> None:
    run_id = engine.start(QUICK).run_id
    started = time.monotonic()
    with pytest.raises(WaitTimeoutError) as raised:
        wait_for_run(engine.shell, run_id, timeout=timedelta(milliseconds=300))
    waited = time.monotonic() - started
    assert raised.value.run_id == run_id
    assert raised.value.timeout == pytest.approx(0.3)
    assert raised.value.status == RunStatus.RUNNING
    assert 0.3 <= waited < 2
    assert engine.status(run_id).status == "running"  # waiting changes nothing


def test_another_run_ending_does_not_end_the_wait(engine: Durable) -> None:
    waited_for = engine.start(QUICK).run_id
    engine.admin.claim(worker="elsewhere")  # its job is held: it will not end meanwhile
    engine.start(QUICK)
    with Finisher(engine), pytest.raises(WaitTimeoutError):
        wait_for_run(engine.shell, waited_for, timeout=1.0)


def test_an_unknown_run_and_a_negative_timeout_are_refused(engine: Durable) -> None:
    with pytest.raises(RunNotFoundError) as raised:
        wait_for_run(engine.shell, 424242, timeout=5)
    assert raised.value.run_id == 424242
    run_id = engine.start(QUICK).run_id
    with pytest.raises(InvalidArgumentError, match="must not be negative"):
        wait_for_run(engine.shell, run_id, timeout=-1)


def test_async_waits_share_the_event_loop(engine: Durable) -> None:
    runs = [engine.start(QUICK).run_id for _ in range(2)]
    napped_at: list[float] = []

    async def nap() -> None:
        await asyncio.sleep(0.05)
        napped_at.append(time.monotonic())

    async def main() -> list[RunStatus]:
        napping = asyncio.create_task(nap())
        statuses = await asyncio.gather(
            *(wait_for_run_async(engine.shell, run_id, timeout=30) for run_id in runs)
        )
        await napping
        return list(statuses)

    with Finisher(engine, delay=0.5) as finisher:
        statuses = asyncio.run(main())
    assert statuses == [RunStatus.COMPLETED, RunStatus.COMPLETED]
    assert finisher.committed_at is not None
    # The other task ran while both waits were on: long before the runs ended.
    assert napped_at[0] < finisher.committed_at - 0.2


def test_the_async_wait_times_out_and_knows_unknown_runs(engine: Durable) -> None:
    run_id = engine.start(QUICK).run_id
    with pytest.raises(WaitTimeoutError):
        asyncio.run(wait_for_run_async(engine.shell, run_id, timeout=0.2))
    with pytest.raises(RunNotFoundError):
        asyncio.run(wait_for_run_async(engine.shell, 424242, timeout=5))
