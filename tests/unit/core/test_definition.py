from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from durable_sa.core.definition import (
    ChildStep,
    DurableWorkflow,
    LoopStep,
    ParallelEntry,
    ParallelStep,
    RouteStep,
    SignalStep,
    SleepStep,
    StepType,
    TaskStep,
    durable,
)
from durable_sa.core.registry import registry
from durable_sa.core.steps import DEFAULT_BACKOFF, DEFAULT_MAX_RETRIES
from durable_sa.errors import DefinitionError, DurableError, WorkflowNotRegisteredError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


def handler(ctx: object) -> object:
    return ctx


def other_handler(ctx: object) -> object:
    return None


def loop_body(value: object, ctx: object) -> object:
    return value


def undo(ctx: object) -> None:
    return None


@pytest.fixture
def make_name() -> Iterator[Callable[[], str]]:
    created: list[str] = []

    def make() -> str:
        name = f"tests-core-{uuid.uuid4().hex[:12]}"
        created.append(name)
        return name

    yield make
    for name in created:
        registry.unregister(name)


@pytest.fixture
def wf(make_name: Callable[[], str]) -> DurableWorkflow:
    return durable(make_name())


def _full(wf: DurableWorkflow) -> DurableWorkflow:
    return (
        wf.step("a", handler)
        .parallel("b", [("b1", handler), ("b2", handler)])
        .route("c", handler, {"x": handler})
        .loop("d", loop_body, 3)
        .sleep("e", timedelta(seconds=5))
        .wait_for_signal("f", "go")
        .child_workflow("g", "child")
    )


# ── building ───────────────────────────────────────────────────────────────────


def test_every_step_kind_in_order(wf: DurableWorkflow) -> None:
    _full(wf)
    assert [step.type for step in wf.steps] == [
        "step",
        "parallel",
        "route",
        "loop",
        "sleep",
        "signal",
        "child",
    ]
    assert [step.name for step in wf.steps] == list("abcdefg")
    assert [type(step) for step in wf.steps] == [
        TaskStep,
        ParallelStep,
        RouteStep,
        LoopStep,
        SleepStep,
        SignalStep,
        ChildStep,
    ]
    assert [step.type for step in wf.steps] == list(StepType)
    assert [wf.step_index(name) for name in "abcdefg"] == list(range(7))


def test_builder_methods_return_the_same_workflow(wf: DurableWorkflow) -> None:
    assert wf.step("a", handler) is wf
    assert wf.parallel("b", [("b1", handler)]) is wf
    assert wf.route("c", handler, {}) is wf
    assert wf.loop("d", loop_body, 1) is wf
    assert wf.sleep("e", 1) is wf
    assert wf.wait_for_signal("f", "go") is wf
    assert wf.child_workflow("g", "child") is wf


def test_calls_on_separate_lines_add_to_the_same_definition(
    make_name: Callable[[], str],
) -> None:
    name = make_name()
    wf = durable(name)
    wf.step("first", handler)
    wf.sleep("nap", 10)
    wf.step("second", handler)
    registered = registry.get(name)
    assert registered is wf
    assert [step.name for step in registered.steps] == ["first", "nap", "second"]


def test_steps_is_an_immutable_snapshot(wf: DurableWorkflow) -> None:
    wf.step("a", handler)
    steps = wf.steps
    assert isinstance(steps, tuple)
    wf.step("b", handler)
    assert len(steps) == 1
    assert len(wf.steps) == 2


def test_step_index_of_an_unknown_step_is_a_key_error(wf: DurableWorkflow) -> None:
    wf.step("a", handler)
    with pytest.raises(KeyError, match="nope"):
        wf.step_index("nope")


def test_repr_names_the_workflow_and_its_steps(wf: DurableWorkflow) -> None:
    wf.step("a", handler).sleep("nap", 1)
    text = repr(wf)
    assert wf.name in text
    assert "step:a" in text
    assert "sleep:nap" in text


