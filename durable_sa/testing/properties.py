"""One example, played and checked: the properties every checker mode shares.

An example is an input, a fault schedule and the signal data to send when the run
waits. :func:`run_example` starts a run, plays the schedule, drives the run to its end
without faults, then checks the built-in properties and the caller's:

1. the run (and every child) reaches a terminal state;
2. each journal unit is written once;
3. the outcome equals a fault-free run's with the same input and the same accepted
   signals: same status, same results (less the keys the caller says legitimately
   differ between runs, such as database ids);
4. compensations ran in reverse order of completion, each at most once;
5. no job is left behind, none was dead-lettered;
6. every ``invariant(engine, run_id)`` the caller passed holds.

A broken property raises ``AssertionError`` with the input and the schedule as a
numbered list of what happened, and the ``replay(...)`` call that plays it again. The
hypothesis mode and the exhaustive mode (:mod:`.exhaustive`) both run examples here, so
both check exactly the same things and report them the same way.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from collections.abc import Callable, Collection, Mapping
from typing import Any

import attrs
from sqlalchemy import func, select

from durable_sa.core.codec import JSONValue, to_json_object
from durable_sa.core.keys import RESERVED_PREFIX
from durable_sa.core.registry import registry
from durable_sa.facade import Durable
from durable_sa.store.models import dead_letters_table, jobs_table, journal_table, runs_table
from durable_sa.testing.clock import FakeClock
from durable_sa.testing.driver import Driver
from durable_sa.testing.faults import Event

Invariant = Callable[[Durable, int], object]
"""A check of your own: raise ``AssertionError`` when the run (``run_id``) is wrong."""


@attrs.frozen(kw_only=True)
class Example:
    """One case: what the run gets and what happens to it."""

    input: dict[str, Any]
    schedule: list[Event]
    signals: dict[str, JSONValue]


@attrs.frozen(kw_only=True)
class Outcome:
    """How a run tree ended, in terms that must not depend on faults."""

    status: str
    results: dict[str, Any]
    children: tuple[Outcome, ...]


@attrs.frozen(kw_only=True)
class Checks:
    """What an example is checked against beyond the built-in properties, and how."""

    invariants: tuple[Invariant, ...] = ()
    ignore_result_keys: frozenset[str] = frozenset()
    """Keys left out of the outcome comparison, wherever they occur in the results."""
    found_by: str = "the shrunk schedule"
    """How the report names the schedule it shows."""
    baselines: dict[str, Outcome] | None = attrs.field(default=None, eq=False)
    """Fault-free outcomes already computed, by case: a run of many examples shares one."""


def run_example(engine: Durable, workflow_name: str, case: Example, checks: Checks) -> int:
    """Play ``case`` and check every property; the run id, or ``AssertionError``."""
    return play_example(engine, workflow_name, case, checks)[0]


def play_example(
    engine: Durable, workflow_name: str, case: Example, checks: Checks
) -> tuple[int, Driver]:
    """:func:`run_example`, with the driver too (``driver.played`` is what it did)."""
    checker = engine_for(engine)
    checker.backend.clear()
    driver = Driver(checker)
    run_id = checker.start(workflow_name, case.input).run_id
    problem: str | None = None
    try:
        driver.play(case.schedule, run_id)
        driver.settle(run_id, settle_signals(case.signals))
        problem = _check(
            checker, driver, workflow_name=workflow_name, case=case, run_id=run_id, checks=checks
        )
    except AssertionError:
        raise
    except Exception as exc:  # noqa: BLE001 - an engine error is a finding too
        problem = f"the engine raised {type(exc).__name__}: {exc}"
    if problem is not None:
        raise AssertionError(
            _report(
                workflow_name, case, driver=driver, run_id=run_id, problem=problem, checks=checks
            )
        )
    return run_id, driver


_UNLIMITED_ATTEMPTS = 1_000_000
"""Simulated crashes count as claims: never let them dead-letter a job in a check."""


def engine_for(engine: Durable) -> Durable:
    """An engine on the same database, with a fake clock and no attempt limit."""
    return Durable(engine.sa_engine, clock=FakeClock(), max_job_attempts=_UNLIMITED_ATTEMPTS)


def settle_signals(
    data: Mapping[str, JSONValue],
) -> Callable[[int, str, str], tuple[bool, JSONValue]]:
    """What :meth:`Driver.settle` sends a waiting run: the case's data for its signal."""

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
    checks: Checks,
) -> str | None:
    tree = driver.tree(run_id)
    problem = _structural_problem(engine, tree)
    if problem is not None:
        return problem
    # The invariants first: they see the tables as this run (and before_example) left
    # them, before the fault-free run made for the comparison writes to them too.
    for invariant in checks.invariants:
        try:
            invariant(engine, run_id)
        except AssertionError as exc:
            return f"invariant {_name(invariant)} failed: {exc}"
    faulty = outcome(engine, run_id, checks.ignore_result_keys)
    expected = _baseline(engine, workflow_name, case, driver, faulty_run_id=run_id, checks=checks)
    if faulty != expected:
        return (
            "the outcome differs from a fault-free run with the same input and signals:\n"
            f"    with faults: {_show(faulty)}\n    fault-free:  {_show(expected)}\n"
            "    (a value that differs between runs by nature, such as a run or database "
            "id, is left out with ignore_result_keys=[...])"
        )
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
        left = session.execute(
            select(jobs_table, runs_table.c.workflow_name.label("run_workflow"))
            .join(runs_table, runs_table.c.id == jobs_table.c.run_id)
            .where(jobs_table.c.run_id.in_(ids))
            .order_by(jobs_table.c.id)
        ).all()
    if left:
        return f"{len(left)} job(s) were left behind after the run ended: " + "; ".join(
            map(_describe_job, left)
        )
    return None


