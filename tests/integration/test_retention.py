"""Retention: ``prune`` deletes old finished trees whole, and nothing live or recent."""

from __future__ import annotations

import functools
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from durable_sa import (
    DeadLetter,
    Durable,
    DurableContext,
    InvalidArgumentError,
    Job,
    JournalEntry,
    RunStatus,
    WorkflowRun,
    durable,
    retention,
)
from durable_sa.core.jobs import AdvanceJob, JobSpec
from durable_sa.results import PruneResult
from durable_sa.store.models import journal_table, runs_table
from durable_sa.testing import FakeClock, drain
from tests.integration.helpers import count, get_run

DAY = timedelta(days=1)
MONTH = timedelta(days=30)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def engine(sa_engine: sa.Engine, clock: FakeClock) -> Durable:
    """The engine on the fake clock: runs finish at fake times, prune measures from it."""
    durable_engine = Durable(sa_engine, clock=clock)
    durable_engine.create_tables()
    return durable_engine


@pytest.fixture(autouse=True)
def workflows() -> None:
    def boom(ctx: DurableContext) -> None:
        msg = "boom"
        raise RuntimeError(msg)

    durable("p-two").step("a", lambda ctx: 1).step("b", lambda ctx: 2)
    durable("p-fail").step("a", lambda ctx: 1).step("boom", boom, max_retries=1)
    durable("p-wait").wait_for_signal("gate", "go").step("after", lambda ctx: "done")
    durable("p-parent").step("a", lambda ctx: 1).child_workflow("kid", "p-two")
    durable("p-two-kids").child_workflow("first", "p-two").child_workflow("second", "p-wait")


def run_ids(engine: Durable) -> set[int]:
    with Session(engine.sa_engine) as session:
        return set(session.scalars(sa.select(WorkflowRun.id)))


def tree_of(engine: Durable, root: int) -> set[int]:
    """The root and every descendant's id."""
    found, level = {root}, [root]
    with Session(engine.sa_engine) as session:
        while level:
            level = list(
                session.scalars(
                    sa.select(WorkflowRun.id).where(WorkflowRun.parent_run_id.in_(level))
                )
            )
            found.update(level)
    return found


def journal_entries_of(engine: Durable, runs: set[int]) -> int:
    with Session(engine.sa_engine) as session:
        return len(
            session.scalars(sa.select(JournalEntry.id).where(JournalEntry.run_id.in_(runs))).all()
        )


def finished(engine: Durable, name: str, payload: dict[str, object] | None = None) -> int:
    run_id = engine.start(name, payload or {}).run_id
    drain(engine)
    return run_id


def table_counts(engine: Durable) -> tuple[int, int, int, int]:
    return (
        count(engine, WorkflowRun.__table__),
        count(engine, JournalEntry.__table__),
        count(engine, Job.__table__),
        count(engine, DeadLetter.__table__),
    )


def test_old_finished_runs_go_with_their_journal(engine: Durable, clock: FakeClock) -> None:
    completed = finished(engine, "p-two")
    failed = finished(engine, "p-fail")
    canceled = engine.start("p-wait").run_id
    drain(engine)
    engine.cancel(canceled)
    assert {get_run(engine, r).status for r in (completed, failed, canceled)} == {
        RunStatus.COMPLETED,
        RunStatus.FAILED,
        RunStatus.CANCELED,
    }
    old = {completed, failed, canceled}
    waiting = engine.start("p-wait").run_id  # as old as those, but not finished
    drain(engine)
    clock.advance(MONTH)
    recent = finished(engine, "p-two")
    clock.advance(DAY)
    entries = journal_entries_of(engine, old)
    assert entries == 5  # p-two: a, b; p-fail: a, boom (failed), a#compensate

    result = engine.admin.prune(older_than=MONTH)

    assert result == PruneResult(runs=3, journal_entries=entries, batches=1)
    assert run_ids(engine) == {recent, waiting}
    with Session(engine.sa_engine) as session:
        journaled = set(session.scalars(sa.select(JournalEntry.run_id)))
    assert journaled == {recent}
    assert engine.resume(waiting, "go").accepted
    drain(engine)
    assert engine.status(waiting).status == "completed"


