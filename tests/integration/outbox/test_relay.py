"""The relay, called directly: it publishes due outbox rows, lapsed ones, lost ones; it prunes.

The broker is a list in this process (:class:`ListBroker`, a relay backend like Redis or
Celery, whose consumers are elsewhere): what the relay hands it is what it holds. The
outbox rows are real, on both databases, and time is a :class:`FakeClock`.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import attrs
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from durable_sa import Durable, InvalidArgumentError, durable, registry
from durable_sa.core.jobs import AdvanceJob, JobSpec
from durable_sa.outbox.backend import OutboxBackend
from durable_sa.outbox.relay import Relay
from durable_sa.queue.jobs_table import JobsTableBackend
from durable_sa.store.models import OutboxEntry
from durable_sa.testing import FakeClock
from durable_sa.testing.conformance import eventually
from tests.integration.queue.test_claims import RESCANNING_PLANNER

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from durable_sa.outbox.message import OutboxMessage
    from durable_sa.queue.protocol import ClaimedJob

FLOW = "relay-flow"


class ListBroker(OutboxBackend):
    """A broker that is a list: published messages are appended; nothing consumes them."""

    name = "list"
    capabilities = attrs.evolve(OutboxBackend.capabilities, consumed_by_workers=False)

    def __init__(self, sa_engine: sa.Engine, **options: Any) -> None:
        super().__init__(sa_engine, **options)
        self.published: list[OutboxMessage] = []
        self.down = False

    def publish(self, messages: Sequence[OutboxMessage]) -> None:
        if self.down:
            msg = "the broker is away"
            raise ConnectionError(msg)
        self.published.extend(messages)

    def settle(self, job: ClaimedJob) -> None:
        pass

    def claim(self, **_: Any) -> ClaimedJob | None:
        return None

    def renew_deliveries(self, job_ids, *, worker, until) -> int:
        return 0

    def release_deliveries(self, job_ids, *, worker) -> int:
        return 0

    def next_due(self, **_: Any) -> datetime | None:
        return None

    def broker_run_ids(self, run_ids) -> set[int]:
        return {m.run_id for m in self.published} & set(run_ids)

    def broker_pending(self) -> int:
        return len(self.published)

    def broker_clear(self) -> None:
        self.published.clear()


class LossyBroker(ListBroker):
    """A broker that may lose messages silently: its rows stay until the job is done."""

    capabilities = attrs.evolve(ListBroker.capabilities, tracks_delivery=True)
    redeliver_after = timedelta(minutes=1)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def broker(sa_engine: sa.Engine) -> ListBroker:
    return ListBroker(sa_engine)


@pytest.fixture
def engine(sa_engine: sa.Engine, broker: ListBroker, clock: FakeClock) -> Durable:
    durable(FLOW).step("one", lambda ctx: 1).step("two", lambda ctx: 2)
    engine = Durable(sa_engine, backend=broker, clock=clock)
    engine.create_tables()
    return engine


def _rows(engine: Durable) -> dict[int, OutboxEntry]:
    with Session(engine.sa_engine) as session:
        rows = {row.id: row for row in session.scalars(sa.select(OutboxEntry))}
        session.expunge_all()
    return rows


def _queue_later(engine: Durable, run_id: int, due: datetime) -> None:
    """An outbox row for run ``run_id``'s second step, due at ``due``."""
    spec = JobSpec(
        payload=AdvanceJob(run_id=run_id, step_index=1),
        available_at=due,
        workflow=FLOW,
        version=registry.get(FLOW).version,
    )
    with engine.backend.sessions.begin() as session:  # type: ignore[attr-defined]
        engine.backend.enqueue(session, [spec])


