"""Redis Streams specifics: the outbox and relay, delays, bad entries, a broker restart."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
import redis
from durable_sa_redis import RedisStreamsBackend
from sqlalchemy import func, select, update

from durable_sa import Durable, InvalidArgumentError, RunStatus
from durable_sa.core.decide import decide_step
from durable_sa.core.jobs import AdvanceJob, JobSpec
from durable_sa.core.outcomes import Advance
from durable_sa.core.plan import plan_transition
from durable_sa.core.registry import registry
from durable_sa.engine.applier import Applier, PlanItem
from durable_sa.outbox.backend import OutboxBackend
from durable_sa.results import JobOutcome
from durable_sa.store.models import dead_letters_table, outbox_table, runs_table
from durable_sa.store.queries import load_run
from durable_sa.testing import scenarios
from durable_sa.testing.conformance import eventually

if TYPE_CHECKING:
    from collections.abc import Sequence

    import sqlalchemy as sa

    from durable_sa.outbox.message import OutboxMessage
    from durable_sa.queue.protocol import ClaimedJob
    from durable_sa.testing.servers import RedisServer

ON_SQLITE = pytest.mark.parametrize("durable_each_database_url", ["sqlite"], indirect=True)
"""Tests that need one database only: durable_sqlalchemy_engine on it alone."""


LEASE = timedelta(seconds=2)


def backend_of(engine: Durable) -> RedisStreamsBackend:
    assert isinstance(engine.backend, RedisStreamsBackend)
    return engine.backend


def stream_length(engine: Durable) -> int:
    backend = backend_of(engine)
    return int(backend.redis.xlen(backend.stream(backend.queue)))


def claim_now(engine: Durable, worker: str = "w1") -> ClaimedJob | None:
    engine.relay().drain()
    return engine.admin.claim(worker=worker, lease=LEASE)


# ── selection and options ───────────────────────────────────────────────────────


@ON_SQLITE
def test_a_redis_url_selects_the_backend(
    durable_sqlalchemy_engine: sa.Engine, durable_redis_url: str
) -> None:
    engine = Durable(durable_sqlalchemy_engine, backend=durable_redis_url, queue="mail")
    backend = backend_of(engine)
    assert backend.queue == "mail"
    assert backend.stream("mail") == "durable-sa:mail"
    assert isinstance(backend, OutboxBackend)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("prefix", "has space"),
        ("group", ""),
        ("block", 0),
        ("keep_published", 5),
        ("defer_delay", timedelta(0)),
        ("defer_delay", 5),
    ],
)
@ON_SQLITE
def test_bad_options_are_refused(
    durable_sqlalchemy_engine: sa.Engine, durable_redis_url: str, option, value
) -> None:
    with pytest.raises(InvalidArgumentError, match=option):
        Durable(
            durable_sqlalchemy_engine, backend=durable_redis_url, backend_options={option: value}
        )


@ON_SQLITE
def test_the_jobs_table_has_no_relay(durable_sqlalchemy_engine: sa.Engine) -> None:
    with pytest.raises(InvalidArgumentError, match="no outbox"):
        Durable(durable_sqlalchemy_engine).relay()


# ── the outbox and the relay ────────────────────────────────────────────────────


def test_a_job_reaches_the_stream_only_through_the_relay(redis_engine: Durable) -> None:
    scenarios.define_scenarios()
    redis_engine.start(scenarios.SEQUENTIAL, {})
    assert stream_length(redis_engine) == 0
    assert backend_of(redis_engine).unpublished_count() == 1
    assert redis_engine.relay().drain() == 1
    assert stream_length(redis_engine) == 1
    assert backend_of(redis_engine).unpublished_count() == 0
    assert redis_engine.relay().drain() == 0  # published once


def test_a_sleep_waits_in_the_outbox_until_due(redis_engine: Durable) -> None:
    scenarios.define_scenarios()
    run = redis_engine.start(scenarios.SLEEP, {})
    for _step in ("before", "nap"):  # the nap step starts the timer
        job = claim_now(redis_engine)
        assert job is not None
        assert redis_engine.admin.run_job(job) is JobOutcome.APPLIED
    relay = redis_engine.relay()
    assert relay.drain() == 0
    assert stream_length(redis_engine) == 0
    assert backend_of(redis_engine).unpublished_count() == 1
    assert relay.next_due() is not None
    time.sleep(scenarios.SLEEP_SECONDS + 0.1)
    assert relay.drain() == 1
    job = redis_engine.admin.claim(worker="w1", lease=LEASE)
    assert job is not None
    assert job.run_id == run.run_id


def test_a_worker_runs_a_runs_next_steps_in_place(redis_engine: Durable) -> None:
    """One broker message per run: each next step is a row the worker took itself."""
    scenarios.define_scenarios()
    runs = [redis_engine.start(scenarios.SEQUENTIAL, {"n": i}).run_id for i in range(5)]
    relay = redis_engine.relay()
    with redis_engine.worker(concurrency=2, relay=False, lease=LEASE, heartbeat=LEASE / 4):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(
            redis_engine.status(r).status is RunStatus.COMPLETED for r in runs
        ):
            relay.drain()
            time.sleep(0.05)
    assert [redis_engine.status(r).results for r in runs] == [
        {"one": i + 1, "two": i + 2, "three": i + 3} for i in range(5)
    ]
    assert relay.stats.published == len(runs)  # the first steps only
    assert backend_of(redis_engine).pending_count() == 0
    assert stream_length(redis_engine) == 0


def test_a_row_taken_in_place_is_published_once_its_lease_ran_out(
    redis_engine: Durable,
) -> None:
    """A worker that died holding a run's next step: the relay publishes it, counted."""
    backend = backend_of(redis_engine)
    taken = _take_next_step(redis_engine, worker="dies")
    assert backend.runs_in_place(taken.id)
    assert (backend.in_place_count(), backend.unpublished_count()) == (1, 0)
    assert backend.pending_count() == 1
    relay = redis_engine.relay()
    assert relay.drain() == 0  # the worker's while its lease lasts
    assert backend.renew([taken.id], worker="someone else", until=redis_engine.now) == 0
    assert backend.renew([taken.id], worker="dies", until=redis_engine.now + LEASE) == 1
    backend.forget(taken.id)  # the worker is gone
    relay.clock = lambda: redis_engine.now + LEASE * 2
    assert relay.drain() == 1
    again = redis_engine.admin.claim(worker="w2", lease=LEASE)
    assert again is not None
    assert again.id == taken.id
    assert again.attempts == 2  # the lost run in place is counted, as a lost delivery is
    assert backend.in_place_count() == 0