def test_the_cutoff_is_the_engines_clock_minus_older_than(
    engine: Durable, clock: FakeClock
) -> None:
    run_id = finished(engine, "p-two")
    clock.advance(MONTH)
    assert engine.admin.prune(older_than=MONTH).runs == 0  # finished exactly 30 days ago: kept
    clock.advance(timedelta(microseconds=1))
    assert engine.admin.prune(older_than=MONTH).runs == 1
    assert run_id not in run_ids(engine)
    finished(engine, "p-two")
    assert engine.admin.prune(older_than=timedelta(0)).runs == 0  # finished at this very instant
    clock.advance(timedelta(microseconds=1))
    assert engine.admin.prune(older_than=timedelta(0)).runs == 1  # zero: everything finished


def test_a_finished_tree_goes_whole(engine: Durable, clock: FakeClock) -> None:
    root = finished(engine, "p-parent")
    members = tree_of(engine, root)
    assert len(members) == 2
    clock.advance(MONTH + DAY)

    result = engine.admin.prune(older_than=MONTH)

    assert (result.runs, result.journal_entries, result.batches) == (2, 4, 1)
    assert run_ids(engine) == set()


def test_an_old_finished_child_of_a_live_parent_stays(engine: Durable, clock: FakeClock) -> None:
    root = engine.start("p-two-kids").run_id
    drain(engine)
    snap = engine.status(root)
    first, second = (child.run_id for child in snap.children)
    assert engine.status(first).status == "completed"
    assert snap.status == "suspended"
    clock.advance(MONTH + DAY)

    assert engine.admin.prune(older_than=MONTH) == PruneResult()
    assert run_ids(engine) == {root, first, second}

    engine.resume(second, "go")
    drain(engine)
    assert engine.status(root).status == "completed"
    assert engine.admin.prune(older_than=MONTH) == PruneResult()  # the tree finished just now
    clock.advance(MONTH + DAY)
    assert engine.admin.prune(older_than=MONTH).runs == 3
    assert run_ids(engine) == set()


@pytest.mark.parametrize(
    "change",
    [
        {"status": RunStatus.RUNNING},  # only a hand-written UPDATE makes this
        {"updated_at": None},  # set to "now" below: the child finished recently
    ],
    ids=["live-child", "recent-child"],
)
def test_a_finished_root_with_a_live_or_recent_descendant_stays_whole(
    engine: Durable, clock: FakeClock, change: dict[str, object]
) -> None:
    root = finished(engine, "p-parent")
    [child] = tree_of(engine, root) - {root}
    clock.advance(MONTH + DAY)
    values = {key: value if value is not None else clock() for key, value in change.items()}
    with engine.sa_engine.begin() as conn:
        conn.execute(sa.update(runs_table).where(runs_table.c.id == child).values(**values))

    assert engine.admin.prune(older_than=MONTH) == PruneResult()
    assert run_ids(engine) == {root, child}


def dead_letter_next_job(engine: Durable) -> None:
    job = engine.admin.claim()
    assert job is not None
    engine.backend.dead_letter(job, error="crashed its worker every time")


def test_leftover_jobs_and_dead_letters_of_pruned_runs_go(
    engine: Durable, clock: FakeClock
) -> None:
    # A dead letter (a job that crashed its workers), then the run recovered.
    lettered = engine.start("p-two").run_id
    dead_letter_next_job(engine)
    assert engine.recover() == 1
    drain(engine)
    # A live run with a dead letter of its own: kept, and so is its letter.
    live = engine.start("p-wait").run_id
    dead_letter_next_job(engine)
    # A stale job left queued for a finished run (a redelivery that never ran).
    stale = finished(engine, "p-two")
    with Session(engine.sa_engine) as session, session.begin():
        spec = JobSpec(payload=AdvanceJob(run_id=stale, step_index=0), available_at=clock())
        engine.backend.enqueue(session, [spec])
    assert table_counts(engine)[2:] == (1, 2)
    with Session(engine.sa_engine) as session:
        lettered_runs = set(session.scalars(sa.select(DeadLetter.run_id)))
    assert lettered_runs == {lettered, live}
    clock.advance(MONTH + DAY)

    result = engine.admin.prune(older_than=MONTH)

    assert result == PruneResult(runs=2, journal_entries=4, jobs=1, dead_letters=1, batches=1)
    assert run_ids(engine) == {live}
    with Session(engine.sa_engine) as session:
        assert list(session.scalars(sa.select(DeadLetter.run_id))) == [live]
        assert list(session.scalars(sa.select(Job.run_id))) == []