def _taken(engine: Durable, run_id: int, *, now: datetime, until: datetime) -> int:
    """An outbox row a worker wrote at ``now``, taken to run in place until ``until``."""
    backend = engine.backend
    assert isinstance(backend, OutboxBackend)
    spec = JobSpec(
        payload=AdvanceJob(run_id=run_id, step_index=1),
        available_at=now,
        workflow=FLOW,
        version=registry.get(FLOW).version,
    )
    with backend.sessions.begin() as session:
        (job,) = backend.enqueue_claimed(session, [(spec, until)], worker="w-1", now=now)
    return job.id


def test_it_publishes_the_due_rows_in_due_order_and_marks_them_published(
    engine: Durable, broker: ListBroker, clock: FakeClock
) -> None:
    runs = [engine.start(FLOW, {"i": i}).run_id for i in range(3)]
    _queue_later(engine, runs[0], clock() + timedelta(hours=1))
    relay = Relay(broker, clock=clock)

    assert relay.backlog() == 3
    assert relay.publish_due() == 3
    assert [(m.run_id, m.kind) for m in broker.published] == [(r, "advance") for r in runs]
    rows = _rows(engine)
    published = [row for row in rows.values() if row.published_at is not None]
    assert sorted(row.run_id for row in published) == runs
    assert {row.published_by for row in published} == {relay.id}
    assert relay.stats.published == 3
    assert relay.stats.batches == 1
    assert relay.publish_due() == 0  # published rows are not published again
    assert relay.backlog() == 0

    clock.advance(timedelta(minutes=59))
    assert relay.publish_due() == 0  # the later row waits in the database...
    clock.advance(timedelta(minutes=1))
    assert relay.publish_due() == 1  # ...until it is due
    assert broker.published[-1].run_id == runs[0]
    assert broker.published[-1].payload["step_index"] == 1
    assert all(row.published_at is not None for row in _rows(engine).values())


def test_a_batch_takes_at_most_batch_size_rows_and_drain_takes_them_all(
    engine: Durable, broker: ListBroker, clock: FakeClock
) -> None:
    for i in range(5):
        engine.start(FLOW, {"i": i})
    relay = Relay(broker, clock=clock, batch_size=2)
    assert relay.publish_due() == 2
    assert relay.drain() == 3
    assert len(broker.published) == 5
    assert len({m.id for m in broker.published}) == 5
    assert relay.stats.batches == 3


def test_rows_the_broker_refused_stay_unpublished(
    engine: Durable, broker: ListBroker, clock: FakeClock
) -> None:
    engine.start(FLOW)
    engine.start(FLOW)
    relay = Relay(broker, clock=clock)
    broker.down = True
    with pytest.raises(ConnectionError):
        relay.publish_due()
    assert [row.published_at for row in _rows(engine).values()] == [None, None]
    assert relay.backlog() == 2
    broker.down = False
    assert relay.publish_due() == 2
    assert len(broker.published) == 2


def test_a_row_whose_worker_lease_ran_out_is_published_as_a_redelivery(
    engine: Durable, broker: ListBroker, clock: FakeClock
) -> None:
    run_id = engine.start(FLOW).run_id
    relay = Relay(broker, clock=clock)
    assert relay.publish_due() == 1  # the run's first job
    held = _taken(engine, run_id, now=clock(), until=clock() + timedelta(seconds=10))
    lapsing = _taken(engine, run_id, now=clock(), until=clock() + timedelta(seconds=5))

    assert relay.publish_due() == 0  # both workers' leases last
    clock.advance(timedelta(seconds=6))
    assert relay.publish_due() == 1

    message = broker.published[-1]
    assert message.id == lapsing
    assert message.redeliveries == 1
    rows = _rows(engine)
    assert rows[lapsing].redeliveries == 1
    assert rows[lapsing].claimed_until is None  # the worker's hold ends
    assert rows[lapsing].published_by == relay.id
    assert rows[held].claimed_until is not None  # still the worker's
    assert rows[held].published_by == "w-1"
    assert rows[held].redeliveries == 0