def test_a_row_taken_in_place_and_given_back_is_published_at_once(
    redis_engine: Durable,
) -> None:
    backend = backend_of(redis_engine)
    taken = _take_next_step(redis_engine, worker="w1")
    assert backend.release_claims([taken.id], worker="w1") == 1
    assert not backend.runs_in_place(taken.id)
    assert (backend.in_place_count(), backend.unpublished_count()) == (0, 1)
    assert redis_engine.relay().drain() == 1


def test_a_job_whose_plan_missed_its_compare_and_set_stays_in_hand(
    redis_engine: Durable,
) -> None:
    """A run that moved under a group's write: its job is neither settled nor forgotten.

    The pipeline decides that job again on a fresh read; only that decision's commit
    may settle its delivery.
    """
    scenarios.define_scenarios()
    run_id = redis_engine.start(scenarios.SEQUENTIAL, {"n": 1}).run_id
    backend = backend_of(redis_engine)
    first = claim_now(redis_engine)
    assert first is not None
    with redis_engine.shell.reading() as session:
        run = load_run(session, run_id)
    assert run is not None
    now = redis_engine.now
    step = Advance(journal=(), result_patch={"one": 2})
    transition = decide_step(run, step, attempt=1, now=now)
    plan = plan_transition(transition, acknowledge=first.id, now=now, continue_until=now + LEASE)
    with redis_engine.sa_engine.begin() as conn:  # the run moves meanwhile (a signal, a cancel)
        conn.execute(
            update(runs_table)
            .where(runs_table.c.id == run_id)
            .values(revision=runs_table.c.revision + 1)
        )
    with backend.sessions.begin() as session:
        (applied,) = Applier(backend, worker="w1").apply(session, [PlanItem(plan, first)], now=now)
    assert not applied.applied
    assert backend.held_message(first.id) is not None
    assert stream_length(redis_engine) == 1  # still delivered, not settled
    assert (backend.in_place_count(), backend.unpublished_count()) == (0, 0)


