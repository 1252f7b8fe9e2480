"""Workflow definitions: the builder users call, and every check made at definition time.

Rules:
- A workflow is a flat, ordered list of named steps. Names are unique, and so are the
  keys results are stored under (a parallel entry's name is a result key too).
- Every mistake that can be seen while a workflow is being declared raises
  :class:`DefinitionError` there and then, never later inside a worker.
- ``durable(name)`` registers the definition at once (replacing an earlier one); each
  builder method adds to that same object and returns it, so chaining is optional.
- A definition has a *version*: the one given to ``durable(name, version=...)``, else a
  fingerprint of its steps' kinds and names. A run records the version it started with.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, ClassVar, Final, TypeAlias

import attrs

from durable_sa.core.backoff import BACKOFF_STRATEGIES, Backoff
from durable_sa.core.registry import registry
from durable_sa.errors import DefinitionError

if TYPE_CHECKING:
    from durable_sa.core.context import DurableContext

StepHandler: TypeAlias = "Callable[[DurableContext], object]"
"""A step, parallel-entry, branch or compensation handler: plain or ``async def``."""
LoopHandler: TypeAlias = "Callable[[object, DurableContext], object]"
"""A loop body: ``handler(input, ctx)``, plain or ``async def``."""
RouteResolver: TypeAlias = "Callable[[DurableContext], object]"
"""Returns the key of the branch to run (may be ``async def``)."""
InputMapper: TypeAlias = "Callable[[DurableContext], object]"
"""Builds a loop's first input or a child workflow's input from the context."""

DEFAULT_MAX_RETRIES: Final = 3
DEFAULT_BACKOFF: Final[Backoff] = "exponential"
RESERVED_PREFIX: Final = "__durable"
"""Result keys starting with this are the engine's own and hidden from ``ctx.results``."""


class StepType(enum.StrEnum):
    """The kind of a step; members compare equal to their lower-case names."""

    STEP = "step"
    PARALLEL = "parallel"
    ROUTE = "route"
    LOOP = "loop"
    SLEEP = "sleep"
    SIGNAL = "signal"
    CHILD = "child"


@attrs.frozen
class ParallelEntry:
    """One concurrently executed unit of a parallel step, with its own compensator."""

    name: str
    handler: StepHandler
    compensate: StepHandler | None = None


@attrs.frozen(kw_only=True)
class TaskStep:
    """A single handler; its result is stored under the step's name."""

    type: ClassVar[StepType] = StepType.STEP
    name: str
    handler: StepHandler
    compensate: StepHandler | None = None
    max_retries: int = DEFAULT_MAX_RETRIES
    retry_backoff: Backoff = DEFAULT_BACKOFF
    transactional: bool = False


@attrs.frozen(kw_only=True)
class ParallelStep:
    """Entries run concurrently; each result is stored under the entry's name."""

    type: ClassVar[StepType] = StepType.PARALLEL
    name: str
    entries: tuple[ParallelEntry, ...]
    max_retries: int = DEFAULT_MAX_RETRIES
    retry_backoff: Backoff = DEFAULT_BACKOFF


@attrs.frozen(kw_only=True)
class RouteStep:
    """The resolver picks a branch key; that branch's handler runs."""

    type: ClassVar[StepType] = StepType.ROUTE
    name: str
    resolver: RouteResolver
    branches: Mapping[str, StepHandler]
    max_retries: int = DEFAULT_MAX_RETRIES
    retry_backoff: Backoff = DEFAULT_BACKOFF


@attrs.frozen(kw_only=True)
class LoopStep:
    """The handler runs up to ``max_iterations`` times; each iteration is journaled."""

    type: ClassVar[StepType] = StepType.LOOP
    name: str
    handler: LoopHandler
    max_iterations: int
    until: Callable[[object, int], object] | None = None
    feedback: Callable[[object], object] | None = None
    map_input: InputMapper | None = None
    max_retries: int = DEFAULT_MAX_RETRIES
    retry_backoff: Backoff = DEFAULT_BACKOFF


@attrs.frozen(kw_only=True)
class SleepStep:
    """A durable timer: for ``delay`` from when the step runs, or ``until`` an instant."""

    type: ClassVar[StepType] = StepType.SLEEP
    name: str
    delay: timedelta | None = None
    until: datetime | None = None

    @property
    def duration(self) -> timedelta | datetime:
        """What was given: the delay, or the instant to sleep until."""
        if self.until is not None:
            return self.until
        return self.delay if self.delay is not None else timedelta(0)


@attrs.frozen(kw_only=True)
class SignalStep:
    """Park the run until ``signal`` is delivered; fail the step after ``timeout``."""

    type: ClassVar[StepType] = StepType.SIGNAL
    name: str
    signal: str
    timeout: timedelta | None = None


