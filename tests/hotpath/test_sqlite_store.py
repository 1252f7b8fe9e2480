"""The fast lane's SQLite statements: the general path's rows, byte for byte, and its rules.

Two files on the same fake clock run the same workflow, one through the general path
(``start(session=...)`` and ``drain``), one through :mod:`durable_sa.hotpath.sqlite`;
every stored value must be the same, down to its SQLite storage class. The rest pins
down the claim (due time, leases, queues, workflow versions) and compare-and-set.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from durable_sa import Durable, Job, JournalEntry, WorkflowRun, durable, registry
from durable_sa.core.decide import decide_step
from durable_sa.core.jobs import AdvanceJob, decode_payload
from durable_sa.handlers import definition_for, execute_step
from durable_sa.hotpath import sqlite as store
from durable_sa.hotpath.connections import borrowed
from durable_sa.hotpath.rows import Claim, ClaimQuery, StepWrite, WriteResult
from durable_sa.hotpath.store import store_for
from durable_sa.store.queries import load_run
from durable_sa.testing import FakeClock, drain

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

START = datetime(2030, 1, 1, tzinfo=UTC)  # whole seconds: stored as ".000000"
FAR = START + timedelta(days=1)
LEASE = timedelta(seconds=30)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


def _engine(path: Path, clock: FakeClock, **options: Any) -> Durable:
    engine = Durable(sa.create_engine(f"sqlite:///{path}"), clock=clock, **options)
    engine.create_tables()
    return engine


@pytest.fixture
def engine(tmp_path: Path, clock: FakeClock) -> Iterator[Durable]:
    made = _engine(tmp_path / "lane.sqlite", clock)
    yield made
    made.sa_engine.dispose()


@pytest.fixture
def reference(tmp_path: Path, clock: FakeClock) -> Iterator[Durable]:
    """A second file on the same clock, written only by the general path."""
    made = _engine(tmp_path / "general.sqlite", clock)
    yield made
    made.sa_engine.dispose()


@pytest.fixture
def conn(engine: Durable) -> Iterator[sqlite3.Connection]:
    with borrowed(engine.sa_engine, store) as held:
        yield held


def _values(ctx: object) -> dict[str, Any]:
    del ctx
    return {"x": [1, 2.5, None], "s": "é\u2028\U0001f600", "nested": {"t": True}}


def _define() -> str:
    (
        durable("sq")
        .step("a", _values)
        .step("b", lambda ctx: None)
        .sleep("nap", timedelta(seconds=5))
        .step("c", lambda ctx: 3)
        .step("d", lambda ctx: "text")
    )
    return "sq"


def _query(
    *,
    worker: str = "w1",
    queues: list[str] | None = None,
    workflows: Mapping[str, str] | None = None,
) -> ClaimQuery:
    if workflows is None:
        workflows = {name: registry.get(name).version for name in registry.names()}
    return ClaimQuery(
        sql=store.claim_sql(queues=queues is not None, workflows=True, fifo=False),
        worker=worker,
        lease=LEASE,
        queues=queues,
        workflows=workflows,
    )


def _write(engine: Durable, claim: Claim, *, lease_until: datetime | None) -> dict[str, Any]:
    """Run the claimed step and decide, as the lane does: the store's row for it."""
    run = claim.run
    assert run is not None
    payload = decode_payload(claim.job.kind, claim.job.payload)
    assert isinstance(payload, AdvanceJob)
    step = definition_for(run).steps[run.current_step]
    outcome = execute_step(run, step, payload.attempt, journal={})
    now = engine.now
    transition = decide_step(run, outcome, attempt=payload.attempt, now=now, jitter=0.0)
    write = StepWrite(transition=transition, job_id=claim.job.id, now=now, lease_until=lease_until)
    return store.write_row(write, queue="default", max_attempts=5)


def _store_step(engine: Durable, conn: sqlite3.Connection, *, now: datetime) -> WriteResult | None:
    """Claim one job and write its step through the store (the next job left unclaimed)."""
    claims = store.claim(conn, _query(), now=now, limit=1)
    if not claims:
        return None
    [result] = store.write_group(
        conn, [_write(engine, claims[0], lease_until=None)], worker="w1", now=engine.now
    )
    return result