def _take_next_step(engine: Durable, *, worker: str) -> ClaimedJob:
    """Start a sequential run, deliver its first step, and commit (as that step's commit
    does) the acknowledgement and the next step's row taken by ``worker``."""
    scenarios.define_scenarios()
    engine.start(scenarios.SEQUENTIAL, {"n": 1})
    backend = backend_of(engine)
    first = claim_now(engine)
    assert first is not None
    with backend.sessions.begin() as session:
        backend.ack(session, first)
        (taken,) = backend.enqueue_claimed(
            session, [(_next_step(first), engine.now + LEASE)], worker=worker, now=engine.now
        )
    return taken


def _next_step(job: ClaimedJob) -> JobSpec:
    """The job of the step after ``job``'s (a first step of the sequential scenario)."""
    assert job.run_id is not None
    return JobSpec(
        payload=AdvanceJob(run_id=job.run_id, step_index=1),
        available_at=datetime.now(UTC),
        workflow=scenarios.SEQUENTIAL,
        version=registry.get(scenarios.SEQUENTIAL).version,
    )


def test_relays_side_by_side_publish_each_row_once(redis_engine: Durable) -> None:
    scenarios.define_scenarios()
    for i in range(300):
        redis_engine.start(scenarios.SEQUENTIAL, {"n": i})
    relays = [redis_engine.relay(batch_size=7) for _ in range(4)]
    counts: list[int] = []
    threads = [threading.Thread(target=lambda r=r: counts.append(r.drain())) for r in relays]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) == 300
    assert stream_length(redis_engine) == 300
    backend = backend_of(redis_engine)
    entries = backend.redis.xrange(backend.stream(backend.queue))
    run_ids = [int(fields[b"run"]) for _id, fields in entries]
    assert len(set(run_ids)) == 300


class PublishThenFail(RedisStreamsBackend):
    """A relay that dies after the broker took the batch, before the rows are marked."""

    fail = True

    def publish(self, messages: Sequence[OutboxMessage]) -> None:
        super().publish(messages)
        if self.fail:
            msg = "killed between publish and mark"
            raise RuntimeError(msg)


def test_a_batch_published_but_not_marked_is_published_again_and_harmless(
    durable_sqlalchemy_engine: sa.Engine, durable_redis_url: str
) -> None:
    backend = PublishThenFail(
        durable_sqlalchemy_engine, url=durable_redis_url, block=0.2, reclaim_every=0
    )
    engine = Durable(durable_sqlalchemy_engine, backend=backend)
    engine.create_tables()
    scenarios.define_scenarios()
    run = engine.start(scenarios.SEQUENTIAL, {"n": 1})
    with pytest.raises(RuntimeError, match="killed"):
        engine.relay().drain()
    assert backend.unpublished_count() == 1  # rolled back: still to publish
    backend.fail = False
    with engine.worker(concurrency=2, lease=LEASE, heartbeat=timedelta(seconds=0.5)):
        final = engine.wait(run.run_id, timeout=30)
        assert final.status is RunStatus.COMPLETED
        assert final.results == {"one": 2, "two": 3, "three": 4}
        assert eventually(lambda: engine.backend.pending_count() == 0)
    backend.close()


