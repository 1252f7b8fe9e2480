"""``check_workflow``: property-test a workflow under generated fault schedules.

For each example, hypothesis draws an input, a fault schedule and the signal data to
send when the run waits; :mod:`.properties` plays it and checks every property. A
falsified property raises ``AssertionError`` with the input and the shrunk schedule as
a numbered list of what happened, and the call that replays it.

Random schedules rarely reach the compensations at the end of a long saga, so when the
workflow compensates anything this mode also always plays one example with a fault on
a compensation job (see :func:`compensation_examples`). ``exhaustive=True`` hands the
whole check to :mod:`.exhaustive` instead: every fault at every job, no sampling.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from hypothesis.errors import FlakyFailure

from durable_sa.core.convert import is_typed_value
from durable_sa.core.registry import registry
from durable_sa.testing.exhaustive import (
    Inputs,
    SignalChoices,
    as_input,
    check_every_fault,
    fault_free_path,
    simplest,
)
from durable_sa.testing.faults import CrashAfterPhaseA, Event
from durable_sa.testing.properties import Checks, Example, Invariant, run_example
from durable_sa.testing.strategies import schedules

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

    from durable_sa.core.codec import JSONValue
    from durable_sa.facade import Durable

GUARANTEED = "a crash of the first compensation job of a fault-free run, always tried"
"""How a report names the compensation example the hypothesis mode always plays."""


def check_workflow(  # noqa: PLR0913 - the fixed signature, plus options
    engine: Durable,
    workflow_name: str,
    *,
    inputs: Inputs = None,
    signals: SignalChoices = None,
    invariants: Sequence[Invariant] = (),
    max_examples: int = 100,
    max_events: int = 12,
    concurrent: bool = True,
    derandomize: bool = False,
    before_example: Callable[[Durable], object] | None = None,
    exhaustive: bool = False,
    ignore_result_keys: Sequence[str] = (),
) -> None:
    """Run ``workflow_name`` under fault schedules and check every property.

    ``engine`` gives the database; the checker builds its own engine on it with a
    :class:`FakeClock`, and owns that database's job queue while it runs (it clears
    leftover jobs before each example). ``inputs`` is a strategy of inputs; ``signals``
    maps signal names (or agent step names) to strategies of their data. Examples
    share the database: pass ``before_example(engine)`` to reset your own tables
    before each one. ``ignore_result_keys`` names keys (step names, or keys inside
    results, at any depth, children's too) whose values legitimately differ between
    runs, such as database ids: the outcome comparison leaves them out.

    ``exhaustive=True`` plays every fault at every job position of the fault-free run
    instead of sampling (:func:`~durable_sa.testing.exhaustive.check_every_fault`):
    there ``inputs`` may also be one input or a list, and each of ``signals`` a list of
    data alternatives; a strategy stands for its simplest value; ``max_examples``,
    ``max_events`` and ``derandomize`` do not apply.

    Raises:
        AssertionError: a property was falsified; the message shows the (shrunk) case.

    """
    registry.get(workflow_name)  # WorkflowNotRegisteredError at once
    if exhaustive:
        check_every_fault(
            engine,
            workflow_name,
            inputs=inputs,
            signals=signals,
            invariants=invariants,
            concurrent=concurrent,
            before_example=before_example,
            ignore_result_keys=ignore_result_keys,
        )
        return
    checks = Checks(invariants=tuple(invariants), ignore_result_keys=frozenset(ignore_result_keys))
    payloads = _strategies(signals)
    cases = st.builds(
        Example,
        input=_strategy(inputs),
        schedule=schedules(payloads, max_events=max_events, concurrent=concurrent),
        signals=st.fixed_dictionaries(payloads) if payloads else st.just({}),
    )
    guaranteed = compensation_examples(
        engine, workflow_name, inputs=inputs, signals=signals, before_example=before_example
    )

    def falsify(case: Example) -> None:
        if before_example is not None:
            before_example(engine)
        how = checks if case not in guaranteed else _found_by(checks, GUARANTEED)
        run_example(engine, workflow_name, case, how)

    test = given(case=cases)(falsify)
    for case in guaranteed:
        test = example(case=case)(test)
    test = settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=derandomize,
        suppress_health_check=list(HealthCheck),
        database=None,
        phases=[phase for phase in Phase if phase is not Phase.explain],
    )(test)
    try:
        test()
    except FlakyFailure as flaky:
        found = [e for e in flaky.exceptions if isinstance(e, AssertionError)]
        if not found:
            raise
        msg = (
            f"{found[0]}\n\n(this failure did not happen every time the case was replayed: "
            "it depends on thread timing, as concurrent deliveries do)"
        )
        raise AssertionError(msg) from flaky


def compensation_examples(
    engine: Durable,
    workflow_name: str,
    *,
    inputs: Inputs = None,
    signals: SignalChoices = None,
    before_example: Callable[[Durable], object] | None = None,
) -> list[Example]:
    """The example the hypothesis mode always plays when the workflow compensates.

    A deterministic pre-pass: the simplest input runs without faults, first with the
    simplest signal data, then (if nothing was compensated) with no signals at all, so
    that signal deadlines pass. The first of those runs that compensated anything gives
    one example: the same events up to its first compensation job, which then crashes
    after its handler ran (so the compensator runs twice). Empty when neither run
    compensates, or when the engine raised (the examples find that again, and report
    it with a replay). Why one and not every compensation job: this mode's budget stays
    ``max_examples`` plus one; ``exhaustive=True`` tries every job.
    """
    first = as_input(_first(inputs))
    tries = [{name: _first(choice) for name, choice in (signals or {}).items()}]
    if signals:
        tries.append({})
    for data in tries:
        case = Example(input=dict(first), schedule=[], signals=data)
        try:
            path = fault_free_path(engine, workflow_name, case, before_example)
        except Exception:  # noqa: BLE001 - the examples report it, with a replay
            return []
        undo = next((i for i, step in enumerate(path) if step.undo), None)
        if undo is not None:
            prefix: list[Event] = [step.event for step in path[:undo]]
            return [Example(input=case.input, schedule=[*prefix, CrashAfterPhaseA()], signals=data)]
    return []


def replay(  # noqa: PLR0913 - mirrors check_workflow, keyword-only
    engine: Durable,
    workflow_name: str,
    *,
    input: Mapping[str, Any] | None = None,  # noqa: A002 - mirrors start()
    schedule: Sequence[Event] = (),
    signals: Mapping[str, JSONValue] | None = None,
    invariants: Sequence[Invariant] = (),
    ignore_result_keys: Sequence[str] = (),
) -> int:
    """Play one case again (as printed by a failure); its run id, or AssertionError."""
    case = Example(input=dict(input or {}), schedule=list(schedule), signals=dict(signals or {}))
    checks = Checks(
        invariants=tuple(invariants),
        ignore_result_keys=frozenset(ignore_result_keys),
        found_by="the schedule replayed",
    )
    return run_example(engine, workflow_name, case, checks)


def _found_by(checks: Checks, found_by: str) -> Checks:
    return Checks(
        invariants=checks.invariants,
        ignore_result_keys=checks.ignore_result_keys,
        found_by=found_by,
    )


def _strategy(inputs: Inputs) -> SearchStrategy[Mapping[str, Any]]:
    """Inputs as hypothesis draws them: one input or a list is sampled from.

    Each is drawn as the run stores it: a typed value (the workflow's ``input_type``)
    becomes its JSON mapping, so reports and replays show plain data.
    """
    if inputs is None:
        return st.just({})
    if isinstance(inputs, st.SearchStrategy):
        return inputs.map(as_input)
    if isinstance(inputs, Mapping) or is_typed_value(inputs):
        return st.just(as_input(inputs))
    return st.sampled_from([as_input(item) for item in inputs])


def _strategies(signals: SignalChoices) -> dict[str, SearchStrategy[JSONValue]]:
    """Signal data as hypothesis draws it: a list of alternatives is sampled from."""
    return {
        name: choice if isinstance(choice, st.SearchStrategy) else st.sampled_from(list(choice))
        for name, choice in (signals or {}).items()
    }


def _first(choice: Any) -> Any:  # noqa: ANN401 - an input, a signal's data
    """The simplest value of a strategy, or the first of a list (or the one mapping)."""
    if choice is None:
        return {}
    if isinstance(choice, st.SearchStrategy):
        return simplest(choice)
    if isinstance(choice, Mapping) or is_typed_value(choice):
        return choice
    return next(iter(choice))