def _describe_job(row: Any) -> str:  # noqa: ANN401 - a row of the jobs table
    """One job left behind, as a person looking for the engine's mistake needs it.

    What it was for (kind, step, run), whether someone still holds it, when it was due,
    how often it was claimed and, if it was given back, why.
    """
    payload = row.payload if isinstance(row.payload, Mapping) else {}
    index = payload.get("step_index", payload.get("index"))
    step = ""
    if isinstance(index, int) and registry.has(row.run_workflow):
        steps = registry.get(row.run_workflow).steps
        name = steps[index].name if 0 <= index < len(steps) else "(end)"
        step = f" step {name!r} of"
    held = (
        f"claimed by {row.claimed_by!r} until {row.claimed_until}"
        if row.claimed_by
        else "not claimed"
    )
    error = f", last error: {row.last_error}" if row.last_error else ""
    return (
        f"job {row.id} ({row.kind}{step} run {row.run_id}, {held}, "
        f"due at {row.available_at}, {row.attempts} attempt(s){error})"
    )


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


def _baseline(  # noqa: PLR0913 - one example's context
    engine: Durable,
    workflow_name: str,
    case: Example,
    faulty: Driver,
    *,
    faulty_run_id: int,
    checks: Checks,
) -> Outcome:
    """The same input without faults, resumed with what the faulty run accepted.

    With ``checks.baselines``, a fault-free run already made for the same input,
    signals, accepted signals and timeouts is not made again: if the workflow is not
    deterministic, the faulty run still disagrees with the one kept.
    """
    accepted: dict[tuple[str, str], deque[JSONValue]] = defaultdict(deque)
    for item in faulty.accepted:
        accepted[item.workflow, item.step].append(item.data)
    timed_out = _timed_out(engine, faulty.tree(faulty_run_id))
    key = json.dumps(
        [
            workflow_name,
            to_json_object(case.input, what="input"),
            case.signals,
            sorted((k, list(v)) for k, v in accepted.items()),
            sorted(timed_out),
        ],
        sort_keys=True,
        default=str,
    )
    if checks.baselines is not None and key in checks.baselines:
        return checks.baselines[key]
    clean = engine_for(engine)
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
    expected = outcome(clean, run_id, checks.ignore_result_keys)
    if checks.baselines is not None:
        checks.baselines[key] = expected
    return expected


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


