"""Hypothesis strategies for the pure core, shared by the property tests.

Every snapshot drawn here is one the engine could have written: its step position,
attempt, compensation cursor, wait columns, ``resume_data`` and ``wake_at`` are
consistent with its status. Outcomes are drawn for a given run, as the step driver would
produce them for the run's current step.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from hypothesis import strategies as st

from durable_sa.core.jobs import SignalTimeoutJob
from durable_sa.core.outcomes import (
    Advance,
    AwaitChild,
    AwaitSignal,
    Complete,
    Failed,
    Sleep,
    StepOutcome,
    SuspendAgent,
)
from durable_sa.core.snapshot import (
    NOT_WAITING,
    JournalStatus,
    JournalWrite,
    RunSnapshot,
    WaitInfo,
    WaitKind,
)
from durable_sa.core.status import TERMINAL_STATUSES, RunStatus
from durable_sa.core.transition import ParentSettlement, Settlement

if TYPE_CHECKING:
    from hypothesis.strategies import DrawFn, SearchStrategy

    from durable_sa.core.codec import JSONObject, JSONValue

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
MAX_STEPS = 8

NON_TERMINAL_STATUSES = tuple(s for s in RunStatus if s not in TERMINAL_STATUSES)
SIGNAL_NAMES = ("approve", "go", "payment", "s1")

any_status = st.sampled_from(RunStatus)
any_wait_kind = st.sampled_from(WaitKind)
rarely = st.integers(0, 9).map(lambda n: n == 0)


def step_name(index: int) -> str:
    return f"s{index}"


json_text = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=6)
"""Strings JSONB can hold: no NUL, no lone surrogate."""

json_scalars: SearchStrategy[JSONValue] = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | json_text
)
json_values: SearchStrategy[JSONValue] = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(json_text, children, max_size=3)
    ),
    max_leaves=6,
)
json_objects: SearchStrategy[JSONObject] = st.dictionaries(json_text, json_values, max_size=3)
instants: SearchStrategy[datetime] = st.integers(-86_400, 86_400).map(
    lambda seconds: NOW + timedelta(seconds=seconds)
)
positive_durations: SearchStrategy[timedelta] = st.integers(1, 7 * 86_400).map(
    lambda seconds: timedelta(seconds=seconds)
)
failures: SearchStrategy[str] = st.text(min_size=1, max_size=20)
run_ids: SearchStrategy[int] = st.integers(1, 2**31)


@st.composite
def run_snapshots(  # noqa: C901, PLR0912 - one branch per status, on purpose
    draw: DrawFn,
    statuses: SearchStrategy[RunStatus] = any_status,
    *,
    wait_kinds: SearchStrategy[WaitKind] = any_wait_kind,
    past_end: SearchStrategy[bool] = rarely,
) -> RunSnapshot:
    """A run the engine could have stored.

    ``wait_kinds`` picks what a suspended run waits for; ``past_end`` whether a running
    run is past its last step (its next advance completes it).
    """
    status = draw(statuses)
    total = draw(st.integers(1, MAX_STEPS))
    if status is RunStatus.COMPLETED:
        current = total
    elif status is RunStatus.PENDING:
        current = 0
    elif status is RunStatus.RUNNING and draw(past_end):
        current = total
    else:
        current = draw(st.integers(0, total - 1))
    attempt = 1 if status is RunStatus.PENDING else draw(st.integers(1, 5))

    done = draw(st.sets(st.integers(0, max(current - 1, 0)), max_size=current))
    state: JSONObject = {step_name(i): draw(json_values) for i in sorted(done) if i < current}

    cursor: int | None = None
    wait: WaitInfo | None = None
    resume_data: JSONValue = None
    wake_at: datetime | None = None
    error: str | None = draw(st.none() | failures)
    result: JSONObject | None = None

    if status is RunStatus.RUNNING:
        wake_at = draw(st.none() | instants)  # sleeping until wake_at
        if draw(st.booleans()):
            resume_data = draw(json_values)
    elif status is RunStatus.SUSPENDED:
        name = step_name(current)
        kind = draw(wait_kinds)
        if kind is WaitKind.SIGNAL:
            signal = draw(st.sampled_from(SIGNAL_NAMES))
            wait = WaitInfo(kind=kind, step=name, signal=signal)
            wake_at = draw(st.none() | instants)  # the timeout's deadline
        elif kind is WaitKind.AGENT:
            wait = WaitInfo(kind=kind, step=name)
            state[name] = {"status": "suspended", "state": draw(json_values)}
        else:
            wait = WaitInfo(kind=kind, step=name)
    elif status is RunStatus.COMPENSATING:
        cursor = draw(st.integers(0, current))
        error = draw(failures)
    elif status is RunStatus.FAILED:
        cursor = draw(st.none() | st.integers(-1, current))
        error = draw(failures)
    elif status is RunStatus.COMPLETED:
        result = dict(state)

    parent = draw(st.none() | st.tuples(run_ids, st.sampled_from(["child", "sub", "s0"])))
    return RunSnapshot(
        id=draw(run_ids),
        workflow_name=draw(st.sampled_from(["orders", "billing", "child-wf"])),
        workflow_version=draw(st.none() | st.just("v1") | st.just("fp-0123456789abcdef")),
        status=status,
        current_step=current,
        total_steps=total,
        attempt=attempt,
        compensation_cursor=cursor,
        input=draw(json_objects),
        state=state,
        result=result,
        parent_run_id=None if parent is None else parent[0],
        parent_step_id=None if parent is None else parent[1],
        **(NOT_WAITING if wait is None else wait.columns()),  # type: ignore[arg-type]
        resume_data=resume_data,
        wake_at=wake_at,
        error=error,
    )


def running_snapshots(*, past_end: bool | None = None) -> SearchStrategy[RunSnapshot]:
    if past_end is None:
        return run_snapshots(st.just(RunStatus.RUNNING))
    return run_snapshots(st.just(RunStatus.RUNNING), past_end=st.just(past_end))


def suspended_snapshots(
    wait_kinds: SearchStrategy[WaitKind] = any_wait_kind,
) -> SearchStrategy[RunSnapshot]:
    return run_snapshots(st.just(RunStatus.SUSPENDED), wait_kinds=wait_kinds)


def compensating_snapshots() -> SearchStrategy[RunSnapshot]:
    return run_snapshots(st.just(RunStatus.COMPENSATING))


def unit_ids(name: str) -> SearchStrategy[list[str]]:
    """Distinct journal ids for one step's units: the step, entries, iterations, route."""
    ids = [name, f"{name}#a", f"{name}#b", f"{name}#iter1", f"{name}#iter2", f"{name}#route"]
    return st.lists(st.sampled_from(ids), unique=True, max_size=4)