def _raw(engine: Durable) -> dict[str, list[tuple[Any, ...]]]:
    """Every stored value as SQLite holds it (str, int, float or None)."""
    path = engine.sa_engine.url.database
    assert path is not None
    with sqlite3.connect(path) as raw:
        return {
            "runs": raw.execute("SELECT * FROM durable_runs ORDER BY id").fetchall(),
            "journal": raw.execute("SELECT * FROM durable_journal ORDER BY id").fetchall(),
            # created_at: the general path's enqueue takes the wall clock, not the engine's
            "jobs": raw.execute(
                "SELECT id, queue, kind, run_id, workflow_name, workflow_version, payload,"
                " attempts, max_attempts, available_at, claimed_by, claimed_until, last_error"
                " FROM durable_jobs ORDER BY id"
            ).fetchall(),
        }


def _orm(engine: Durable) -> tuple[list[dict[str, Any]], ...]:
    def columns(row: object, skip: tuple[str, ...] = ()) -> dict[str, Any]:
        table = sa.inspect(row).mapper.local_table  # type: ignore[union-attr]
        return {c.key: getattr(row, c.key) for c in table.columns if c.key not in skip}

    with Session(engine.sa_engine) as session:
        runs = [columns(r) for r in session.scalars(sa.select(WorkflowRun))]
        journal = [columns(e) for e in session.scalars(sa.select(JournalEntry))]
        jobs = [columns(j, ("created_at",)) for j in session.scalars(sa.select(Job))]
        snapshots = [load_run(session, r["id"]) for r in runs]
    return runs, journal, jobs, snapshots


def _same_everywhere(lane: Durable, general: Durable) -> None:
    assert _raw(lane) == _raw(general)
    assert _orm(lane) == _orm(general)


# ── the general path's rows ────────────────────────────────────────────────────


def test_the_fast_lane_is_on_for_sqlite(engine: Durable) -> None:
    assert store_for("sqlite") is store
    assert engine._fast_store is store


def test_start_and_steps_write_the_general_paths_rows(
    engine: Durable, reference: Durable, clock: FakeClock, conn: sqlite3.Connection
) -> None:
    name = _define()
    data = {"k": "v", "none": None, "ü": [1, 1.5]}
    with Session(reference.sa_engine) as session, session.begin():
        reference.start(name, data, session=session)  # the general path
    engine.start(name, data)  # no session, no key: store.start_run
    _same_everywhere(engine, reference)

    results = []
    while True:
        clock.advance(1.234567)  # timestamps with microseconds from here on
        ran = drain(reference, now=FAR, max=1)
        result = _store_step(engine, conn, now=FAR)
        assert (result is not None) == bool(ran)
        if not ran:
            break
        results.append(result)
        _same_everywhere(engine, reference)
    assert results == [WriteResult(applied=True, queued=True)] * 4 + [WriteResult(applied=True)]
    assert _raw(engine)["runs"][0][4] == "completed"


def test_stored_values_have_sqlalchemys_formats(engine: Durable, clock: FakeClock) -> None:
    name = _define()
    run_id = engine.start(name, {"n": None}).run_id
    with sqlite3.connect(str(engine.sa_engine.url.database)) as raw:
        created, state, input_text = raw.execute(
            "SELECT created_at, state, input FROM durable_runs WHERE id = ?", (run_id,)
        ).fetchone()
        payload = raw.execute("SELECT payload FROM durable_jobs").fetchone()[0]
    assert created == "2030-01-01 00:00:00.000000"
    assert state == "{}"
    assert input_text == '{"n": null}'
    assert payload == f'{{"run_id": {run_id}, "step_index": 0, "attempt": 1}}'