# ── registry ───────────────────────────────────────────────────────────────────


def test_durable_registers_by_name(make_name: Callable[[], str]) -> None:
    name = make_name()
    assert not registry.has(name)
    wf = durable(name)
    assert registry.has(name)
    assert name in registry
    assert registry.get(name) is wf
    assert name in registry.names()
    assert wf.name == name


def test_durable_replaces_an_earlier_definition(make_name: Callable[[], str]) -> None:
    name = make_name()
    old = durable(name).step("old", handler)
    new = durable(name).step("new", handler)
    assert new is not old
    assert registry.get(name) is new
    assert [step.name for step in registry.get(name).steps] == ["new"]
    assert registry.names().count(name) == 1


def test_a_plain_durable_workflow_is_not_registered(make_name: Callable[[], str]) -> None:
    name = make_name()
    DurableWorkflow(name).step("a", handler)
    assert not registry.has(name)


def test_unregister_forgets_the_name(make_name: Callable[[], str]) -> None:
    name = make_name()
    durable(name)
    registry.unregister(name)
    assert not registry.has(name)
    registry.unregister(name)  # unknown: no error


def test_unknown_workflow_raises_a_helpful_lookup_error(make_name: Callable[[], str]) -> None:
    known = make_name()
    durable(known)
    missing = make_name()
    with pytest.raises(WorkflowNotRegisteredError) as excinfo:
        registry.get(missing)
    error = excinfo.value
    assert isinstance(error, LookupError)
    assert isinstance(error, DurableError)
    assert error.name == missing
    message = str(error)
    assert repr(missing) in message
    assert "import" in message
    assert f"durable({missing!r})" in message
    assert known in message  # the registered names are listed
    assert not registry.has(missing)


def test_unknown_workflow_error_is_caught_as_lookup_error(make_name: Callable[[], str]) -> None:
    with pytest.raises(LookupError):
        registry.get(make_name())


def test_workflow_not_registered_without_known_names_has_no_list() -> None:
    message = str(WorkflowNotRegisteredError("ghost", []))
    assert "'ghost'" in message
    assert "Registered" not in message


# ── defaults and options ───────────────────────────────────────────────────────


def test_defaults(wf: DurableWorkflow) -> None:
    assert DEFAULT_MAX_RETRIES == 3
    assert DEFAULT_BACKOFF == "exponential"
    _full(wf)
    a, b, c, d = wf.steps[:4]
    for step in (a, b, c, d):
        assert isinstance(step, TaskStep | ParallelStep | RouteStep | LoopStep)
        assert step.max_retries == 3
        assert step.retry_backoff == "exponential"
    assert isinstance(a, TaskStep)
    assert a.compensate is None
    assert a.transactional is False
    assert isinstance(d, LoopStep)
    assert (d.until, d.feedback, d.map_input) == (None, None, None)


def test_step_options_are_honored(wf: DurableWorkflow) -> None:
    wf.step(
        "a", handler, compensate=undo, max_retries=5, retry_backoff="linear", transactional=True
    )
    (step,) = wf.steps
    assert isinstance(step, TaskStep)
    assert step.handler is handler
    assert step.compensate is undo
    assert step.max_retries == 5
    assert step.retry_backoff == "linear"
    assert step.transactional is True


def test_parallel_options_are_honored(wf: DurableWorkflow) -> None:
    wf.parallel("p", [("x", handler)], max_retries=1, retry_backoff="linear")
    (step,) = wf.steps
    assert isinstance(step, ParallelStep)
    assert (step.max_retries, step.retry_backoff) == (1, "linear")


def test_route_options_are_honored(wf: DurableWorkflow) -> None:
    branches = {"yes": handler, "no": other_handler}
    wf.route("r", undo, branches, max_retries=7, retry_backoff="linear")
    (step,) = wf.steps
    assert isinstance(step, RouteStep)
    assert step.resolver is undo
    assert dict(step.branches) == branches
    assert (step.max_retries, step.retry_backoff) == (7, "linear")