@attrs.frozen(kw_only=True)
class ChildStep:
    """Start the workflow ``child_name`` as its own durable run and wait for it."""

    type: ClassVar[StepType] = StepType.CHILD
    name: str
    child_name: str
    map_input: InputMapper | None = None


StepDefinition: TypeAlias = (
    TaskStep | ParallelStep | RouteStep | LoopStep | SleepStep | SignalStep | ChildStep
)
RetryableStep: TypeAlias = TaskStep | ParallelStep | RouteStep | LoopStep


class DurableWorkflow:
    """A named, ordered list of steps, built by chaining and registered on creation."""

    def __init__(self, name: str, *, version: str | None = None) -> None:
        """Create an empty workflow; prefer :func:`durable`, which also registers it."""
        _check_name(name, "workflow name")
        if version is not None and (not isinstance(version, str) or not version):
            msg = f"workflow {name!r}: version must be a non-empty string"
            raise DefinitionError(msg)
        self.name: Final = name
        self._explicit_version = version
        self._steps: list[StepDefinition] = []
        self._fingerprint: str | None = None
        self._result_keys: set[str] = set()

    def __repr__(self) -> str:
        kinds = ", ".join(f"{s.type}:{s.name}" for s in self._steps)
        return f"<DurableWorkflow {self.name!r} [{kinds}]>"

    @property
    def steps(self) -> tuple[StepDefinition, ...]:
        """The ordered step definitions, options filled in with their defaults."""
        return tuple(self._steps)

    @property
    def version(self) -> str:
        """The explicit version, else :attr:`fingerprint`."""
        return self._explicit_version or self.fingerprint

    @property
    def fingerprint(self) -> str:
        """A short hash of the steps' kinds, names and shape (entries, signal, child).

        Computed once per shape: workers read it on every claim.
        """
        if self._fingerprint is None:
            shape = [[str(s.type), s.name, *_shape_details(s)] for s in self._steps]
            digest = hashlib.sha256(json.dumps(shape).encode()).hexdigest()
            self._fingerprint = f"fp-{digest[:16]}"
        return self._fingerprint

    def step_index(self, name: str) -> int:
        """Position of the step called ``name``."""
        for index, step in enumerate(self._steps):
            if step.name == name:
                return index
        msg = f"workflow {self.name!r} has no step named {name!r}"
        raise KeyError(msg)

    # ── builder methods ────────────────────────────────────────────────────────

    def step(  # noqa: PLR0913 - the reference's step options, keyword-only
        self,
        name: str,
        handler: StepHandler,
        *,
        compensate: StepHandler | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        retry_backoff: Backoff = DEFAULT_BACKOFF,
        transactional: bool = False,
    ) -> DurableWorkflow:
        """Add a step; its result is stored in ``ctx.results[name]``.

        ``compensate`` undoes it if a later step fails for good. With
        ``transactional=True`` the handler gets ``ctx.session``, on the very transaction
        that checkpoints the step, so its writes commit exactly once.
        """
        self._claim_step(name)
        _check_callable(handler, f"step {name!r}: handler")
        _check_optional_callable(compensate, f"step {name!r}: compensate")
        _check_retries(name, max_retries, retry_backoff)
        if not isinstance(transactional, bool):
            msg = f"step {name!r}: transactional must be True or False"
            raise DefinitionError(msg)
        return self._add(
            TaskStep(
                name=name,
                handler=handler,
                compensate=compensate,
                max_retries=max_retries,
                retry_backoff=retry_backoff,
                transactional=transactional,
            ),
            result_keys=[name],
        )

    def parallel(
        self,
        name: str,
        entries: Iterable[ParallelEntry | tuple[object, ...]],
        *,
        max_retries: int = DEFAULT_MAX_RETRIES,
        retry_backoff: Backoff = DEFAULT_BACKOFF,
    ) -> DurableWorkflow:
        """Add entries that run concurrently; each result is stored under its entry name.

        ``entries`` holds :class:`ParallelEntry` values or ``(name, handler)`` /
        ``(name, handler, compensate)`` tuples.
        """
        self._claim_step(name)
        _check_retries(name, max_retries, retry_backoff)
        built = tuple(_entry(name, raw) for raw in _iterable(entries, f"parallel {name!r}"))
        if not built:
            msg = f"parallel step {name!r} must have at least one entry"
            raise DefinitionError(msg)
        keys = [entry.name for entry in built]
        duplicates = sorted({key for key in keys if keys.count(key) > 1})
        if duplicates:
            msg = f"parallel step {name!r} has duplicate entry names: {', '.join(duplicates)}"
            raise DefinitionError(msg)
        return self._add(
            ParallelStep(
                name=name, entries=built, max_retries=max_retries, retry_backoff=retry_backoff
            ),
            result_keys=keys,
        )

    def route(
        self,
        name: str,
        resolver: RouteResolver,
        branches: Mapping[str, StepHandler],
        *,
        max_retries: int = DEFAULT_MAX_RETRIES,
        retry_backoff: Backoff = DEFAULT_BACKOFF,
    ) -> DurableWorkflow:
        """Add a route: ``resolver(ctx)`` returns a key and that branch runs.

        A key with no branch completes the step with no result.
        """
        self._claim_step(name)
        _check_callable(resolver, f"route {name!r}: resolver")
        _check_retries(name, max_retries, retry_backoff)
        if not isinstance(branches, Mapping):
            msg = f"route {name!r}: branches must be a mapping of key to handler"
            raise DefinitionError(msg)
        for key, branch in branches.items():
            if not isinstance(key, str):
                msg = f"route {name!r}: branch key {key!r} must be a string"
                raise DefinitionError(msg)
            _check_callable(branch, f"route {name!r}: branch {key!r}")
        return self._add(
            RouteStep(
                name=name,
                resolver=resolver,
                branches=dict(branches),
                max_retries=max_retries,
                retry_backoff=retry_backoff,
            ),
            result_keys=[name],
        )

    def loop(  # noqa: PLR0913 - the reference's loop options, each keyword-only
        self,
        name: str,
        handler: LoopHandler,
        max_iterations: int | None = None,
        *,
        until: Callable[[object, int], object] | None = None,
        feedback: Callable[[object], object] | None = None,
        map_input: InputMapper | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        retry_backoff: Backoff = DEFAULT_BACKOFF,
    ) -> DurableWorkflow:
        """Add a loop: ``handler(input, ctx)`` runs until ``until(result, done)`` holds.

        The first input is ``map_input(ctx)`` (default ``ctx.input``), the next one
        ``feedback(result)`` (default: the same input). Each iteration is journaled as
        ``<name>#iter<i>`` and is not re-run after a crash or a retry.
        """
        self._claim_step(name)
        _check_callable(handler, f"loop {name!r}: handler")
        if (
            max_iterations is None
            or isinstance(max_iterations, bool)
            or not isinstance(max_iterations, int)
            or max_iterations < 1
        ):
            msg = (
                f"loop {name!r}: max_iterations must be a positive integer, not {max_iterations!r}"
            )
            raise DefinitionError(msg)
        _check_optional_callable(until, f"loop {name!r}: until")
        _check_optional_callable(feedback, f"loop {name!r}: feedback")
        _check_optional_callable(map_input, f"loop {name!r}: map_input")
        _check_retries(name, max_retries, retry_backoff)
        return self._add(
            LoopStep(
                name=name,
                handler=handler,
                max_iterations=max_iterations,
                until=until,
                feedback=feedback,
                map_input=map_input,
                max_retries=max_retries,
                retry_backoff=retry_backoff,
            ),
            result_keys=[name],
        )

    def sleep(self, name: str, duration: timedelta | float | datetime) -> DurableWorkflow:
        """Add a durable timer: a duration (``timedelta`` or seconds) or an aware datetime."""
        self._claim_step(name)
        if isinstance(duration, datetime):
            if duration.tzinfo is None or duration.utcoffset() is None:
                msg = f"sleep {name!r}: the datetime must be timezone-aware"
                raise DefinitionError(msg)
            return self._add(SleepStep(name=name, until=duration), result_keys=[])
        delay = _duration(duration, f"sleep {name!r}: duration", allow_zero=True)
        return self._add(SleepStep(name=name, delay=delay), result_keys=[])

    def wait_for_signal(
        self,
        name: str,
        signal: str,
        *,
        timeout: timedelta | float | None = None,
    ) -> DurableWorkflow:
        """Park the run, holding no process, until ``resume(run_id, signal, data)``.

        The payload becomes the step's result. After ``timeout`` the step fails with an
        error saying it timed out, and the run compensates like any failed step.
        """
        self._claim_step(name)
        _check_name(signal, f"wait_for_signal {name!r}: signal")
        limit = None if timeout is None else _duration(timeout, f"signal {name!r}: timeout")
        return self._add(SignalStep(name=name, signal=signal, timeout=limit), result_keys=[name])

    def child_workflow(
        self,
        name: str,
        child_name: str,
        map_input: InputMapper | None = None,
    ) -> DurableWorkflow:
        """Start ``child_name`` as an independent durable run and wait for it.

        Its results become this step's result; its failure fails this step.
        ``map_input(ctx)`` builds the child's input (default: this run's input).
        """
        self._claim_step(name)
        _check_name(child_name, f"child_workflow {name!r}: child workflow name")
        _check_optional_callable(map_input, f"child_workflow {name!r}: map_input")
        return self._add(
            ChildStep(name=name, child_name=child_name, map_input=map_input),
            result_keys=[name],
        )

    # ── helpers ────────────────────────────────────────────────────────────────

    def _claim_step(self, name: str) -> None:
        _check_name(name, "step name")
        if any(step.name == name for step in self._steps):
            msg = f"duplicate step name {name!r} in durable workflow {self.name!r}"
            raise DefinitionError(msg)

    def _add(self, step: StepDefinition, *, result_keys: list[str]) -> DurableWorkflow:
        taken = self._result_keys | {existing.name for existing in self._steps}
        clash = {key for key in result_keys if key in taken}
        if step.name in self._result_keys:
            clash.add(step.name)
        if clash:
            msg = (
                f"{step.type} {step.name!r} in workflow {self.name!r} would store results "
                f"under names already used: {', '.join(sorted(set(clash)))}"
            )
            raise DefinitionError(msg)
        self._steps.append(step)
        self._fingerprint = None
        self._result_keys.update(result_keys)
        return self


