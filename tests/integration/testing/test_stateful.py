"""A hypothesis state machine drives random workflows through the real engine on SQLite.

Each example gets a fresh SQLite file, an engine on a :class:`FakeClock` (retry jitter
off) and a :class:`Driver`. Rules start runs of a fixed set of ``sm-`` workflows
(sequential, parallel, saga, signal with a timeout, durable sleep, parent and child, route
and loop; some with idempotency keys), deliver the next due job under a random fault
(crash after phase A, crash after commit, duplicate and concurrent duplicate deliveries),
in order or while another worker holds the oldest jobs, resume runs with the right or a
wrong signal, cancel runs or their children, move the clock, and call ``recover()``, after
losing every queued job or not.

After every rule the database is checked, and runs are observed after every single job,
so each change of a run is seen on its own:

- every status is a :class:`RunStatus`; a status only changes along a legal move, a
  terminal status never changes, a new run is first seen ``running``; steps never go
  back, the compensation cursor never goes up, a retry waits its exact backoff and a
  signal wait's deadline is its timeout from when it began;
- journal units are unique per (run, step); ``#compensate`` rows of a run appear in
  decreasing step order, only for steps above a compensating run's cursor, and a failed
  run compensated exactly the steps below the one that failed;
- jobs: none is left claimed; every job the engine enqueued is the *current* one of its
  run (it passes the engine's own staleness guards). Only the copies the driver
  re-enqueues to simulate a lost acknowledgement (``CrashAfterCommit``) may be stale;
- a running run has exactly one current job (an advance, due at its wake time), a
  compensating run exactly one (its cursor), a run waiting for the signal exactly one
  (its timer, due at the deadline), a run waiting for a child none, and a terminal run
  none; so ``recover()`` finds nothing to do unless jobs were lost, and then exactly the
  runs that need one;
- a child that has not ended has a parent suspended on it, and such a parent has exactly
  one child that has not ended;
- a completed run's results equal the fault-free results for its input (and the signal
  data it accepted); no dead letters;
- handlers (which record every execution): steps run in order, nothing runs forward after
  a compensator ran, compensators run in decreasing step order and only for units that
  completed, every journaled compensation really ran its compensators, a unit never runs
  again once its journal row was committed, no handler runs for a run once it ended, a
  sleep is never cut short and a signal never times out early.

At teardown every run is settled without faults (awaited signals are delivered, time
jumps to the next due job); every run must end and the jobs table must be empty.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import threading
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from durable_sa import Durable, DurableContext, durable, registry
from durable_sa.core.backoff import backoff_delay
from durable_sa.core.decide import (
    is_current_advance,
    is_current_compensation,
    is_current_signal_timeout,
)
from durable_sa.core.definition import LoopStep, ParallelStep, RouteStep, TaskStep
from durable_sa.core.jobs import AdvanceJob, CompensateJob, decode_payload
from durable_sa.core.snapshot import RunSnapshot, WaitKind
from durable_sa.core.status import RunStatus, is_legal_move
from durable_sa.store.models import (
    dead_letters_table,
    jobs_table,
    journal_table,
    runs_table,
)
from durable_sa.store.queries import load_runs
from durable_sa.testing import Driver, FakeClock, clear_jobs, faults

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from durable_sa.core.jobs import JobPayload

# ── the workflows ───────────────────────────────────────────────────────────────

SIGNAL: Final = "approval"
SIGNAL_TIMEOUT: Final = timedelta(seconds=300)
NAP: Final = timedelta(seconds=120)
CLOCK_JUMPS: Final = (1, 5, 60, 150, 400, 3_600)
MAX_TOP_LEVEL_RUNS: Final = 5
SETTLE_ROUNDS: Final = 2_000
MAX_EXAMPLES: Final = 150
STEPS_PER_EXAMPLE: Final = 50
"""~30-40 s on 2 cores; each example is one SQLite file and up to 50 rules."""
OTHER_WORKER: Final = "another-worker"

WORKFLOWS: Final = (
    "sm-seq",
    "sm-par",
    "sm-saga",
    "sm-signal",
    "sm-sleep",
    "sm-parent",
    "sm-child",
    "sm-route",
)


class PlannedError(Exception):
    """A handler failing on purpose (deterministically, from its input and attempt)."""


@attrs.frozen
class Execution:
    """One call of a handler: ``do`` (forward) or ``undo`` (a compensator)."""

    run_id: int
    kind: str
    step: str
    unit: str
    row: str
    """The journal row that, once committed, means this unit must not run again."""
    at: datetime


class Recorder:
    """Every handler execution of the current example, in order (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.executions: list[Execution] = []
        self.clock: FakeClock = FakeClock()

    def reset(self, clock: FakeClock) -> None:
        with self._lock:
            self.executions = []
            self.clock = clock

    def record(self, ctx: DurableContext, kind: str, unit: str, row: str | None = None) -> None:
        """Record a call; ``row`` defaults to the unit's own journal row."""
        if row is None:
            row = ctx.step_name if unit == ctx.step_name else f"{ctx.step_name}#{unit}"
        with self._lock:
            self.executions.append(
                Execution(ctx.run_id, kind, ctx.step_name, unit, row, self.clock())
            )

    def snapshot(self) -> list[Execution]:
        with self._lock:
            return list(self.executions)


RECORDER = Recorder()


def _n(ctx: DurableContext) -> int:
    return int(ctx.input.get("n", 0))


def _fails(ctx: DurableContext) -> bool:
    return bool(ctx.input.get("fail", False))


def do(
    unit: str, compute: Callable[[DurableContext], object], row: str | None = None
) -> Callable[[DurableContext], object]:
    """A forward handler that records its execution, then computes its result."""

    def handler(ctx: DurableContext) -> object:
        RECORDER.record(ctx, "do", unit, row)
        return compute(ctx)

    return handler


def undo(unit: str) -> Callable[[DurableContext], None]:
    """A compensator that records its execution."""

    def handler(ctx: DurableContext) -> None:
        RECORDER.record(ctx, "undo", unit, f"{ctx.step_name}#compensate")

    return handler


def _seq_b(ctx: DurableContext) -> int:
    if _n(ctx) % 2 == 1 and ctx.attempt == 1:
        msg = "b fails on its first attempt when n is odd"
        raise PlannedError(msg)
    return int(ctx.results["a"]) * 2


async def _par_y(ctx: DurableContext) -> int:
    RECORDER.record(ctx, "do", "y")
    if _fails(ctx):
        msg = "y fails for good"
        raise PlannedError(msg)
    return _n(ctx) + 20


def _ship(ctx: DurableContext) -> None:
    msg = f"the carrier refused attempt {ctx.attempt}"
    raise PlannedError(msg)


def _child_c2(ctx: DurableContext) -> int:
    if _fails(ctx):
        msg = "c2 fails for good"
        raise PlannedError(msg)
    return int(ctx.results["c1"]) + 1


def _route_pick(ctx: DurableContext) -> str:
    return ("none", "lo", "hi")[_n(ctx) % 3]


def _loop_body(value: object, ctx: DurableContext) -> int:
    current = int(str(value))
    iteration = current - _n(ctx) % 2
    RECORDER.record(ctx, "do", f"iter{iteration}", f"{ctx.step_name}#iter{iteration}")
    if _fails(ctx) and ctx.attempt == 1 and current == _n(ctx) % 2 + 1:
        msg = "the second iteration fails on the first attempt"
        raise PlannedError(msg)
    return current + 1


def define_workflows() -> None:
    """Register the machine's workflows (replacing earlier definitions of the same names)."""
    (
        durable("sm-seq")
        .step("a", do("a", lambda ctx: _n(ctx) + 1))
        .step("b", do("b", _seq_b))
        .step("c", do("c", lambda ctx: int(ctx.results["b"]) + 3))
    )
    (
        durable("sm-par")
        .step("prep", do("prep", _n), compensate=undo("prep"))
        .parallel(
            "fan",
            [("x", do("x", lambda ctx: _n(ctx) + 10), undo("x")), ("y", _par_y)],
            max_retries=2,
        )
        .step("after", do("after", lambda ctx: int(ctx.results["x"]) + int(ctx.results["y"])))
    )
    (
        durable("sm-saga")
        .step("reserve", do("reserve", _n), compensate=undo("reserve"))
        .step("charge", do("charge", lambda ctx: _n(ctx) * 2), compensate=undo("charge"))
        .step("ship", do("ship", _ship), max_retries=2, retry_backoff="linear")
    )
    (
        durable("sm-signal")
        .step("ask", do("ask", _n), compensate=undo("ask"))
        .wait_for_signal("approve", SIGNAL, timeout=SIGNAL_TIMEOUT)
        .step(
            "finish",
            do("finish", lambda ctx: {"n": ctx.results["ask"], "approved": ctx.signal("approve")}),
        )
    )
    (
        durable("sm-sleep")
        .step("before", do("before", _n))
        .sleep("nap", NAP)
        .step("after", do("after", lambda ctx: int(ctx.results["before"]) + 1))
    )
    (
        durable("sm-child")
        .step("c1", do("c1", lambda ctx: _n(ctx) * 3))
        .step("c2", do("c2", _child_c2), max_retries=2)
    )
    (
        durable("sm-parent")
        .step("p1", do("p1", _n), compensate=undo("p1"))
        .child_workflow("kid", "sm-child", lambda ctx: {"n": _n(ctx), "fail": _fails(ctx)})
        .step("p2", do("p2", lambda ctx: int(ctx.results["kid"]["c2"]) * 10))
    )
    (
        durable("sm-route")
        .route(
            "pick",
            do("resolver", _route_pick, row="pick#route"),
            {
                "lo": do("lo", lambda ctx: _n(ctx) * 10, row="pick"),
                "hi": do("hi", lambda ctx: _n(ctx) * 100, row="pick"),
            },
        )
        .loop(
            "count",
            _loop_body,
            5,
            until=lambda result, _done: int(str(result)) >= 3,
            feedback=lambda result: result,
            map_input=lambda ctx: _n(ctx) % 2,
        )
    )


def expected_results(workflow: str, n: int, fail: bool, journal: dict[str, Any]) -> Any:
    """The results of a fault-free completed run; ``None`` when it cannot complete."""
    kid = {"c1": 3 * n, "c2": 3 * n + 1}
    approved = journal["approve"].result if "approve" in journal else None
    pick = {1: {"pick": n * 10}, 2: {"pick": n * 100}}.get(n % 3, {})
    expected: dict[str, Any] = {
        "sm-seq": {"a": n + 1, "b": 2 * (n + 1), "c": 2 * (n + 1) + 3},
        "sm-par": None if fail else {"prep": n, "x": n + 10, "y": n + 20, "after": 2 * n + 30},
        "sm-saga": None,  # ship always fails
        "sm-signal": {"ask": n, "approve": approved, "finish": {"n": n, "approved": approved}},
        "sm-sleep": {"before": n, "after": n + 1},
        "sm-child": None if fail else kid,
        "sm-parent": None if fail else {"p1": n, "kid": kid, "p2": (3 * n + 1) * 10},
        "sm-route": {**pick, "count": 3},
    }
    return expected[workflow]


# ── reading the database ────────────────────────────────────────────────────────


@attrs.frozen
class JobRow:
    id: int
    run_id: int
    kind: str
    payload: Any
    available_at: datetime
    claimed_by: str | None


@attrs.frozen
class JournalRow:
    id: int
    run_id: int
    step_id: str
    status: str
    result: Any
    completed_at: datetime


@attrs.frozen
class World:
    """Everything the invariants look at, read in one go."""

    raw_statuses: dict[int, str]
    runs: dict[int, RunSnapshot]
    jobs: list[JobRow]
    journal: dict[int, list[JournalRow]]
    journal_duplicates: list[tuple[int, str, int]]
    dead_letters: list[str]


def read_world(engine: Durable) -> World:
    with engine.shell.reading() as session:
        raw = {
            int(rid): str(status)
            for rid, status in session.execute(sa.text("SELECT id, status FROM durable_runs"))
        }
        snapshots = (
            load_runs(session, sorted(raw)) if all(s in _STATUSES for s in raw.values()) else []
        )
        jobs = [
            JobRow(
                id=int(r.id),
                run_id=int(r.run_id),
                kind=r.kind,
                payload=r.payload,
                available_at=r.available_at,
                claimed_by=r.claimed_by,
            )
            for r in session.execute(
                sa.select(
                    jobs_table.c.id,
                    jobs_table.c.run_id,
                    jobs_table.c.kind,
                    jobs_table.c.payload,
                    jobs_table.c.available_at,
                    jobs_table.c.claimed_by,
                ).order_by(jobs_table.c.id)
            )
        ]
        journal: dict[int, list[JournalRow]] = defaultdict(list)
        for r in session.execute(
            sa.select(
                journal_table.c.id,
                journal_table.c.run_id,
                journal_table.c.step_id,
                journal_table.c.status,
                journal_table.c.result,
                journal_table.c.completed_at,
            ).order_by(journal_table.c.id)
        ):
            journal[int(r.run_id)].append(
                JournalRow(
                    id=int(r.id),
                    run_id=int(r.run_id),
                    step_id=r.step_id,
                    status=r.status,
                    result=r.result,
                    completed_at=r.completed_at,
                )
            )
        duplicates = [
            (int(r[0]), str(r[1]), int(r[2]))
            for r in session.execute(
                sa.select(journal_table.c.run_id, journal_table.c.step_id, sa.func.count())
                .group_by(journal_table.c.run_id, journal_table.c.step_id)
                .having(sa.func.count() > 1)
            )
        ]
        letters = [str(e) for e in session.execute(sa.select(dead_letters_table.c.error)).scalars()]
    return World(
        raw_statuses=raw,
        runs={run.id: run for run in snapshots},
        jobs=jobs,
        journal=dict(journal),
        journal_duplicates=duplicates,
        dead_letters=letters,
    )


_STATUSES: Final = frozenset(s.value for s in RunStatus)


def is_current(run: RunSnapshot, payload: JobPayload) -> bool:
    """The engine's own staleness guards: would this job act on the run now?"""
    if isinstance(payload, AdvanceJob):
        return is_current_advance(run, payload)
    if isinstance(payload, CompensateJob):
        return is_current_compensation(run, payload)
    return is_current_signal_timeout(run, payload)


def step_index(workflow: str, step: str) -> int:
    return registry.get(workflow).step_index(step)


def compensated_steps(workflow: str, rows: list[JournalRow]) -> list[int]:
    """Indexes of the steps with a ``#compensate`` row, in the order they were written."""
    return [
        step_index(workflow, row.step_id.removesuffix("#compensate"))
        for row in rows
        if row.step_id.endswith("#compensate")
    ]


# ── the machine ─────────────────────────────────────────────────────────────────

job_faults = st.sampled_from(
    [
        faults.Deliver(),
        faults.CrashAfterPhaseA(),
        faults.CrashAfterCommit(),
        faults.DuplicateDelivery(),
        faults.ConcurrentDuplicate(),
    ]
)
signal_data = st.sampled_from([None, 1, "yes", {"ok": True}, [1, 2]])


def guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    """Mark the machine broken while ``method`` runs, so teardown does not mask a failure."""

    @functools.wraps(method)
    def wrapper(self: EngineMachine, *args: Any, **kwargs: Any) -> Any:
        self.healthy = False
        result = method(self, *args, **kwargs)
        self.healthy = True
        return result

    return wrapper


class EngineMachine(RuleBasedStateMachine):
    """Random workflows, faults, signals, cancels and clock moves on one SQLite file."""

    runs = Bundle("runs")

    def __init__(self) -> None:
        super().__init__()
        self.healthy = True
        self.directory = Path(tempfile.mkdtemp(prefix="durable-sa-sm-"))
        self.sa_engine = sa.create_engine(
            f"sqlite:///{self.directory / 'machine.sqlite'}", connect_args={"timeout": 30}
        )
        self.clock = FakeClock()
        # Crash faults may hit one job any number of times: never dead-letter it for that.
        self.engine = Durable(self.sa_engine, clock=self.clock, max_job_attempts=1_000_000)
        self.engine.shell.jitter = lambda: 0.0  # retry backoff is a pure function of time
        self.engine.create_tables()
        self.driver = Driver(self.engine)
        RECORDER.reset(self.clock)
        self.top_level = 0
        self.cancels = 0
        self.keys: dict[str, int] = {}
        self.last_seen: dict[int, RunSnapshot] = {}
        self.deadlines: dict[int, datetime] = {}
        self.journaled_at: dict[tuple[int, str], int] = {}
        """(run, journal row) -> how many handler calls were logged when it was first seen."""
        self.executions_when_ended: dict[int, int] = {}
        self.copies: set[int] = set()
        """Job ids the driver re-enqueued to simulate a lost acknowledgement."""

    # ── rules ──────────────────────────────────────────────────────────────────

    @initialize(target=runs, first=st.sampled_from(WORKFLOWS), second=st.sampled_from(WORKFLOWS))
    @guarded
    def start_two(self, first: str, second: str) -> MultipleResults[int]:
        """Every example begins with two runs (the second with ``fail`` set)."""
        return multiple(
            self.start_run(first, 1, fail=False, key=None),
            self.start_run(second, 2, fail=True, key=None),
        )

    @precondition(lambda self: self.top_level < MAX_TOP_LEVEL_RUNS)
    @rule(
        target=runs,
        workflow=st.sampled_from(WORKFLOWS),
        n=st.integers(0, 4),
        fail=st.booleans(),
        key=st.none() | st.sampled_from(["key-a", "key-b"]),
    )
    @guarded
    def start(self, workflow: str, n: int, fail: bool, key: str | None) -> int:
        return self.start_run(workflow, n, fail=fail, key=key)

    def start_run(self, workflow: str, n: int, *, fail: bool, key: str | None) -> int:
        started = self.engine.start(workflow, {"n": n, "fail": fail}, idempotency_key=key)
        if key is not None and key in self.keys:
            assert not started.created, f"a second start with key {key!r} created a run"
            assert started.run_id == self.keys[key]
        else:
            assert started.created
            self.top_level += 1
            if key is not None:
                self.keys[key] = started.run_id
        return started.run_id

    @rule(fault=job_faults, held=st.integers(0, 3))
    @guarded
    def deliver(self, fault: faults.JobFault, held: int) -> None:
        """Deliver the next due job under ``fault``.

        With ``held``, another worker holds that many of the oldest due jobs meanwhile,
        so a later job runs first (deliveries out of order).
        """
        now = self.clock()
        with self.engine.shell.sessions.begin() as session:
            due = list(
                session.execute(
                    sa.select(jobs_table.c.id)
                    .where(jobs_table.c.available_at <= now, jobs_table.c.claimed_by.is_(None))
                    .order_by(jobs_table.c.id)
                ).scalars()
            )
            hold = due[: max(0, min(held, len(due) - 1))]
            session.execute(
                sa.update(jobs_table)
                .where(jobs_table.c.id.in_(hold))
                .values(claimed_by=OTHER_WORKER, claimed_until=now + timedelta(hours=1))
            )
        try:
            self.deliver_one(fault)
        finally:
            self.engine.backend.release_claims(hold, worker=OTHER_WORKER)

    @rule(count=st.integers(1, 8), wait=st.booleans())
    @guarded
    def deliver_several(self, count: int, wait: bool) -> None:
        """Deliver up to ``count`` jobs normally; ``wait``: sleep until one is due."""
        for _ in range(count):
            if self.deliver_one(faults.Deliver()):
                self.observe()  # one job at a time: every move is seen
                continue
            due = self.engine.backend.next_due(now=self.clock())
            if not wait or due is None:
                return
            self.clock.set(due)

    @rule(run=runs, right=st.booleans(), data=signal_data, aim=st.booleans())
    @guarded
    def resume(self, run: int, right: bool, data: Any, aim: bool) -> None:
        """Signal ``run``, or (``aim``) the oldest run that waits for a signal, if any."""
        if aim:
            with self.engine.shell.reading() as session:
                waiting = session.scalar(
                    sa.select(sa.func.min(runs_table.c.id)).where(
                        runs_table.c.awaiting_signal.is_not(None)
                    )
                )
            run = run if waiting is None else int(waiting)
        name = SIGNAL if right else f"not-{SIGNAL}"
        before = self.load(run)
        wait = before.waiting_for
        expected = (
            before.status is RunStatus.SUSPENDED
            and before.awaiting_signal == name
            and wait is not None
            and wait.kind is WaitKind.SIGNAL
            and wait.signal == name
        )
        result = self.engine.resume(run, name, data)
        assert result.accepted == expected, (
            f"resume({run}, {name!r}) accepted={result.accepted} on a {before.status} run "
            f"awaiting {before.awaiting_signal!r}"
        )
        after = self.load(run)
        if expected:
            assert after.status is RunStatus.RUNNING
        else:
            assert after == before, "a refused resume changed the run"

    @precondition(lambda self: self.cancels * 2 < self.top_level)
    @rule(run=runs, child=st.booleans())
    @guarded
    def cancel(self, run: int, child: bool) -> None:
        """Cancel the run (or its newest live child); at most one cancel per two starts."""
        self.cancels += 1
        target = run
        if child:
            world = read_world(self.engine)
            live_children = [
                r.id
                for r in world.runs.values()
                if r.parent_run_id == run and not r.status.is_terminal
            ]
            if live_children:
                target = live_children[-1]
        tree = self.driver.tree(target)
        result = self.engine.cancel(target)
        assert set(result.canceled) == {rid for rid, s in tree.items() if not s.is_terminal}
        assert all(s.is_terminal for s in self.driver.tree(target).values())

    @rule(seconds=st.sampled_from(CLOCK_JUMPS))
    @guarded
    def move_clock(self, seconds: int) -> None:
        before = self.clock()
        self.driver.apply(faults.ClockJump(float(seconds)), 0)
        assert self.clock() == before + timedelta(seconds=seconds)

    @rule(lose=st.booleans())
    @guarded
    def recover(self, lose: bool) -> None:
        """``recover()``; with ``lose``, every queued job is lost first (``clear_jobs``)."""
        needing: set[int] = set()
        if lose:
            world = read_world(self.engine)
            needing = {run.id for run in world.runs.values() if needs_a_job(run)}
            clear_jobs(self.engine)
        recovered = self.engine.recover()
        assert recovered == len(needing), f"recover() gave {recovered} runs a job, not {needing}"

    # ── invariants ─────────────────────────────────────────────────────────────

    @invariant()
    @guarded
    def database_is_consistent(self) -> None:
        world = self.observe()
        self.check_world(world)

    # ── teardown: settle everything without faults ─────────────────────────────

    def teardown(self) -> None:
        try:
            if self.healthy:
                self.settle()
                world = self.observe()
                self.check_world(world)
                stuck = {
                    rid: str(r.status) for rid, r in world.runs.items() if not r.status.is_terminal
                }
                assert not stuck, f"runs did not end: {stuck}"
                assert not world.jobs, f"jobs left behind: {world.jobs}"
        finally:
            self.sa_engine.dispose()
            shutil.rmtree(self.directory, ignore_errors=True)

    def settle(self) -> None:
        for _ in range(SETTLE_ROUNDS):
            if self.driver.run_due(limit=1):
                self.observe()
                continue
            world = read_world(self.engine)
            if not world.jobs and all(r.status.is_terminal for r in world.runs.values()):
                return
            if self.deliver_awaited(world):
                continue
            now = self.clock()
            due = self.engine.backend.next_due(now=now)
            waiting = {
                rid: str(r.status) for rid, r in world.runs.items() if not r.status.is_terminal
            }
            assert due is not None, f"runs {waiting} can never end: no job is queued for them"
            if due > now:
                self.clock.set(due)
        msg = f"settling did not finish in {SETTLE_ROUNDS} rounds"
        raise AssertionError(msg)

    def deliver_awaited(self, world: World) -> bool:
        delivered = False
        for run in world.runs.values():
            if run.status is RunStatus.SUSPENDED and run.resume_signal is not None:
                result = self.engine.resume(run.id, run.resume_signal, {"settled": run.id})
                assert result.accepted, f"run {run.id} refused the signal it awaits"
                self.observe()
                delivered = True
        return delivered

    # ── helpers ────────────────────────────────────────────────────────────────

    def load(self, run_id: int) -> RunSnapshot:
        with self.engine.shell.reading() as session:
            (run,) = load_runs(session, [run_id])
        return run

    def newest_job_id(self) -> int:
        with self.engine.shell.reading() as session:
            return int(session.scalar(sa.select(sa.func.max(jobs_table.c.id))) or 0)

    def deliver_one(self, fault: faults.JobFault) -> bool:
        """Deliver the next due job under ``fault``; False when no job was due."""
        before = self.newest_job_id()
        self.driver.apply(fault, 0)  # job faults hit the next due job, whatever its run
        ran = not self.driver.trace[-1].startswith("(no job was due")
        if ran and isinstance(fault, faults.CrashAfterCommit):
            copy = self.newest_job_id()
            assert copy > before, "the driver did not re-enqueue the job"
            self.copies.add(copy)
        return ran

    def observe(self) -> World:
        """Read the database; check every run's move since the last look, one job ago."""
        world = read_world(self.engine)
        bad = {rid: s for rid, s in world.raw_statuses.items() if s not in _STATUSES}
        assert not bad, f"runs with a status that is not a RunStatus: {bad}"
        assert set(self.last_seen) <= set(world.runs), "a run disappeared"
        log = RECORDER.snapshot()
        executions = Counter(e.run_id for e in log)
        for position, e in enumerate(log):
            seen_at = self.journaled_at.get((e.run_id, e.row))
            assert seen_at is None or position < seen_at, (
                f"run {e.run_id} ran {e.kind} {e.unit!r} of step {e.step!r} again after "
                f"{e.row!r} was journaled"
            )
        for rid, rows in world.journal.items():
            for row in rows:
                if row.status == "completed":
                    self.journaled_at.setdefault((rid, row.step_id), len(log))
        now = self.clock()
        for rid, run in world.runs.items():
            previous = self.last_seen.get(rid)
            if previous is None:
                assert run.status is RunStatus.RUNNING, f"run {rid} was first seen {run.status}"
            else:
                self.check_move(previous, run, now)
            self.last_seen[rid] = run
            if run.status.is_terminal:
                done = self.executions_when_ended.setdefault(rid, executions[rid])
                assert executions[rid] == done, f"a handler ran for run {rid} after it ended"
        return world

    def check_move(self, before: RunSnapshot, after: RunSnapshot, now: datetime) -> None:
        """What one job, resume or cancel may do to a run."""
        rid = after.id
        if before.status is not after.status:
            assert not before.status.is_terminal, f"run {rid} left {before.status}"
            assert is_legal_move(before.status, after.status), (
                f"run {rid} moved {before.status} -> {after.status}, which is not a legal move"
            )
        assert after.current_step >= before.current_step, f"run {rid} went back a step"
        if before.compensation_cursor is not None:
            assert after.compensation_cursor is not None
            assert after.compensation_cursor <= before.compensation_cursor, (
                f"run {rid}'s compensation cursor moved up"
            )
        if (
            before.status is after.status is RunStatus.RUNNING
            and before.current_step == after.current_step
            and before.attempt != after.attempt
        ):
            step = registry.get(after.workflow_name).steps[after.current_step]
            assert isinstance(step, (TaskStep, ParallelStep, RouteStep, LoopStep))
            assert after.attempt == before.attempt + 1, f"run {rid} skipped an attempt"
            delay = backoff_delay(before.attempt, step.retry_backoff, 0.0)
            assert after.wake_at == now + delay, (
                f"run {rid} retries at {after.wake_at}, not {delay} after {now}"
            )
        wait = after.waiting_for
        if (
            before.status is not RunStatus.SUSPENDED
            and after.status is RunStatus.SUSPENDED
            and wait is not None
            and wait.kind is WaitKind.SIGNAL
        ):
            assert after.wake_at == now + SIGNAL_TIMEOUT, (
                f"run {rid} waits until {after.wake_at}, not {SIGNAL_TIMEOUT} after {now}"
            )
            self.deadlines[rid] = after.wake_at

    def check_world(self, world: World) -> None:
        assert not world.journal_duplicates, (
            f"journal units written twice: {world.journal_duplicates}"
        )
        assert not world.dead_letters, f"jobs were dead-lettered: {world.dead_letters}"
        self.check_jobs(world)
        self.check_children(world)
        for run in world.runs.values():
            rows = world.journal.get(run.id, [])
            self.check_compensation_rows(run, rows)
            if run.status is RunStatus.COMPLETED:
                self.check_completed(run, rows)
        self.check_executions(world)

    def check_jobs(self, world: World) -> None:
        now = self.clock()
        current: dict[int, list[tuple[JobRow, JobPayload]]] = defaultdict(list)
        for job in world.jobs:
            assert job.claimed_by is None, f"job {job.id} is still claimed by {job.claimed_by}"
            payload = decode_payload(job.kind, job.payload)
            assert payload.run_id == job.run_id
            run = world.runs[job.run_id]
            if is_current(run, payload):
                current[run.id].append((job, payload))
            else:
                assert job.id in self.copies, (
                    f"job {job.id} ({payload}) of {run.status} run {run.id} is stale, "
                    "but the engine enqueued it"
                )
        for run in world.runs.values():
            mine = current.get(run.id, [])
            kinds = [type(p).__name__ for _, p in mine]
            wait = run.waiting_for
            if run.status is RunStatus.RUNNING:
                assert kinds == ["AdvanceJob"], f"running run {run.id} has current jobs {kinds}"
                check_due(run, mine[0][0], now)
            elif run.status is RunStatus.COMPENSATING:
                assert kinds == ["CompensateJob"], f"compensating run {run.id} has jobs {kinds}"
            elif run.status is RunStatus.SUSPENDED:
                assert wait is not None, f"suspended run {run.id} does not say what it awaits"
                if wait.kind is WaitKind.SIGNAL:
                    assert kinds == ["SignalTimeoutJob"], f"waiting run {run.id} has jobs {kinds}"
                    assert run.wake_at is not None
                    check_due(run, mine[0][0], now)
                else:
                    assert wait.kind is WaitKind.CHILD
                    assert kinds == [], f"run {run.id} waiting for a child has jobs {kinds}"
            else:
                assert kinds == [], f"{run.status} run {run.id} has current jobs {kinds}"

    def check_children(self, world: World) -> None:
        live_children: dict[tuple[int, str], list[int]] = defaultdict(list)
        for run in world.runs.values():
            if run.parent_run_id is None or run.status.is_terminal:
                continue
            parent = world.runs[run.parent_run_id]
            wait = parent.waiting_for
            assert parent.status is RunStatus.SUSPENDED, (
                f"run {run.id} is {run.status}, but its parent {parent.id} is {parent.status}"
            )
            assert wait is not None
            assert wait.kind is WaitKind.CHILD
            assert wait.step == run.parent_step_id
            live_children[parent.id, wait.step].append(run.id)
        for run in world.runs.values():
            wait = run.waiting_for
            if (
                run.status is RunStatus.SUSPENDED
                and wait is not None
                and wait.kind is WaitKind.CHILD
            ):
                children = live_children.get((run.id, wait.step), [])
                assert len(children) == 1, f"run {run.id} waits for children {children}"

    def check_compensation_rows(self, run: RunSnapshot, rows: list[JournalRow]) -> None:
        undone = compensated_steps(run.workflow_name, rows)
        assert undone == sorted(undone, reverse=True), (
            f"run {run.id} compensated steps in the order {undone}"
        )
        if run.status is RunStatus.COMPENSATING:
            cursor = run.compensation_cursor
            assert cursor is not None
            assert cursor >= 0
            assert all(i > cursor for i in undone), f"run {run.id}: {undone}, cursor {cursor}"
        if run.status is RunStatus.FAILED:
            assert run.error, f"failed run {run.id} has no error"
            steps = {s.name for s in registry.get(run.workflow_name).steps}
            failed = [r.step_id for r in rows if r.status == "failed" and r.step_id in steps]
            assert len(failed) == 1, f"failed run {run.id} has failed steps {failed}"
            f = step_index(run.workflow_name, failed[0])
            assert undone in (list(range(f - 1, -1, -1)), list(range(f, -1, -1))), (
                f"run {run.id} failed at step {f} and compensated {undone}"
            )

    def check_completed(self, run: RunSnapshot, rows: list[JournalRow]) -> None:
        by_step = {r.step_id: r for r in rows}
        for step in registry.get(run.workflow_name).steps:
            row = by_step.get(step.name)
            assert row is not None, f"completed run {run.id} has no journal for {step.name!r}"
            assert row.status == "completed"
        n, fail = int(run.input["n"]), bool(run.input["fail"])
        expected = expected_results(run.workflow_name, n, fail, by_step)
        assert expected is not None, f"run {run.id} of {run.workflow_name} {run.input} completed"
        assert run.result == expected, f"run {run.id}: {run.result} != {expected}"
        assert run.current_step == run.total_steps

    def check_executions(self, world: World) -> None:
        per_run: dict[int, list[Execution]] = defaultdict(list)
        for execution in RECORDER.snapshot():
            per_run[execution.run_id].append(execution)
        for rid, executions in per_run.items():
            run = world.runs[rid]
            rows = {r.step_id: r for r in world.journal.get(rid, [])}
            self.check_run_executions(run, executions, rows)

    def check_run_executions(
        self, run: RunSnapshot, executions: list[Execution], rows: dict[str, JournalRow]
    ) -> None:
        undone = check_execution_order(run, executions, rows)
        # every journaled compensation ran the compensators of the units that completed
        for step in registry.get(run.workflow_name).steps:
            mark = rows.get(f"{step.name}#compensate")
            if mark is None or mark.status != "completed":
                continue
            for unit, row_id in compensable_units(step):
                row = rows.get(row_id)
                if row is not None and row.status == "completed":
                    assert unit in undone, f"run {run.id}: {row_id} compensated, {unit!r} not"
        nap = rows.get("nap")
        if run.workflow_name == "sm-sleep" and nap is not None:
            wake_at = datetime.fromisoformat(nap.result["wake_at"])
            assert wake_at == nap.completed_at + NAP, f"run {run.id} sleeps until {wake_at}"
            for e in executions:
                if e.step == "after":
                    assert e.at >= wake_at, f"run {run.id} woke at {e.at}, before {wake_at}"
        approve = rows.get("approve")
        if run.workflow_name == "sm-signal" and approve is not None and approve.status == "failed":
            deadline = self.deadlines[run.id]
            assert approve.completed_at >= deadline, (
                f"run {run.id} timed out at {approve.completed_at}, before {deadline}"
            )


def check_execution_order(
    run: RunSnapshot, executions: list[Execution], rows: dict[str, JournalRow]
) -> set[str]:
    """Steps run forward in order, then compensators backward; the units undone."""
    forward = -1
    backward = run.total_steps
    done: set[str] = set()
    undone: set[str] = set()
    for e in executions:
        index = step_index(run.workflow_name, e.step)
        if e.kind == "do":
            assert not undone, f"run {run.id} ran {e.step!r} forward after compensating"
            assert index >= forward, f"run {run.id} ran step {index} after step {forward}"
            forward = index
            done.add(e.unit)
            continue
        assert index <= backward, f"run {run.id} undid step {index} after {backward}"
        backward = index
        assert e.unit in done, f"run {run.id} undid {e.unit!r}, which never ran"
        row = rows.get(e.step if e.unit == e.step else f"{e.step}#{e.unit}")
        assert row is not None, f"run {run.id} undid {e.unit!r}, which is not journaled"
        assert row.status == "completed"
        undone.add(e.unit)
    return undone


def needs_a_job(run: RunSnapshot) -> bool:
    """True when the run cannot go on without a queued job."""
    if run.status in (RunStatus.RUNNING, RunStatus.COMPENSATING):
        return True
    wait = run.waiting_for
    return (
        run.status is RunStatus.SUSPENDED
        and wait is not None
        and wait.kind is WaitKind.SIGNAL
        and run.wake_at is not None
    )


def check_due(run: RunSnapshot, job: JobRow, now: datetime) -> None:
    """A run's job is due at its wake time (a sleep, a backoff, a deadline), else now."""
    if run.wake_at is not None and run.wake_at > now:
        assert job.available_at == run.wake_at, (
            f"run {run.id}'s job is due at {job.available_at}, but it wakes at {run.wake_at}"
        )
    else:
        assert job.available_at <= now, f"run {run.id}'s job is not due, but nothing waits"


def compensable_units(step: object) -> Iterator[tuple[str, str]]:
    """(unit, journal row) of each unit of ``step`` that has a compensator."""
    if isinstance(step, TaskStep) and step.compensate is not None:
        yield step.name, step.name
    elif isinstance(step, ParallelStep):
        for entry in step.entries:
            if entry.compensate is not None:
                yield entry.name, f"{step.name}#{entry.name}"


# ── the test ────────────────────────────────────────────────────────────────────


@pytest.fixture
def machine_workflows() -> Iterator[None]:
    define_workflows()
    yield
    for name in WORKFLOWS:
        registry.unregister(name)


# Passing takes ~30 s; a failure may take 5 more minutes while hypothesis shrinks it.
@pytest.mark.timeout(900)
def test_engine_state_machine(machine_workflows: None) -> None:
    run_state_machine_as_test(
        EngineMachine,
        settings=settings(
            max_examples=MAX_EXAMPLES,
            stateful_step_count=STEPS_PER_EXAMPLE,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
