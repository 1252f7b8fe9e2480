"""``check_workflow``: property-test a workflow under generated fault schedules.

For each example, hypothesis draws an input, a fault schedule and the signal data to
send when the run waits. The checker starts a run, plays the schedule, drives the run
to its end without faults, then checks the built-in invariants and the caller's:

1. the run (and every child) reaches a terminal state;
2. each journal unit is written once;
3. the outcome equals a fault-free run's with the same input and the same accepted
   signals: same status, same results;
4. compensations ran in reverse order of completion, each at most once;
5. no job is left behind, none was dead-lettered;
6. every ``invariant(engine, run_id)`` the caller passed holds.

A falsified property raises ``AssertionError`` with the input and the shrunk schedule as
a numbered list of what happened, and the call that replays it.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import FlakyFailure
from sqlalchemy import func, select

from durable_sa.core.codec import JSONValue, to_json_object
from durable_sa.core.keys import RESERVED_PREFIX
from durable_sa.core.registry import registry
from durable_sa.facade import Durable
from durable_sa.store.models import dead_letters_table, jobs_table, journal_table, runs_table
from durable_sa.testing.clock import FakeClock
from durable_sa.testing.driver import Driver
from durable_sa.testing.faults import Event
from durable_sa.testing.strategies import schedules

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

Invariant = Callable[[Durable, int], object]
"""A check of your own: raise ``AssertionError`` when the run (``run_id``) is wrong."""


@attrs.frozen(kw_only=True)
class Example:
    """One drawn case: what the run gets and what happens to it."""

    input: dict[str, Any]
    schedule: list[Event]
    signals: dict[str, JSONValue]


@attrs.frozen(kw_only=True)
class Outcome:
    """How a run tree ended, in terms that must not depend on faults."""

    status: str
    results: dict[str, Any]
    children: tuple[Outcome, ...]


def check_workflow(  # noqa: PLR0913 - the fixed signature, plus options
    engine: Durable,
    workflow_name: str,
    *,
    inputs: SearchStrategy[Mapping[str, Any]] | None = None,
    signals: Mapping[str, SearchStrategy[JSONValue]] | None = None,
    invariants: Sequence[Invariant] = (),
    max_examples: int = 100,
    max_events: int = 12,
    concurrent: bool = True,
    derandomize: bool = False,
    before_example: Callable[[Durable], object] | None = None,
) -> None:
    """Run ``workflow_name`` under generated fault schedules and check every invariant.

    ``engine`` gives the database; the checker builds its own engine on it with a
    :class:`FakeClock`, and owns that database's job queue while it runs (it clears
    leftover jobs before each example). ``signals`` maps signal names (or agent step
    names) to strategies of their data. Examples share the database: pass
    ``before_example(engine)`` to reset your own tables between them.

    Raises:
        AssertionError: a property was falsified; the message shows the shrunk case.

    """
    registry.get(workflow_name)  # WorkflowNotRegisteredError at once
    payloads = dict(signals or {})
    cases = st.builds(
        Example,
        input=inputs if inputs is not None else st.just({}),
        schedule=schedules(payloads, max_events=max_events, concurrent=concurrent),
        signals=st.fixed_dictionaries(payloads) if payloads else st.just({}),
    )

    @settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=derandomize,
        suppress_health_check=list(HealthCheck),
        database=None,
        phases=[phase for phase in Phase if phase is not Phase.explain],
    )
    @given(case=cases)
    def falsify(case: Example) -> None:
        if before_example is not None:
            before_example(engine)
        run_example(engine, workflow_name, case, invariants)

    try:
        falsify()
    except FlakyFailure as flaky:
        found = [e for e in flaky.exceptions if isinstance(e, AssertionError)]
        if not found:
            raise
        msg = (
            f"{found[0]}\n\n(this failure did not happen every time the case was replayed: "
            "it depends on thread timing, as concurrent deliveries do)"
        )
        raise AssertionError(msg) from flaky


def replay(  # noqa: PLR0913 - mirrors check_workflow, keyword-only
    engine: Durable,
    workflow_name: str,
    *,
    input: Mapping[str, Any] | None = None,  # noqa: A002 - mirrors start()
    schedule: Sequence[Event] = (),
    signals: Mapping[str, JSONValue] | None = None,
    invariants: Sequence[Invariant] = (),
) -> int:
    """Play one case again (as printed by a failure); its run id, or AssertionError."""
    case = Example(input=dict(input or {}), schedule=list(schedule), signals=dict(signals or {}))
    return run_example(engine, workflow_name, case, invariants)


def run_example(
    engine: Durable, workflow_name: str, case: Example, invariants: Sequence[Invariant]
) -> int:
    """Play ``case`` and check every invariant; the run id."""
    checker = _engine_for(engine)
    checker.backend.clear()
    driver = Driver(checker)
    run_id = checker.start(workflow_name, case.input).run_id
    problem: str | None = None
    try:
        driver.play(case.schedule, run_id)
        driver.settle(run_id, _settle_signals(case.signals))
        problem = _check(
            checker,
            driver,
            workflow_name=workflow_name,
            case=case,
            run_id=run_id,
            invariants=invariants,
        )
    except AssertionError:
        raise
    except Exception as exc:  # noqa: BLE001 - an engine error is a finding too
        problem = f"the engine raised {type(exc).__name__}: {exc}"
    if problem is not None:
        names = [getattr(inv, "__name__", repr(inv)) for inv in invariants]
        raise AssertionError(
            _report(
                workflow_name,
                case,
                driver=driver,
                run_id=run_id,
                problem=problem,
                invariant_names=names,
            )
        )
    return run_id


_UNLIMITED_ATTEMPTS = 1_000_000
"""Simulated crashes count as claims: never let them dead-letter a job in a check."""


def _engine_for(engine: Durable) -> Durable:
    """An engine on the same database, with a fake clock and no attempt limit."""
    return Durable(engine.sa_engine, clock=FakeClock(), max_job_attempts=_UNLIMITED_ATTEMPTS)


def _settle_signals(
    data: Mapping[str, JSONValue],
) -> Callable[[int, str, str], tuple[bool, JSONValue]]:
    def choose(_run_id: int, _step: str, signal: str) -> tuple[bool, JSONValue]:
        if signal in data:
            return True, data[signal]
        return False, None

    return choose


def _check(  # noqa: PLR0913 - one example's context
    engine: Durable,
    driver: Driver,
    *,
    workflow_name: str,
    case: Example,
    run_id: int,
    invariants: Sequence[Invariant],
) -> str | None:
    tree = driver.tree(run_id)
    problem = _structural_problem(engine, tree)
    if problem is not None:
        return problem
    faulty = _outcome(engine, run_id)
    expected = _baseline(engine, workflow_name, case, driver, run_id)
    if faulty != expected:
        return (
            "the outcome differs from a fault-free run with the same input and signals:\n"
            f"    with faults: {_show(faulty)}\n    fault-free:  {_show(expected)}"
        )
    for invariant in invariants:
        try:
            invariant(engine, run_id)
        except AssertionError as exc:
            name = getattr(invariant, "__name__", repr(invariant))
            return f"invariant {name} failed: {exc}"
    return None


def _structural_problem(engine: Durable, tree: Mapping[int, Any]) -> str | None:
    """Terminal states, journal units once, compensation order, no jobs left."""
    ids = list(tree)
    with engine.shell.reading() as session:
        letters = (
            session.execute(
                select(dead_letters_table.c.error).where(dead_letters_table.c.run_id.in_(ids))
            )
            .scalars()
            .all()
        )
    if letters:
        return f"jobs were dead-lettered: {letters}"
    stuck = {rid: str(status) for rid, status in tree.items() if not status.is_terminal}
    if stuck:
        return f"the run did not reach a terminal state: {_describe_stuck(engine, stuck)}"
    with engine.shell.reading() as session:
        doubled = session.execute(
            select(journal_table.c.run_id, journal_table.c.step_id, func.count())
            .where(journal_table.c.run_id.in_(ids))
            .group_by(journal_table.c.run_id, journal_table.c.step_id)
            .having(func.count() > 1)
        ).all()
        if doubled:
            return f"journal units written more than once: {[tuple(r) for r in doubled]}"
        order = _compensation_order_problem(session, tree)
        if order:
            return order
        jobs = session.scalar(
            select(func.count()).select_from(jobs_table).where(jobs_table.c.run_id.in_(ids))
        )
    if jobs:
        return f"{jobs} job(s) were left behind after the run ended"
    return None


def _compensation_order_problem(session: Any, tree: Mapping[int, Any]) -> str | None:  # noqa: ANN401
    for rid in tree:
        workflow = session.scalar(select(runs_table.c.workflow_name).where(runs_table.c.id == rid))
        if workflow is None or not registry.has(workflow):
            continue
        index = {step.name: i for i, step in enumerate(registry.get(workflow).steps)}
        undone = [
            step_id.removesuffix("#compensate")
            for step_id in session.execute(
                select(journal_table.c.step_id)
                .where(
                    journal_table.c.run_id == rid,
                    journal_table.c.step_id.like("%#compensate"),
                )
                .order_by(journal_table.c.id)
            ).scalars()
        ]
        positions = [index.get(name, -1) for name in undone]
        if positions != sorted(positions, reverse=True) or len(set(undone)) != len(undone):
            return f"run {rid} compensated {undone}, not once each in reverse order of completion"
    return None


def _baseline(
    engine: Durable, workflow_name: str, case: Example, faulty: Driver, faulty_run_id: int
) -> Outcome:
    """The same input without faults, resumed with what the faulty run accepted."""
    accepted: dict[tuple[str, str], deque[JSONValue]] = defaultdict(deque)
    for item in faulty.accepted:
        accepted[item.workflow, item.step].append(item.data)
    timed_out = _timed_out(engine, faulty.tree(faulty_run_id))
    clean = _engine_for(engine)
    driver = Driver(clean)
    run_id = clean.start(workflow_name, case.input).run_id

    def choose(rid: int, step: str, signal: str) -> tuple[bool, JSONValue]:
        with clean.shell.reading() as session:
            workflow = session.scalar(
                select(runs_table.c.workflow_name).where(runs_table.c.id == rid)
            )
        queue = accepted.get((str(workflow), step))
        if queue:
            return True, queue.popleft()
        if (str(workflow), step) in timed_out:
            return False, None  # the faulty run timed out here: so does this one
        if signal in case.signals:
            return True, case.signals[signal]
        return False, None

    driver.settle(run_id, choose)
    return _outcome(clean, run_id)


def _timed_out(engine: Durable, tree: Mapping[int, Any]) -> set[tuple[str, str]]:
    """(workflow, step) of signal steps that failed (their deadline passed) in ``tree``."""
    found: set[tuple[str, str]] = set()
    with engine.shell.reading() as session:
        rows = session.execute(
            select(runs_table.c.workflow_name, journal_table.c.step_id)
            .join(runs_table, runs_table.c.id == journal_table.c.run_id)
            .where(journal_table.c.run_id.in_(list(tree)), journal_table.c.status == "failed")
        ).all()
    for workflow, step_id in rows:
        if registry.has(workflow):
            kinds = {s.name: s.type for s in registry.get(workflow).steps}
            if kinds.get(step_id) == "signal":
                found.add((workflow, step_id))
    return found


def _outcome(engine: Durable, run_id: int) -> Outcome:
    snapshot = engine.status(run_id)

    def convert(snap: Any) -> Outcome:  # noqa: ANN401 - a RunStatusSnapshot
        return Outcome(
            status=str(snap.status),
            results={k: v for k, v in snap.results.items() if not k.startswith(RESERVED_PREFIX)},
            children=tuple(convert(child) for child in snap.children),
        )

    return convert(snapshot)


def _show(outcome: Outcome) -> str:
    text = f"{outcome.status} {json.dumps(outcome.results, sort_keys=True, default=str)}"
    if outcome.children:
        text += " children: " + "; ".join(_show(child) for child in outcome.children)
    return text


def _describe_stuck(engine: Durable, stuck: Mapping[int, str]) -> str:
    parts = []
    for rid, status in stuck.items():
        snap = engine.status(rid)
        extra = f" waiting for signal {snap.awaiting_signal!r}" if snap.awaiting_signal else ""
        parts.append(f"run {rid} is {status}{extra}")
    return "; ".join(parts) + " (pass signals=... so the checker can send them)"


def _report(  # noqa: PLR0913 - everything the report shows
    workflow_name: str,
    case: Example,
    *,
    driver: Driver,
    run_id: int,
    problem: str,
    invariant_names: Sequence[str],
) -> str:
    lines = [
        f"workflow {workflow_name!r} broke a property: {problem}",
        "",
        f"input: {json.dumps(to_json_object(case.input, what='input'), sort_keys=True)}",
        f"what happened to run {run_id} (the shrunk schedule):",
    ]
    if driver.trace:
        lines += [f"  {i}. {line}" for i, line in enumerate(driver.trace, 1)]
    else:
        lines.append(
            "  (no faults at all: two fault-free runs disagree, so the workflow is not "
            "deterministic; look for wall-clock time, randomness or outside state)"
        )
    sent = ", ".join(f"{k}={json.dumps(v)}" for k, v in case.signals.items()) or "none"
    lines += [
        f"then it was driven to its end without faults (signals sent when awaited: {sent}).",
        "",
        "replay it with:",
        "  from durable_sa.testing import faults, replay",
        f"  replay(engine, {workflow_name!r}, input={case.input!r},",
        f"         schedule=[{', '.join('faults.' + repr(e) for e in case.schedule)}],",
        f"         signals={case.signals!r}, invariants=[{', '.join(invariant_names)}])",
    ]
    return "\n".join(lines)