def durable(name: str, *, version: str | None = None) -> DurableWorkflow:
    """Create the workflow ``name`` and register it, replacing an earlier definition."""
    return registry.register(DurableWorkflow(name, version=version))


def _shape_details(step: StepDefinition) -> list[str]:
    if isinstance(step, ParallelStep):
        return [entry.name for entry in step.entries]
    if isinstance(step, SignalStep):
        return [step.signal]
    if isinstance(step, ChildStep):
        return [step.child_name]
    if isinstance(step, RouteStep):
        return sorted(step.branches)
    return []


def _check_name(name: object, what: str) -> None:
    if not isinstance(name, str) or not name.strip():
        msg = f"{what} must be a non-empty string, not {name!r}"
        raise DefinitionError(msg)
    if "#" in name:
        msg = f"{what} {name!r} must not contain '#': the journal uses it for sub-units"
        raise DefinitionError(msg)
    if name.startswith(RESERVED_PREFIX):
        msg = f"{what} {name!r} must not start with {RESERVED_PREFIX!r} (reserved)"
        raise DefinitionError(msg)


def _check_callable(value: object, what: str) -> None:
    if not callable(value):
        msg = f"{what} must be callable, not {type(value).__name__}"
        raise DefinitionError(msg)


def _check_optional_callable(value: object, what: str) -> None:
    if value is not None:
        _check_callable(value, what)