def test_route_branches_are_copied(wf: DurableWorkflow) -> None:
    branches = {"yes": handler}
    wf.route("r", handler, branches)
    branches["late"] = handler
    (step,) = wf.steps
    assert isinstance(step, RouteStep)
    assert set(step.branches) == {"yes"}


def test_loop_options_are_honored(wf: DurableWorkflow) -> None:
    def until(result: object, done: int) -> bool:
        return done > 1

    def feedback(result: object) -> object:
        return result

    wf.loop(
        "l",
        loop_body,
        4,
        until=until,
        feedback=feedback,
        map_input=handler,
        max_retries=2,
        retry_backoff="linear",
    )
    (step,) = wf.steps
    assert isinstance(step, LoopStep)
    assert step.handler is loop_body
    assert step.max_iterations == 4
    assert (step.until, step.feedback, step.map_input) == (until, feedback, handler)
    assert (step.max_retries, step.retry_backoff) == (2, "linear")


def test_loop_max_iterations_by_keyword(wf: DurableWorkflow) -> None:
    wf.loop("l", loop_body, max_iterations=2)
    (step,) = wf.steps
    assert isinstance(step, LoopStep)
    assert step.max_iterations == 2


@pytest.mark.parametrize(
    ("duration", "expected"),
    [
        (timedelta(minutes=2), timedelta(minutes=2)),
        (30, timedelta(seconds=30)),
        (1.5, timedelta(seconds=1.5)),
        (0, timedelta(0)),
    ],
)
def test_sleep_durations(wf: DurableWorkflow, duration: object, expected: timedelta) -> None:
    wf.sleep("nap", duration)  # type: ignore[arg-type]
    (step,) = wf.steps
    assert isinstance(step, SleepStep)
    assert step.delay == expected
    assert step.until is None


def test_sleep_until_an_aware_datetime(wf: DurableWorkflow) -> None:
    when = datetime(2031, 5, 6, 7, 8, tzinfo=UTC)
    wf.sleep("nap", when)
    (step,) = wf.steps
    assert isinstance(step, SleepStep)
    assert step.until == when
    assert step.delay is None


def test_wait_for_signal_options(wf: DurableWorkflow) -> None:
    wf.wait_for_signal("w1", "go").wait_for_signal("w2", "stop", timeout=60)
    wf.wait_for_signal("w3", "later", timeout=timedelta(hours=1))
    w1, w2, w3 = wf.steps
    assert isinstance(w1, SignalStep)
    assert isinstance(w2, SignalStep)
    assert isinstance(w3, SignalStep)
    assert (w1.signal, w1.timeout) == ("go", None)
    assert (w2.signal, w2.timeout) == ("stop", timedelta(seconds=60))
    assert (w3.signal, w3.timeout) == ("later", timedelta(hours=1))


def test_child_workflow_options(wf: DurableWorkflow) -> None:
    wf.child_workflow("c1", "kid").child_workflow("c2", "kid", map_input=handler)
    c1, c2 = wf.steps
    assert isinstance(c1, ChildStep)
    assert isinstance(c2, ChildStep)
    assert (c1.child_name, c1.map_input) == ("kid", None)
    assert (c2.child_name, c2.map_input) == ("kid", handler)


# ── parallel entries ───────────────────────────────────────────────────────────


def test_parallel_entries_as_objects_and_tuples(wf: DurableWorkflow) -> None:
    wf.parallel(
        "p",
        [
            ParallelEntry("obj", handler, undo),
            ("pair", other_handler),
            ("triple", handler, undo),
        ],
    )
    (step,) = wf.steps
    assert isinstance(step, ParallelStep)
    assert step.entries == (
        ParallelEntry("obj", handler, undo),
        ParallelEntry("pair", other_handler, None),
        ParallelEntry("triple", handler, undo),
    )
    assert all(isinstance(entry, ParallelEntry) for entry in step.entries)