@st.composite
def journal_writes(
    draw: DrawFn, name: str, attempt: int, *, failed: bool = False
) -> tuple[JournalWrite, ...]:
    writes = [
        JournalWrite(
            step_id=step_id,
            status=JournalStatus.COMPLETED,
            result=draw(json_values),
            attempt=attempt,
        )
        for step_id in draw(unit_ids(name))
        if step_id != name or not failed
    ]
    if failed:
        writes.append(
            JournalWrite(
                step_id=name, status=JournalStatus.FAILED, error=draw(failures), attempt=attempt
            )
        )
    return tuple(writes)


@st.composite
def advances(draw: DrawFn, name: str, attempt: int) -> Advance:
    journal = draw(journal_writes(name, attempt))
    patch: JSONObject = {w.step_id.split("#")[-1]: w.result for w in journal if w.step_id != name}
    patch[name] = draw(json_values)
    return Advance(journal=journal, result_patch=patch)


@st.composite
def sleeps(draw: DrawFn, name: str) -> Sleep:
    if draw(st.booleans()):
        return Sleep(step_name=name, until=draw(instants))
    delay = draw(st.integers(0, 7 * 86_400).map(lambda s: timedelta(seconds=s)))
    return Sleep(step_name=name, delay=delay)


@st.composite
def await_signals(draw: DrawFn, name: str) -> AwaitSignal:
    return AwaitSignal(
        step_name=name,
        signal=draw(st.sampled_from(SIGNAL_NAMES)),
        timeout=draw(st.none() | positive_durations),
    )


@st.composite
def suspend_agents(draw: DrawFn, name: str) -> SuspendAgent:
    snapshot = {
        "status": "suspended",
        "state": draw(json_values),
        "pending_tool_calls": draw(st.lists(json_objects, max_size=2)),
    }
    return SuspendAgent(step_name=name, snapshot=snapshot)


@st.composite
def await_children(draw: DrawFn, name: str) -> AwaitChild:
    return AwaitChild(
        step_name=name,
        child_name=draw(st.sampled_from(["child-wf", "billing"])),
        child_version=draw(st.none() | st.just("v2")),
        child_total_steps=draw(st.integers(1, MAX_STEPS)),
        child_input=draw(json_objects),
    )


@st.composite
def finished_units(draw: DrawFn, name: str, attempt: int) -> tuple[JournalWrite, ...]:
    """What a failed attempt finished first: units only, never the step's own row."""
    return draw(journal_writes(name, attempt, failed=True))[:-1]