def _check_retries(name: str, max_retries: object, retry_backoff: object) -> None:
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 1:
        msg = (
            f"step {name!r}: max_retries counts total attempts and must be an integer "
            f">= 1, not {max_retries!r}"
        )
        raise DefinitionError(msg)
    if retry_backoff not in BACKOFF_STRATEGIES:
        msg = (
            f"step {name!r}: retry_backoff must be 'exponential' or 'linear', not {retry_backoff!r}"
        )
        raise DefinitionError(msg)


def _duration(value: object, what: str, *, allow_zero: bool = False) -> timedelta:
    if isinstance(value, timedelta):
        delta = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            msg = f"{what} must be finite, not {value!r}"
            raise DefinitionError(msg)
        delta = timedelta(seconds=value)
    else:
        msg = f"{what} must be a timedelta or a number of seconds, not {type(value).__name__}"
        raise DefinitionError(msg)
    zero = timedelta(0)
    if delta < zero or (delta == zero and not allow_zero):
        msg = f"{what} must be positive, not {delta.total_seconds():g} seconds"
        raise DefinitionError(msg)
    return delta


def _iterable(value: object, what: str) -> list[object]:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        msg = f"{what}: entries must be a list of ParallelEntry or (name, handler) tuples"
        raise DefinitionError(msg)
    return list(value)


def _entry(step_name: str, raw: object) -> ParallelEntry:
    what = f"parallel {step_name!r}"
    if isinstance(raw, ParallelEntry):
        entry = raw
    elif isinstance(raw, tuple) and len(raw) in (2, 3):
        entry = ParallelEntry(*raw)
    else:
        msg = f"{what}: each entry must be a ParallelEntry or a (name, handler) tuple, not {raw!r}"
        raise DefinitionError(msg)
    _check_name(entry.name, f"{what}: entry name")
    _check_callable(entry.handler, f"{what}: entry {entry.name!r} handler")
    _check_optional_callable(entry.compensate, f"{what}: entry {entry.name!r} compensate")
    return entry