def test_parallel_entries_from_a_generator(wf: DurableWorkflow) -> None:
    wf.parallel("p", ((f"e{i}", handler) for i in range(3)))
    (step,) = wf.steps
    assert isinstance(step, ParallelStep)
    assert [entry.name for entry in step.entries] == ["e0", "e1", "e2"]


# ── definition errors ──────────────────────────────────────────────────────────

BAD_DEFINITIONS: dict[str, Callable[[DurableWorkflow], object]] = {
    "duplicate step": lambda w: w.step("a", handler).step("a", handler),
    "duplicate across kinds": lambda w: w.step("a", handler).sleep("a", 1),
    "duplicate signal step": lambda w: w.wait_for_signal("a", "x").wait_for_signal("a", "y"),
    "empty parallel": lambda w: w.parallel("p", []),
    "empty parallel generator": lambda w: w.parallel("p", iter(())),
    "parallel entries a string": lambda w: w.parallel("p", "ab"),  # type: ignore[arg-type]
    "parallel entries a dict": lambda w: w.parallel("p", {"a": handler}),  # type: ignore[arg-type]
    "parallel entry 1-tuple": lambda w: w.parallel("p", [("a",)]),
    "parallel entry 4-tuple": lambda w: w.parallel("p", [("a", handler, undo, undo)]),
    "parallel entry a string": lambda w: w.parallel("p", ["a"]),  # type: ignore[list-item]
    "loop max_iterations missing": lambda w: w.loop("l", loop_body),
    "loop max_iterations 0": lambda w: w.loop("l", loop_body, 0),
    "loop max_iterations negative": lambda w: w.loop("l", loop_body, -2),
    "loop max_iterations bool": lambda w: w.loop("l", loop_body, True),
    "loop max_iterations float": lambda w: w.loop("l", loop_body, 1.5),  # type: ignore[arg-type]
    "loop max_iterations whole float": lambda w: w.loop("l", loop_body, 2.0),  # type: ignore[arg-type]
    "loop max_iterations str": lambda w: w.loop("l", loop_body, "3"),  # type: ignore[arg-type]
    "max_retries 0": lambda w: w.step("a", handler, max_retries=0),
    "max_retries -1": lambda w: w.step("a", handler, max_retries=-1),
    "max_retries True": lambda w: w.step("a", handler, max_retries=True),
    "max_retries 1.5": lambda w: w.step("a", handler, max_retries=1.5),  # type: ignore[arg-type]
    "parallel max_retries 0": lambda w: w.parallel("p", [("x", handler)], max_retries=0),
    "route max_retries True": lambda w: w.route("r", handler, {}, max_retries=True),
    "loop max_retries -1": lambda w: w.loop("l", loop_body, 2, max_retries=-1),
    "backoff unknown": lambda w: w.step("a", handler, retry_backoff="fibonacci"),  # type: ignore[arg-type]
    "backoff capitalized": lambda w: w.step("a", handler, retry_backoff="Linear"),  # type: ignore[arg-type]
    "backoff None": lambda w: w.step("a", handler, retry_backoff=None),  # type: ignore[arg-type]
    "parallel backoff": lambda w: w.parallel("p", [("x", handler)], retry_backoff="x"),  # type: ignore[arg-type]
    "route backoff": lambda w: w.route("r", handler, {}, retry_backoff="x"),  # type: ignore[arg-type]
    "loop backoff": lambda w: w.loop("l", loop_body, 2, retry_backoff="x"),  # type: ignore[arg-type]
    "step handler": lambda w: w.step("a", "not callable"),  # type: ignore[arg-type]
    "step compensate": lambda w: w.step("a", handler, compensate=42),  # type: ignore[arg-type]
    "entry handler": lambda w: w.parallel("p", [("x", None)]),
    "entry compensate": lambda w: w.parallel("p", [("x", handler, "undo")]),
    "route resolver": lambda w: w.route("r", 1, {}),  # type: ignore[arg-type]
    "route branch": lambda w: w.route("r", handler, {"k": 1}),  # type: ignore[dict-item]
    "route branch key": lambda w: w.route("r", handler, {1: handler}),  # type: ignore[dict-item]
    "route branches not a mapping": lambda w: w.route("r", handler, [handler]),  # type: ignore[arg-type]
    "loop handler": lambda w: w.loop("l", None, 2),  # type: ignore[arg-type]
    "loop until": lambda w: w.loop("l", loop_body, 2, until=True),  # type: ignore[arg-type]
    "loop feedback": lambda w: w.loop("l", loop_body, 2, feedback="f"),  # type: ignore[arg-type]
    "loop map_input": lambda w: w.loop("l", loop_body, 2, map_input=3),  # type: ignore[arg-type]
    "child map_input": lambda w: w.child_workflow("c", "kid", map_input="m"),  # type: ignore[arg-type]
    "transactional not bool": lambda w: w.step("a", handler, transactional="yes"),  # type: ignore[arg-type]
    "naive datetime sleep": lambda w: w.sleep("s", datetime(2031, 1, 1)),  # noqa: DTZ001
    "negative sleep seconds": lambda w: w.sleep("s", -1),
    "negative sleep timedelta": lambda w: w.sleep("s", timedelta(seconds=-1)),
    "infinite sleep": lambda w: w.sleep("s", float("inf")),
    "nan sleep": lambda w: w.sleep("s", float("nan")),
    "sleep a string": lambda w: w.sleep("s", "5"),  # type: ignore[arg-type]
    "sleep a bool": lambda w: w.sleep("s", True),
    "signal timeout 0": lambda w: w.wait_for_signal("w", "go", timeout=0),
    "signal timeout zero delta": lambda w: w.wait_for_signal("w", "go", timeout=timedelta(0)),
    "signal timeout negative": lambda w: w.wait_for_signal("w", "go", timeout=-5),
    "signal timeout negative delta": lambda w: w.wait_for_signal(
        "w", "go", timeout=timedelta(minutes=-1)
    ),
    "empty step name": lambda w: w.step("", handler),
    "blank step name": lambda w: w.step("   ", handler),
    "non-str step name": lambda w: w.step(3, handler),  # type: ignore[arg-type]
    "# in step name": lambda w: w.step("a#b", handler),
    "# in sleep name": lambda w: w.sleep("a#b", 1),
    "# in entry name": lambda w: w.parallel("p", [("x#1", handler)]),
    "# in signal": lambda w: w.wait_for_signal("w", "go#1"),
    "# in child name": lambda w: w.child_workflow("c", "kid#1"),
    "reserved step name": lambda w: w.step("__durable_x", handler),
    "reserved entry name": lambda w: w.parallel("p", [("__durable", handler)]),
    "reserved signal": lambda w: w.wait_for_signal("w", "__durable_go"),
    "empty signal": lambda w: w.wait_for_signal("w", ""),
    "empty child name": lambda w: w.child_workflow("c", ""),
    "entry named like the rollback row": lambda w: w.parallel("p", [("compensate", handler)]),
    "entry named like a failed attempt": lambda w: w.parallel("p", [("attempt1", handler)]),
    "entry named like a loop iteration": lambda w: w.parallel("p", [("iter0", handler)]),
    "entry named like a route's decision": lambda w: w.parallel("p", [("route", handler)]),
    "failed attempts' ids past the column": lambda w: w.step("s" * 501, handler, max_retries=1001),
    "duplicate entry names": lambda w: w.parallel("p", [("x", handler), ("x", other_handler)]),
    "entry name taken by an earlier step": lambda w: w.step("x", handler).parallel(
        "p", [("x", handler)]
    ),
    "step name taken by an earlier entry": lambda w: w.parallel("p", [("x", handler)]).step(
        "x", handler
    ),
    "loop name taken by an earlier entry": lambda w: w.parallel("p", [("x", handler)]).loop(
        "x", loop_body, 1
    ),
    "entry name taken by an earlier sleep": lambda w: w.sleep("x", 1).parallel(
        "p", [("x", handler)]
    ),
    "entry name taken by an earlier entry": lambda w: w.parallel("p", [("x", handler)]).parallel(
        "q", [("x", handler)]
    ),
}