def test_a_row_a_lossy_broker_never_finished_is_published_again(
    sa_engine: sa.Engine, clock: FakeClock
) -> None:
    durable(FLOW).step("one", lambda ctx: 1)
    broker = LossyBroker(sa_engine)
    engine = Durable(sa_engine, backend=broker, clock=clock)
    engine.create_tables()
    engine.start(FLOW)
    relay = Relay(broker, clock=clock)
    assert relay.publish_due() == 1

    clock.advance(timedelta(seconds=59))
    assert relay.publish_due() == 0  # published a moment ago
    clock.advance(timedelta(seconds=2))
    assert relay.publish_due() == 1
    assert [m.redeliveries for m in broker.published] == [0, 1]
    (row,) = _rows(engine).values()
    assert row.redeliveries == 1
    assert relay.prune(now=clock() + timedelta(days=1)) == 0  # a row still there is not done


def test_prune_deletes_only_rows_published_longer_ago_than_kept(
    engine: Durable, broker: ListBroker, clock: FakeClock
) -> None:
    old = [engine.start(FLOW).run_id for _ in range(2)]
    relay = Relay(broker, clock=clock)
    assert relay.publish_due() == 2
    # A worker's, written as long ago as the others were published; its lease lasts.
    held = _taken(engine, old[1], now=clock(), until=clock() + timedelta(days=1))
    clock.advance(timedelta(minutes=61))  # keep_published is an hour
    recent = engine.start(FLOW).run_id
    assert relay.publish_due() == 1
    _queue_later(engine, old[0], clock() + timedelta(days=1))  # unpublished

    assert relay.prune() == 2
    rows = _rows(engine)
    assert sorted(row.run_id for row in rows.values()) == sorted([recent, old[0], old[1]])
    assert held in rows
    assert relay.stats.pruned == 2
    assert relay.prune() == 0


def test_started_it_publishes_what_commits_and_stopped_it_publishes_nothing(
    sa_engine: sa.Engine,
) -> None:
    durable(FLOW).step("one", lambda ctx: 1)
    broker = ListBroker(sa_engine)
    engine = Durable(sa_engine, backend=broker)
    engine.create_tables()
    relay = Relay(broker, poll_interval=30.0).start()  # only a wake-up makes it look soon
    try:
        first = engine.start(FLOW).run_id  # the commit wakes the relay in this process
        assert eventually(lambda: len(broker.published) == 1, timeout=10)
        assert broker.published[0].run_id == first
        assert not relay.join(timeout=0.05)  # still serving
    finally:
        relay.stop(wait=True)
    assert relay.join(timeout=0)
    engine.start(FLOW)
    time.sleep(0.3)
    assert len(broker.published) == 1  # nobody relays any more
    assert relay.backlog() == 1


def test_a_relay_needs_an_outbox_and_a_positive_batch_size(sa_engine: sa.Engine) -> None:
    with pytest.raises(InvalidArgumentError, match="no outbox to relay"):
        Relay(JobsTableBackend(sa_engine))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="batch_size must be at least 1"):
        Relay(ListBroker(sa_engine), batch_size=0)


def test_a_batch_takes_at_most_batch_size_rows_whatever_the_plan(
    durable_postgres_url: str, clock: FakeClock
) -> None:
    """With a plan that runs the pick again per joined row, ``id IN (pick)`` stamped every
    due row, more than the batch; the pick now runs once (:mod:`durable_sa.store.picks`)."""
    sa_engine = sa.create_engine(durable_postgres_url, connect_args={"options": RESCANNING_PLANNER})
    try:
        broker = ListBroker(sa_engine)
        durable(FLOW).step("one", lambda ctx: 1).step("two", lambda ctx: 2)
        engine = Durable(sa_engine, backend=broker, clock=clock)
        engine.create_tables()
        for i in range(5):
            engine.start(FLOW, {"i": i})
        relay = Relay(broker, clock=clock, batch_size=2)
        assert relay.publish_due() == 2
        assert len(broker.published) == 2
        assert sum(row.published_at is not None for row in _rows(engine).values()) == 2
    finally:
        sa_engine.dispose()