def test_a_claim_reads_the_run_as_load_run_does(engine: Durable, conn: sqlite3.Connection) -> None:
    name = _define()
    run_id = engine.start(name, {"k": [1, 2]}).run_id
    [claim] = store.claim(conn, _query(), now=START, limit=5)
    with Session(engine.sa_engine) as session:
        assert claim.run == load_run(session, run_id)
    assert engine.claim(now=START + LEASE, worker="other") is None  # the lease holds
    assert claim.job.payload == {"run_id": run_id, "step_index": 0, "attempt": 1}
    assert claim.job.attempts == 1
    assert claim.job.available_at == START
    assert claim.job.claimed_until == START + LEASE


# ── compare-and-set ────────────────────────────────────────────────────────────


def test_a_write_on_a_stale_revision_changes_nothing(
    engine: Durable, conn: sqlite3.Connection
) -> None:
    name = _define()
    first = engine.start(name).run_id
    second = engine.start(name).run_id
    claims = store.claim(conn, _query(), now=START, limit=5)
    assert [c.job.run_id for c in claims] == [first, second]
    rows = [_write(engine, c, lease_until=None) for c in claims]
    with engine.sa_engine.begin() as tx:  # the first run moves meanwhile
        tx.execute(
            sa.update(WorkflowRun)
            .where(WorkflowRun.id == first)
            .values(revision=WorkflowRun.revision + 1)
        )
    before = _raw(engine)

    results = store.write_group(conn, rows, worker="w1", now=engine.now)

    assert results == [WriteResult(applied=False), WriteResult(applied=True, queued=True)]
    after = _raw(engine)
    assert [r for r in after["runs"] if r[0] == first] == [
        r for r in before["runs"] if r[0] == first
    ]
    assert {r[1] for r in after["journal"]} == {second}
    assert {j[0] for j in after["jobs"] if j[3] == first} == {claims[0].job.id}
    assert claims[1].job.id not in {j[0] for j in after["jobs"]}
    assert store.write_group(conn, rows[1:], worker="w1", now=engine.now) == [
        WriteResult(applied=False)
    ]


def test_a_failing_group_writes_nothing(engine: Durable, conn: sqlite3.Connection) -> None:
    name = _define()
    engine.start(name)
    engine.start(name)
    claims = store.claim(conn, _query(), now=START, limit=5)
    good = _write(engine, claims[0], lease_until=None)
    bad = {**_write(engine, claims[1], lease_until=None)}
    bad["jobs"] = [(None, *bad["jobs"][0][1:])]  # queue is NOT NULL
    before = _raw(engine)
    with pytest.raises(sqlite3.IntegrityError):
        store.write_group(conn, [good, bad], worker="w1", now=engine.now)
    assert not conn.in_transaction
    assert _raw(engine) == before
    assert store.write_group(conn, [good], worker="w1", now=engine.now)[0].applied


# ── claiming ───────────────────────────────────────────────────────────────────


def test_a_claim_takes_due_jobs_oldest_first_up_to_the_limit(
    engine: Durable, clock: FakeClock, conn: sqlite3.Connection
) -> None:
    name = _define()
    ids = []
    for _ in range(3):
        ids.append(engine.start(name).run_id)
        clock.advance(1)
    later = engine.start(name).run_id  # due at START + 3 s

    assert store.claim(conn, _query(), now=START - timedelta(microseconds=1), limit=9) == []
    claims = store.claim(conn, _query(), now=START + timedelta(seconds=1), limit=9)
    assert [c.job.run_id for c in claims] == ids[:2]
    claims = store.claim(conn, _query(), now=START + timedelta(seconds=5), limit=1)
    assert [c.job.run_id for c in claims] == [ids[2]]
    soon = START + timedelta(seconds=5)  # the leases taken above still hold
    assert store.claim(conn, _query(), now=soon, limit=0) == []
    assert [c.job.run_id for c in store.claim(conn, _query(), now=soon, limit=9)] == [later]