@pytest.mark.parametrize("build", list(BAD_DEFINITIONS.values()), ids=list(BAD_DEFINITIONS))
def test_definition_errors(wf: DurableWorkflow, build: Callable[[DurableWorkflow], object]) -> None:
    with pytest.raises(DefinitionError):
        build(wf)


REJECTED_AFTER_BASE: dict[str, Callable[[DurableWorkflow], object]] = {
    "duplicate": lambda w: w.step("base", handler),
    "empty parallel": lambda w: w.parallel("p", []),
    "duplicate entries": lambda w: w.parallel("p", [("x", handler), ("x", handler)]),
    "entry collides": lambda w: w.parallel("p", [("x", handler), ("base", handler)]),
    "loop": lambda w: w.loop("p", loop_body, 0),
    "sleep": lambda w: w.sleep("p", -1),
    "signal": lambda w: w.wait_for_signal("p", "go", timeout=0),
    "retries": lambda w: w.step("p", handler, max_retries=0),
    "bad entry handler": lambda w: w.parallel("p", [("x", handler), ("y", 3)]),
}


@pytest.mark.parametrize("bad", list(REJECTED_AFTER_BASE.values()), ids=list(REJECTED_AFTER_BASE))
def test_a_rejected_step_leaves_the_definition_unchanged(
    wf: DurableWorkflow, bad: Callable[[DurableWorkflow], object]
) -> None:
    wf.step("base", handler)
    before = (wf.steps, wf.fingerprint)
    with pytest.raises(DefinitionError):
        bad(wf)
    assert (wf.steps, wf.fingerprint) == before
    # the rejected step's name and entry names were not claimed
    wf.step("p", handler).step("x", handler).step("y", handler)
    assert [step.name for step in wf.steps] == ["base", "p", "x", "y"]