def test_published_rows_are_pruned_after_keep_published(redis_engine: Durable) -> None:
    scenarios.define_scenarios()
    for _ in range(3):
        redis_engine.start(scenarios.SEQUENTIAL, {})
    relay = redis_engine.relay()
    relay.drain()
    redis_engine.start(scenarios.SEQUENTIAL, {})  # one row left unpublished
    keep = backend_of(redis_engine).keep_published
    assert relay.prune() == 0  # too young
    assert relay.prune(now=redis_engine.now + keep + timedelta(seconds=1)) == 3
    with redis_engine.sa_engine.connect() as conn:
        left = conn.execute(select(func.count()).select_from(outbox_table)).scalar_one()
    assert left == 1


# ── the consumer ────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "fields",
    [
        {b"job": b"\xff\xfe not utf-8"},
        {b"job": b'{"v": 99, "id": 1}'},
        {b"job": b'{"v": 1, "id": "one"}'},
        {b"other": b"no job field"},
    ],
    ids=["not-utf8", "newer-format", "bad-field", "no-job-field"],
)
def test_an_unreadable_entry_is_dead_lettered_and_the_next_one_runs(
    redis_engine: Durable, fields: dict[bytes, bytes]
) -> None:
    scenarios.define_scenarios()
    backend = backend_of(redis_engine)
    key = backend.stream(backend.queue)
    backend.redis.xgroup_create(key, backend.group, id="0", mkstream=True)
    backend.redis.xadd(key, fields)
    run = redis_engine.start(scenarios.SEQUENTIAL, {})
    job = claim_now(redis_engine)
    assert job is not None
    assert job.run_id == run.run_id
    letters = redis_engine.admin.dead_letters()
    assert len(letters) == 1
    assert letters[0].kind == "unreadable"
    assert f"on stream {key}" in letters[0].error
    assert "malformed" in letters[0].error
    assert stream_length(redis_engine) == 1  # only the good entry, still pending


def test_a_job_this_worker_cannot_run_is_deferred_to_the_outbox(redis_engine: Durable) -> None:
    scenarios.define_scenarios()
    redis_engine.start(scenarios.SEQUENTIAL, {})
    redis_engine.relay().drain()
    job = redis_engine.admin.claim(worker="w1", lease=LEASE, workflows={"other": "1"})
    assert job is None
    assert stream_length(redis_engine) == 0
    with redis_engine.sa_engine.connect() as conn:
        row = conn.execute(
            select(outbox_table.c.available_at, outbox_table.c.last_error).where(
                outbox_table.c.published_at.is_(None)
            )
        ).one()
    assert "offered again" in row.last_error
    assert row.available_at > redis_engine.now


def test_a_lost_message_is_found_by_recover(redis_engine: Durable) -> None:
    scenarios.define_scenarios()
    run = redis_engine.start(scenarios.SEQUENTIAL, {})
    redis_engine.relay().drain()
    backend_of(redis_engine).broker_clear()  # the broker lost it (no persistence)
    assert redis_engine.recover() == 1
    job = claim_now(redis_engine)
    assert job is not None
    assert job.run_id == run.run_id


def test_dead_letters_of_unreadable_entries_are_kept_not_requeued(redis_engine: Durable) -> None:
    backend = backend_of(redis_engine)
    key = backend.stream(backend.queue)
    backend.redis.xgroup_create(key, backend.group, id="0", mkstream=True)
    backend.redis.xadd(key, {b"job": b"nonsense"})
    assert redis_engine.admin.claim(worker="w1", lease=LEASE) is None
    (letter,) = redis_engine.admin.dead_letters()
    with redis_engine.sa_engine.begin() as conn:
        assert conn.execute(select(func.count()).select_from(dead_letters_table)).scalar() == 1
    with pytest.raises(InvalidArgumentError, match="names no run"):
        redis_engine.admin.requeue(letter.id)
    assert [d.id for d in redis_engine.admin.dead_letters()] == [letter.id]  # kept to be read