def outcome(engine: Durable, run_id: int, ignore: Collection[str] = ()) -> Outcome:
    """How run ``run_id`` and its children ended, without the keys in ``ignore``."""
    snapshot = engine.status(run_id)

    def convert(snap: Any) -> Outcome:  # noqa: ANN401 - a RunStatusSnapshot
        results = {
            k: _without(v, ignore)
            for k, v in snap.results.items()
            if not k.startswith(RESERVED_PREFIX) and k not in ignore
        }
        return Outcome(
            status=str(snap.status),
            results=results,
            children=tuple(convert(child) for child in snap.children),
        )

    return convert(snapshot)


def _without(value: Any, ignore: Collection[str]) -> Any:  # noqa: ANN401 - any JSON value
    """``value`` with every mapping key in ``ignore`` left out, at any depth."""
    if not ignore:
        return value
    if isinstance(value, Mapping):
        return {k: _without(v, ignore) for k, v in value.items() if k not in ignore}
    if isinstance(value, list | tuple):
        return [_without(v, ignore) for v in value]
    return value


def _show(found: Outcome) -> str:
    text = f"{found.status} {json.dumps(found.results, sort_keys=True, default=str)}"
    if found.children:
        text += " children: " + "; ".join(_show(child) for child in found.children)
    return text


def _describe_stuck(engine: Durable, stuck: Mapping[int, str]) -> str:
    parts = []
    for rid, status in stuck.items():
        snap = engine.status(rid)
        extra = f" waiting for signal {snap.awaiting_signal!r}" if snap.awaiting_signal else ""
        parts.append(f"run {rid} is {status}{extra}")
    return "; ".join(parts) + " (pass signals=... so the checker can send them)"


def _name(invariant: Invariant) -> str:
    return getattr(invariant, "__name__", repr(invariant))


def _report(  # noqa: PLR0913 - everything the report shows
    workflow_name: str,
    case: Example,
    *,
    driver: Driver,
    run_id: int,
    problem: str,
    checks: Checks,
) -> str:
    lines = [
        f"workflow {workflow_name!r} broke a property: {problem}",
        "",
        f"input: {json.dumps(to_json_object(case.input, what='input'), sort_keys=True)}",
        f"what happened to run {run_id} ({checks.found_by}):",
    ]
    if driver.trace:
        lines += [f"  {i}. {line}" for i, line in enumerate(driver.trace, 1)]
    elif problem.startswith("the outcome differs"):
        lines.append(
            "  (no faults at all: two fault-free runs disagree, so the workflow is not "
            "deterministic; look for wall-clock time, randomness or outside state; a run "
            "id or a database id in a result differs between runs by nature: leave its "
            "key out with ignore_result_keys=[...])"
        )
    else:
        lines.append("  (no faults at all: the run breaks the property without any)")
    sent = ", ".join(f"{k}={json.dumps(v)}" for k, v in case.signals.items()) or "none"
    ignored = (
        f", ignore_result_keys={sorted(checks.ignore_result_keys)!r}"
        if checks.ignore_result_keys
        else ""
    )
    names = ", ".join(map(_name, checks.invariants))
    lines += [
        f"then it was driven to its end without faults (signals sent when awaited: {sent}).",
        "",
        "replay it with:",
        "  from durable_sa.testing import faults, replay",
        f"  replay(engine, {workflow_name!r}, input={case.input!r},",
        f"         schedule=[{', '.join('faults.' + repr(e) for e in case.schedule)}],",
        f"         signals={case.signals!r}, invariants=[{names}]{ignored})",
    ]
    return "\n".join(lines)