def test_errors_name_the_step_and_the_problem(wf: DurableWorkflow) -> None:
    wf.step("charge", handler)
    with pytest.raises(DefinitionError, match="duplicate step name 'charge'"):
        wf.step("charge", handler)
    with pytest.raises(DefinitionError, match="at least one entry"):
        wf.parallel("fanout", [])
    with pytest.raises(DefinitionError, match="max_iterations"):
        wf.loop("refine", loop_body, 0)
    with pytest.raises(DefinitionError, match="max_retries"):
        wf.step("x", handler, max_retries=0)
    with pytest.raises(DefinitionError, match="retry_backoff"):
        wf.step("x", handler, retry_backoff="soon")  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="timezone-aware"):
        wf.sleep("nap", datetime(2031, 1, 1))  # noqa: DTZ001
    with pytest.raises(DefinitionError, match="'#'"):
        wf.step("a#b", handler)
    with pytest.raises(DefinitionError, match="__durable"):
        wf.step("__durable_x", handler)
    with pytest.raises(DefinitionError, match="duplicate entry names: x"):
        wf.parallel("p", [("x", handler), ("x", handler)])
    with pytest.raises(DefinitionError, match="charge"):
        wf.parallel("p", [("charge", handler)])
    with pytest.raises(DefinitionError, match="callable"):
        wf.step("y", 5)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "a#b", "__durable_wf", 7])
def test_bad_workflow_names_are_refused_and_not_registered(name: object) -> None:
    before = registry.names()
    with pytest.raises(DefinitionError):
        durable(name)  # type: ignore[arg-type]
    assert registry.names() == before


@pytest.mark.parametrize("version", ["", 3])
def test_bad_versions_are_refused(make_name: Callable[[], str], version: object) -> None:
    name = make_name()
    with pytest.raises(DefinitionError, match="version"):
        durable(name, version=version)  # type: ignore[arg-type]
    assert not registry.has(name)


