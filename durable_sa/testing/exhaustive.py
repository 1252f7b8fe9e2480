"""Every fault at every job: the checker's exhaustive mode, no sampling.

Random schedules rarely reach the end of a long workflow: to crash the compensation of
the fourth step of a nine-step saga, a schedule has to deliver the fifteen jobs before
it first, and hypothesis almost never draws that. This mode walks instead:

1. for each input and each combination of the signal data given, it plays the
   fault-free run (itself checked as an example) and records what the driver did: each
   job it handed out (compensation jobs and children's jobs included), each clock move,
   each signal;
2. for every job position ``n`` of that run and every job fault of
   :mod:`.faults`, it plays the same events up to job ``n``, gives job ``n`` the fault,
   drives the run to its end without faults and checks every property
   (:mod:`.properties`);
3. it stops at the first broken property, with the report and ``replay(...)`` call the
   hypothesis mode prints.

The deterministic faults go first at every position; concurrent duplicates (whose
outcome depends on thread timing) get a second pass, so a failure found by the first
pass replays the same every time. The fault-free outcome a run is compared with is made
once per path, not once per example.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from hypothesis import HealthCheck, Phase, find, settings
from hypothesis.strategies import SearchStrategy

from durable_sa.core.codec import to_json_object
from durable_sa.core.convert import is_typed_value
from durable_sa.errors import InvalidArgumentError
from durable_sa.testing.driver import Driver, Played
from durable_sa.testing.faults import (
    ConcurrentDuplicate,
    CrashAfterCommit,
    CrashAfterPhaseA,
    Deliver,
    DuplicateDelivery,
    JobFault,
)
from durable_sa.testing.properties import (
    Checks,
    Example,
    Invariant,
    engine_for,
    play_example,
    settle_signals,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from durable_sa.core.codec import JSONValue
    from durable_sa.facade import Durable

T = TypeVar("T")

Inputs: TypeAlias = (
    "Mapping[str, Any] | Sequence[Mapping[str, Any]] | SearchStrategy[Mapping[str, Any]] | None"
)
"""One input, a list of inputs, or a strategy (its simplest value is used)."""

SignalChoices: TypeAlias = "Mapping[str, Sequence[JSONValue] | SearchStrategy[JSONValue]] | None"
"""Signal name to a list of data alternatives (or a strategy: its simplest value)."""

DETERMINISTIC_FAULTS: tuple[JobFault, ...] = (
    CrashAfterPhaseA(),
    CrashAfterCommit(),
    DuplicateDelivery(),
)
"""Faults whose effect does not depend on thread timing, tried first at every job."""


def check_every_fault(  # noqa: PLR0913 - mirrors check_workflow, keyword-only
    engine: Durable,
    workflow_name: str,
    *,
    inputs: Inputs = None,
    signals: SignalChoices = None,
    invariants: Sequence[Invariant] = (),
    concurrent: bool = True,
    before_example: Callable[[Durable], object] | None = None,
    ignore_result_keys: Sequence[str] = (),
) -> int:
    """Play one fault at every job position of the fault-free run(s); how many examples ran.

    ``inputs`` is one input, a list of them, or a hypothesis strategy (its simplest
    value, as hypothesis shrinks it). ``signals`` maps a signal name to a *list* of data
    alternatives: every combination is a fault-free path of its own, walked in full (a
    strategy stands for its simplest value). ``concurrent=False`` leaves out concurrent
    duplicates.

    Raises:
        AssertionError: a property broke; the message shows the case and its replay.

    """
    checks = Checks(
        invariants=tuple(invariants),
        ignore_result_keys=frozenset(ignore_result_keys),
        baselines={},
    )
    faults = DETERMINISTIC_FAULTS + ((ConcurrentDuplicate(),) if concurrent else ())
    played = 0
    for case in _paths(inputs, signals):
        path = _play(
            engine, workflow_name, case, checks, before_example=before_example, found_by="no faults"
        )
        played += 1
        jobs = job_positions(path)
        for fault, (number, index) in _order(faults, list(enumerate(jobs, 1))):
            found_by = f"every fault at every job: job {number} of {len(jobs)} got {fault!r}"
            faulty = Example(
                input=case.input,
                schedule=[step.event for step in path[:index]] + [fault],
                signals=case.signals,
            )
            _play(
                engine,
                workflow_name,
                faulty,
                checks,
                before_example=before_example,
                found_by=found_by,
            )
            played += 1
    return played


def fault_free_path(
    engine: Durable,
    workflow_name: str,
    case: Example,
    before_example: Callable[[Durable], object] | None = None,
) -> list[Played]:
    """What the driver did in a fault-free run of ``case`` (its schedule is ignored).

    Nothing is checked: a run that never ends (a signal nobody sends) is a path too.
    """
    if before_example is not None:
        before_example(engine)
    clean = engine_for(engine)
    clean.backend.clear()
    driver = Driver(clean)
    run_id = clean.start(workflow_name, case.input).run_id
    driver.settle(run_id, settle_signals(case.signals))
    return driver.played


def job_positions(path: Sequence[Played]) -> list[int]:
    """Indexes in ``path`` of the jobs it delivered: job ``n`` is ``path[result[n - 1]]``."""
    return [i for i, step in enumerate(path) if isinstance(step.event, Deliver)]


def simplest(strategy: SearchStrategy[T]) -> T:
    """The value hypothesis shrinks ``strategy`` to: the same on every call."""
    quiet = settings(
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate, Phase.shrink],
    )
    return find(strategy, lambda _: True, settings=quiet)


def _play(  # noqa: PLR0913 - one example's context
    engine: Durable,
    workflow_name: str,
    case: Example,
    checks: Checks,
    *,
    before_example: Callable[[Durable], object] | None,
    found_by: str,
) -> list[Played]:
    if before_example is not None:
        before_example(engine)
    return play_example(engine, workflow_name, case, _with(checks, found_by))[1].played


def _with(checks: Checks, found_by: str) -> Checks:
    return Checks(
        invariants=checks.invariants,
        ignore_result_keys=checks.ignore_result_keys,
        found_by=found_by,
        baselines=checks.baselines,
    )


def _order(
    faults: Sequence[JobFault], jobs: Sequence[tuple[int, int]]
) -> Iterator[tuple[JobFault, tuple[int, int]]]:
    """Job by job for the deterministic faults, then job by job for concurrent ones."""
    passes = (
        [f for f in faults if not isinstance(f, ConcurrentDuplicate)],
        [f for f in faults if isinstance(f, ConcurrentDuplicate)],
    )
    for kinds in passes:
        for job in jobs:
            for fault in kinds:
                yield fault, job


def _paths(inputs: Inputs, signals: SignalChoices) -> Iterator[Example]:
    """Every input with every combination of signal data, as fault-free examples."""
    choices = {
        name: _alternatives(name, options) for name, options in sorted((signals or {}).items())
    }
    names = list(choices)
    for given in _inputs(inputs):
        for combination in itertools.product(*(choices[name] for name in names)):
            yield Example(
                input=dict(given), schedule=[], signals=dict(zip(names, combination, strict=True))
            )


def _inputs(inputs: Inputs) -> list[Mapping[str, Any]]:
    """The inputs to walk, as JSON mappings.

    A dataclass, attrs or pydantic input (the workflow's ``input_type``) becomes the
    mapping ``start`` stores.
    """
    if inputs is None:
        return [{}]
    if isinstance(inputs, SearchStrategy):
        return [as_input(simplest(inputs))]
    if isinstance(inputs, Mapping) or is_typed_value(inputs):
        return [as_input(inputs)]
    found = list(inputs)
    if not found or not all(isinstance(i, Mapping) or is_typed_value(i) for i in found):
        msg = (
            "exhaustive checking needs inputs= as one input (a mapping, or a value of the "
            "workflow's input_type), a non-empty list of inputs, or a hypothesis strategy; "
            f"got {inputs!r}"
        )
        raise InvalidArgumentError(msg)
    return [as_input(item) for item in found]


def as_input(value: object) -> dict[str, Any]:
    """An input as the run stores it: a mapping, or a typed value unstructured to one."""
    return to_json_object(value, what="an input")


def _alternatives(
    name: str, options: Sequence[JSONValue] | SearchStrategy[JSONValue]
) -> list[JSONValue]:
    if isinstance(options, SearchStrategy):
        return [simplest(options)]
    if isinstance(options, str | bytes) or not isinstance(options, Sequence) or not options:
        msg = (
            f"exhaustive checking needs signals={{{name!r}: [data, ...]}}: a non-empty list "
            f"of the data alternatives to send (or a strategy); got {options!r}"
        )
        raise InvalidArgumentError(msg)
    return list(options)


__all__ = ["check_every_fault", "fault_free_path", "job_positions", "simplest"]