def test_a_lease_keeps_a_job_until_it_runs_out(engine: Durable, conn: sqlite3.Connection) -> None:
    name = _define()
    run_id = engine.start(name).run_id
    [claim] = store.claim(conn, _query(worker="w1"), now=START, limit=1)
    until = START + LEASE
    assert store.claim(conn, _query(worker="w2"), now=until, limit=1) == []
    [again] = store.claim(conn, _query(worker="w2"), now=until + timedelta(microseconds=1), limit=1)
    assert again.job.id == claim.job.id
    assert again.job.run_id == run_id
    assert again.job.attempts == 2
    with Session(engine.sa_engine) as session:
        job = session.get(Job, claim.job.id)
        assert job is not None
        assert job.claimed_by == "w2"
        assert job.claimed_until == until + timedelta(microseconds=1) + LEASE


def test_a_claim_takes_only_its_queues(tmp_path: Path, clock: FakeClock) -> None:
    name = _define()
    engines = {q: _engine(tmp_path / "q.sqlite", clock, queue=q) for q in ("a", "b", "c")}
    runs = {q: e.start(name).run_id for q, e in engines.items()}
    with borrowed(engines["a"].sa_engine, store) as held:
        claims = store.claim(held, _query(queues=["c", "a"]), now=START, limit=9)
        assert sorted(c.job.run_id for c in claims) == [runs["a"], runs["c"]]
        assert {c.job.queue for c in claims} == {"a", "c"}
        assert store.claim(held, _query(queues=[]), now=START, limit=9) == []
        [rest] = store.claim(held, _query(), now=START, limit=9)
        assert rest.job.queue == "b"
    for made in engines.values():
        made.sa_engine.dispose()


def test_a_claim_takes_only_the_workflow_versions_it_has(
    engine: Durable, conn: sqlite3.Connection
) -> None:
    name = _define()
    durable("other").step("x", lambda ctx: 1)
    version = registry.get(name).version
    mine = engine.start(name).run_id
    engine.start("other")
    with engine.sa_engine.begin() as tx:  # a run pinned to another definition
        tx.execute(sa.update(Job).where(Job.run_id == mine).values(workflow_version="old"))
    pinned = engine.start(name).run_id

    assert store.claim(conn, _query(workflows={}), now=START, limit=9) == []
    [claim] = store.claim(conn, _query(workflows={name: version}), now=START, limit=9)
    assert claim.job.run_id == pinned
    [old] = store.claim(conn, _query(workflows={name: "old"}), now=START, limit=9)
    assert old.job.run_id == mine
    [other] = store.claim(conn, _query(), now=START, limit=9)
    assert other.run is not None
    assert other.run.workflow_name == "other"


# ── continuing in place ────────────────────────────────────────────────────────


def test_the_next_job_is_inserted_claimed_until_its_lease_ends(
    engine: Durable, conn: sqlite3.Connection
) -> None:
    name = _define()
    run_id = engine.start(name).run_id
    [claim] = store.claim(conn, _query(worker="w1"), now=START, limit=1)
    until = START + LEASE
    [result] = store.write_group(
        conn, [_write(engine, claim, lease_until=until)], worker="w1", now=engine.now
    )
    assert result.applied
    assert result.next_job_id is not None
    assert not result.queued
    with Session(engine.sa_engine) as session:
        job = session.get(Job, result.next_job_id)
        assert job is not None
        assert (job.run_id, job.claimed_by, job.claimed_until, job.attempts) == (
            run_id,
            "w1",
            until,
            1,
        )
        assert job.payload == {"run_id": run_id, "step_index": 1, "attempt": 1}

    assert store.claim(conn, _query(worker="w2"), now=until, limit=9) == []
    [taken] = store.claim(conn, _query(worker="w2"), now=until + LEASE, limit=9)
    assert taken.job.id == result.next_job_id
    assert taken.job.attempts == 2
    assert taken.run is not None
    assert taken.run.current_step == 1
    assert taken.run.revision == 1


# ── holding a connection ───────────────────────────────────────────────────────


def test_hold_and_unhold_restore_the_isolation_level(engine: Durable) -> None:
    raw = engine.sa_engine.raw_connection()
    try:
        driver = raw.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        before = driver.isolation_level
        store.hold(driver, synchronous=False)
        assert driver.isolation_level is None
        store.unhold(driver, synchronous=False)
        assert driver.isolation_level == before
    finally:
        raw.close()