# ── a broker restart in the middle of runs ──────────────────────────────────────


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_runs_survive_a_broker_restart(
    durable_sqlalchemy_engine: sa.Engine, durable_own_redis_server: RedisServer, kill: bool
) -> None:
    engine = Durable(
        durable_sqlalchemy_engine,
        backend=durable_own_redis_server.url,
        backend_options={"block": 0.2, "reclaim_every": 0.2},
    )
    engine.create_tables()
    scenarios.define_scenarios()
    runs = [engine.start(scenarios.SLEEP, {"n": i}).run_id for i in range(20)]
    runs += [engine.start(scenarios.PARALLEL, {"n": i}).run_id for i in range(20)]
    with engine.worker(concurrency=4, lease=LEASE, heartbeat=timedelta(seconds=0.5)):
        time.sleep(0.2)
        durable_own_redis_server.restart(kill=kill)
        for run_id in runs:
            assert engine.wait(run_id, timeout=60).status is RunStatus.COMPLETED
        assert eventually(lambda: engine.backend.pending_count() == 0)
    with engine.sa_engine.connect() as conn:
        stranded = conn.execute(
            select(func.count())
            .select_from(outbox_table)
            .where(outbox_table.c.published_at.is_(None))
        ).scalar_one()
    assert stranded == 0
    backend_of(engine).close()


def test_the_relay_retries_while_the_broker_is_down(
    durable_sqlalchemy_engine: sa.Engine, durable_own_redis_server: RedisServer
) -> None:
    engine = Durable(durable_sqlalchemy_engine, backend=durable_own_redis_server.url)
    engine.create_tables()
    scenarios.define_scenarios()
    engine.start(scenarios.SEQUENTIAL, {})
    backend = backend_of(engine)
    real = backend.redis
    backend.redis = redis.Redis(port=1)  # nobody listens there: the broker is down
    relay = engine.relay(poll_interval=0.05)
    with relay:
        assert eventually(lambda: relay.stats.errors >= 2, timeout=10)
        assert backend.unpublished_count() == 1
        backend.redis = real
        assert eventually(lambda: backend.unpublished_count() == 0, timeout=15)
    assert relay.stats.published == 1
    backend.close()


def test_stale_settle_after_a_lost_connection_is_harmless(redis_engine: Durable) -> None:
    scenarios.define_scenarios()
    redis_engine.start(scenarios.SEQUENTIAL, {})
    job = claim_now(redis_engine)
    assert job is not None
    backend = backend_of(redis_engine)
    real = backend.redis
    backend.redis = redis.Redis(port=1)  # the broker is unreachable at settle time
    try:
        assert redis_engine.admin.run_job(job) is JobOutcome.APPLIED
    finally:
        backend.redis = real
    # The entry was not settled: after its lease it comes back, and is dropped as stale.
    time.sleep(LEASE.total_seconds() + 0.2)
    again = redis_engine.admin.claim(worker="w2", lease=LEASE)
    assert again is not None
    assert again.id == job.id
    assert redis_engine.admin.run_job(again) is JobOutcome.STALE


def test_consumers_of_gone_workers_are_removed_from_the_group(
    redis_engine: Durable, monkeypatch: pytest.MonkeyPatch
) -> None:
    import durable_sa_redis.backend as module  # noqa: PLC0415

    backend = backend_of(redis_engine)
    key = backend.stream(backend.queue)
    scenarios.define_scenarios()
    redis_engine.start(scenarios.SEQUENTIAL, {})
    job = claim_now(redis_engine, "ghost")
    assert job is not None
    backend.settle(job)  # the ghost holds nothing now
    names = [c["name"] for c in backend.redis.xinfo_consumers(key, backend.group)]
    assert names == [b"ghost"]
    monkeypatch.setattr(module, "_GONE_AFTER_MS", -1)  # everyone idle counts as gone
    backend._next_cleanup = 0.0
    backend._next_reclaim = 0.0
    assert redis_engine.admin.claim(worker="live", lease=LEASE) is None
    names = [c["name"] for c in backend.redis.xinfo_consumers(key, backend.group)]
    assert b"ghost" not in names