def test_definition_error_is_a_value_error_and_a_durable_error(wf: DurableWorkflow) -> None:
    assert issubclass(DefinitionError, ValueError)
    assert issubclass(DefinitionError, DurableError)
    with pytest.raises(ValueError, match="at least one entry"):
        wf.parallel("p", [])
    with pytest.raises(DurableError):
        wf.parallel("p", [])


def test_allowed_edge_cases(wf: DurableWorkflow) -> None:
    # one retry (a single attempt) and one iteration are the smallest legal values
    wf.step("a", handler, max_retries=1).loop("l", loop_body, 1)
    # a parallel step may share its name with nothing else, and entry names
    # are free when no step uses them
    wf.parallel("p", [("p1", handler), ("p2", handler)])
    wf.route("r", handler, {})
    assert [step.name for step in wf.steps] == ["a", "l", "p", "r"]


# ── fingerprint and version ────────────────────────────────────────────────────


def _fp(build: Callable[[DurableWorkflow], object]) -> str:
    wf = DurableWorkflow("fingerprinted")
    build(wf)
    return wf.fingerprint


def test_fingerprint_is_stable_for_the_same_shape() -> None:
    one = _fp(_full)
    assert one.startswith("fp-")
    assert one == _fp(_full)
    # handlers, options and the workflow's own name are not part of the shape
    assert _fp(lambda w: w.step("a", handler)) == _fp(
        lambda w: w.step("a", other_handler, max_retries=9, retry_backoff="linear")
    )
    assert _fp(lambda w: w.sleep("s", 1)) == _fp(lambda w: w.sleep("s", 99))
    wf1 = DurableWorkflow("one").step("a", handler)
    wf2 = DurableWorkflow("two").step("a", handler)
    assert wf1.fingerprint == wf2.fingerprint
    assert wf1.fingerprint == wf1.fingerprint


def test_fingerprint_changes_when_a_step_is_added() -> None:
    assert _fp(lambda w: w.step("a", handler)) != _fp(
        lambda w: w.step("a", handler).step("b", handler)
    )
    assert _fp(lambda w: None) != _fp(lambda w: w.step("a", handler))


def test_fingerprint_changes_when_a_step_is_renamed() -> None:
    assert _fp(lambda w: w.step("a", handler)) != _fp(lambda w: w.step("b", handler))


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (lambda w: w.step("a", handler), lambda w: w.loop("a", loop_body, 1)),
        (
            lambda w: w.step("a", handler).step("b", handler),
            lambda w: w.step("b", handler).step("a", handler),
        ),
        (lambda w: w.parallel("p", [("x", handler)]), lambda w: w.parallel("p", [("y", handler)])),
        (lambda w: w.wait_for_signal("w", "go"), lambda w: w.wait_for_signal("w", "stop")),
        (lambda w: w.child_workflow("c", "kid"), lambda w: w.child_workflow("c", "other")),
        (
            lambda w: w.route("r", handler, {"a": handler}),
            lambda w: w.route("r", handler, {"b": handler}),
        ),
    ],
    ids=["kind", "order", "entry", "signal", "child", "branches"],
)
def test_fingerprint_changes_with_the_shape(
    left: Callable[[DurableWorkflow], object], right: Callable[[DurableWorkflow], object]
) -> None:
    assert _fp(left) != _fp(right)


def test_version_defaults_to_the_fingerprint(wf: DurableWorkflow) -> None:
    wf.step("a", handler)
    assert wf.version == wf.fingerprint
    wf.step("b", handler)
    assert wf.version == wf.fingerprint


def test_explicit_version_wins(make_name: Callable[[], str]) -> None:
    wf = durable(make_name(), version="2024-06")
    assert wf.version == "2024-06"
    fingerprint = wf.fingerprint
    wf.step("a", handler)
    assert wf.version == "2024-06"
    assert wf.fingerprint != fingerprint
    assert wf.fingerprint.startswith("fp-")