@st.composite
def retries(draw: DrawFn, name: str, attempt: int) -> Failed:
    """A failed attempt with attempts left: the core retries it."""
    return Failed(
        step_name=name,
        journal=draw(finished_units(name, attempt)),
        failure=draw(failures),
        backoff=draw(st.sampled_from(["exponential", "linear"])),
        max_attempts=attempt + draw(st.integers(1, 3)),
    )


@st.composite
def compensates(draw: DrawFn, name: str, attempt: int) -> Failed:
    """A failed last attempt: the core journals the failure and rolls back."""
    return Failed(
        step_name=name,
        journal=draw(finished_units(name, attempt)),
        failure=draw(failures),
        backoff=draw(st.sampled_from(["exponential", "linear"])),
        max_attempts=draw(st.integers(1, attempt)),
        undo_failed_step=draw(st.booleans()),
    )


OUTCOME_KINDS = (
    "advance",
    "sleep",
    "await_signal",
    "suspend_agent",
    "await_child",
    "retry",
    "compensate",
)
"""The outcomes of executing a step that is not past the end (then it is ``Complete``)."""
any_outcome_kind = st.sampled_from(OUTCOME_KINDS)


def step_outcomes(run: RunSnapshot, attempt: int, kind: str) -> SearchStrategy[StepOutcome]:
    """What executing ``run``'s current step as ``attempt`` can produce, of ``kind``."""
    name = step_name(run.current_step)
    builders: dict[str, SearchStrategy[StepOutcome]] = {
        "advance": advances(name, attempt),
        "sleep": sleeps(name),
        "await_signal": await_signals(name),
        "suspend_agent": suspend_agents(name),
        "await_child": await_children(name),
        "retry": retries(name, attempt),
        "compensate": compensates(name, attempt),
    }
    return builders[kind]


@st.composite
def step_cases(
    draw: DrawFn, kinds: SearchStrategy[str] = any_outcome_kind
) -> tuple[RunSnapshot, StepOutcome, int]:
    """A running snapshot, the attempt its live job carries, and that attempt's outcome.

    A run past its last step can only complete (Phase A emits ``Complete``).
    """
    run = draw(running_snapshots())
    attempt = run.attempt
    if run.current_step >= run.total_steps:
        return run, Complete(), attempt
    return run, draw(step_outcomes(run, attempt, draw(kinds))), attempt


@st.composite
def cases_of_kind(draw: DrawFn, kind: str) -> tuple[RunSnapshot, StepOutcome, int]:
    """Like :func:`step_cases`, for one outcome kind (``"complete"`` included)."""
    run = draw(running_snapshots(past_end=kind == "complete"))
    if kind == "complete":
        return run, Complete(), run.attempt
    return run, draw(step_outcomes(run, run.attempt, kind)), run.attempt


@st.composite
def signal_timeout_jobs(draw: DrawFn, run: RunSnapshot) -> SignalTimeoutJob:
    """A timer for the run's own wait (often) or for some other position (stale)."""
    wait = run.waiting_for
    if wait is not None and wait.signal is not None and draw(st.booleans()):
        return SignalTimeoutJob(run_id=run.id, step_index=run.current_step, signal=wait.signal)
    return SignalTimeoutJob(
        run_id=run.id,
        step_index=draw(st.integers(0, MAX_STEPS)),
        signal=draw(st.sampled_from(SIGNAL_NAMES)),
    )


@st.composite
def settlements(draw: DrawFn, parent: RunSnapshot) -> ParentSettlement:
    """A child's settlement addressed to ``parent``'s current step (often) or another one."""
    wait = parent.waiting_for
    step = (
        wait.step
        if wait is not None and draw(st.booleans())
        else draw(st.sampled_from(["child", "sub", "s0", "s1"]))
    )
    settlement = draw(st.sampled_from(Settlement))
    return ParentSettlement(
        parent_run_id=parent.id,
        child_run_id=draw(run_ids),
        child_workflow="child-wf",
        child_step_id=step,
        settlement=settlement,
        result=draw(json_objects | st.none()) if settlement is Settlement.COMPLETED else None,
        error=None if settlement is Settlement.COMPLETED else draw(st.none() | failures),
    )


@st.composite
def resume_signals(draw: DrawFn, run: RunSnapshot) -> str:
    """The signal the run waits for (often) or any other name."""
    if run.resume_signal is not None and draw(st.booleans()):
        return run.resume_signal
    return draw(st.sampled_from([*SIGNAL_NAMES, "s0", "s3", "nope"]))