def _old_forest(engine: Durable, clock: FakeClock) -> tuple[set[int], int]:
    """Runs of every terminal status, single and in trees, then one live and one recent.

    Returns the ids of the old runs and how many journal entries they have.
    """
    for _ in range(3):
        finished(engine, "p-two")
    finished(engine, "p-fail")
    finished(engine, "p-parent")
    finished(engine, "p-parent")
    canceled = engine.start("p-two-kids").run_id
    drain(engine)
    engine.cancel(canceled)  # 3 runs: root, the completed first child, the canceled second
    old = run_ids(engine)
    clock.advance(MONTH + DAY)
    engine.start("p-wait")
    finished(engine, "p-two")
    drain(engine)
    return old, journal_entries_of(engine, old)


@pytest.mark.parametrize("batch_size", [1, 2, 3, 4, 1000])
def test_batches_delete_what_one_batch_does(
    engine: Durable, clock: FakeClock, batch_size: int
) -> None:
    old, entries = _old_forest(engine, clock)
    assert len(old) == 11
    survivors = run_ids(engine) - old

    result = engine.admin.prune(older_than=MONTH, batch_size=batch_size)

    assert (result.runs, result.journal_entries, result.jobs, result.dead_letters) == (
        11,
        entries,
        0,
        0,
    )
    assert run_ids(engine) == survivors
    trees = [1, 1, 1, 1, 2, 2, 3]  # sizes; each batch holds whole trees
    if batch_size == 1:
        assert result.batches == len(trees)  # a tree larger than a batch is one of its own
    elif batch_size >= sum(trees):
        assert result.batches == 1
    else:
        assert -(-sum(trees) // batch_size) <= result.batches <= len(trees)


def test_a_dry_run_counts_and_deletes_nothing(engine: Durable, clock: FakeClock) -> None:
    _old_forest(engine, clock)
    before = table_counts(engine)

    dry = engine.admin.prune(older_than=MONTH, batch_size=4, dry_run=True)

    assert dry.dry_run
    assert table_counts(engine) == before
    real = engine.admin.prune(older_than=MONTH, batch_size=4)
    assert not real.dry_run
    assert dry == PruneResult(
        runs=real.runs,
        journal_entries=real.journal_entries,
        jobs=real.jobs,
        dead_letters=real.dead_letters,
        batches=real.batches,
        dry_run=True,
    )
    assert real.runs == 11
    assert engine.admin.prune(older_than=MONTH, dry_run=True) == PruneResult(dry_run=True)


def test_nothing_to_prune_is_zero_batches(engine: Durable) -> None:
    assert engine.admin.prune(older_than=MONTH) == PruneResult()
    finished(engine, "p-two")
    assert engine.admin.prune(older_than=MONTH) == PruneResult()
    assert engine.admin.prune(older_than=timedelta.max) == PruneResult()  # before the year 1


def _bulk_finished_runs(engine: Durable, how_many: int, finished_at: object) -> None:
    """Insert completed top-level runs with two journal entries each, directly."""
    rows = [
        {
            "workflow_name": "p-two",
            "input": {},
            "status": RunStatus.COMPLETED,
            "state": {},
            "current_step": 2,
            "total_steps": 2,
            "created_at": finished_at,
            "updated_at": finished_at,
        }
        for _ in range(how_many)
    ]
    with engine.sa_engine.begin() as conn:
        conn.execute(sa.insert(runs_table), rows)
        ids = list(conn.scalars(sa.select(runs_table.c.id)))
        conn.execute(
            sa.insert(journal_table),
            [
                {
                    "run_id": run_id,
                    "step_id": step,
                    "status": "completed",
                    "completed_at": finished_at,
                }
                for run_id in ids
                for step in ("a", "b")
            ],
        )


def test_a_big_prune_runs_alongside_a_worker(engine: Durable, clock: FakeClock) -> None:
    _bulk_finished_runs(engine, 1200, clock() - MONTH - DAY)  # more than two IN-list chunks
    assert retention._CHUNK < 1200
    new = [engine.start("p-two").run_id for _ in range(20)]
    with engine.worker(concurrency=2, poll_interval=0.02):
        result = engine.admin.prune(older_than=MONTH, batch_size=700)
        for run_id in new:
            engine.wait(run_id, timeout=30)
    assert result == PruneResult(runs=1200, journal_entries=2400, batches=2)
    assert run_ids(engine) == set(new)
    assert all(engine.status(run_id).status == "completed" for run_id in new)


def test_a_tree_that_changed_after_it_was_read_is_skipped(
    engine: Durable, clock: FakeClock
) -> None:
    root = finished(engine, "p-parent")
    other = finished(engine, "p-two")
    clock.advance(MONTH + DAY)
    cutoff = clock() - MONTH
    with engine.shell.reading() as session:
        trees = retention._whole_trees(session, [root, other], cutoff)
    assert [tree.size for tree in trees] == [2, 1]
    # Meanwhile a run of the first tree gains a child; only a hand-written row does that.
    with engine.sa_engine.begin() as conn:
        conn.execute(
            sa.insert(runs_table).values(
                workflow_name="p-two",
                input={},
                status=RunStatus.RUNNING,
                state={},
                parent_run_id=root,
                created_at=clock(),
                updated_at=clock(),
            )
        )

    delete = functools.partial(retention._delete_batch, batch=trees, cutoff=cutoff)
    counts = engine.shell.transaction(delete)

    assert counts["runs"] == 1
    assert other not in run_ids(engine)
    assert root in run_ids(engine)


def test_a_run_that_is_no_longer_prunable_when_locked_is_kept(
    engine: Durable, clock: FakeClock
) -> None:
    root = finished(engine, "p-parent")
    clock.advance(MONTH + DAY)
    cutoff = clock() - MONTH
    with engine.shell.reading() as session:
        [tree] = retention._whole_trees(session, [root], cutoff)
    [child] = tree.generations[1]
    with engine.sa_engine.begin() as conn:  # the child "finished" after the read
        conn.execute(
            sa.update(runs_table).where(runs_table.c.id == child).values(updated_at=clock())
        )

    counts = engine.shell.transaction(
        functools.partial(retention._delete_batch, batch=[tree], cutoff=cutoff)
    )

    assert counts == {"dead_letters": 0, "jobs": 0, "journal_entries": 0, "runs": 0, "signals": 0}
    assert run_ids(engine) == {root, child}


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({"older_than": timedelta(seconds=-1)}, "older_than must not be negative"),
        ({"older_than": 30}, "older_than must be a datetime.timedelta"),
        ({"older_than": "30d"}, "such as timedelta(days=30), not '30d'"),
        ({"older_than": None}, "not None"),
        ({"older_than": MONTH, "batch_size": 0}, "batch_size must be a whole number of at least 1"),
        ({"older_than": MONTH, "batch_size": -5}, "not -5"),
        ({"older_than": MONTH, "batch_size": 2.5}, "not 2.5"),
        ({"older_than": MONTH, "batch_size": True}, "not True"),
        ({"older_than": MONTH, "batch_size": "10"}, "not '10'"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_read(
    engine: Durable, clock: FakeClock, arguments: dict[str, object], says: str
) -> None:
    finished(engine, "p-two")
    clock.advance(MONTH + DAY)
    with pytest.raises(InvalidArgumentError) as caught:
        engine.admin.prune(**arguments)  # type: ignore[arg-type]
    assert says in str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert len(run_ids(engine)) == 1
