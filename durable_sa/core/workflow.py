"""The workflow builder: a named, ordered list of steps, each added by one method call.

Rules:
- A workflow is a flat, ordered list of named steps. Names are unique, and so are the
  keys results are stored under (a parallel entry's name is a result key too).
- Each builder method checks its arguments (:mod:`durable_sa.core.validation`), appends
  one step value (:mod:`durable_sa.core.steps`) to the same object and returns it, so
  chaining is optional.
- A definition has a *version*: the one given to ``durable(name, version=...)``, else a
  fingerprint of its steps' kinds and names. A run records the version it started with.
- Payload types (``input_type``, ``result_type``) say how handlers read stored JSON; they
  change nothing stored, so they are not part of the fingerprint.

Registering a definition is :func:`durable_sa.core.definition.durable`'s job, one layer up.
"""

from __future__ import annotations

import hashlib
import json
import types
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, TypeGuard

from durable_sa.core.admission import Limits
from durable_sa.core.rates import check_rate_limit_name
from durable_sa.core.steps import (
    DEFAULT_BACKOFF,
    DEFAULT_MAX_RETRIES,
    NO_DEFAULT,
    ChildStep,
    DurationFn,
    FinishHook,
    InputMapper,
    LoopHandler,
    LoopStep,
    ParallelEntry,
    ParallelStep,
    ResultType,
    RouteResolver,
    RouteStep,
    SignalStep,
    SleepStep,
    StepDefinition,
    StepHandler,
    TaskStep,
)
from durable_sa.core.units import iteration_unit
from durable_sa.core.validation import (
    NAME_LIMIT,
    STEP_NAME_LIMIT,
    UNIT_ID_LIMIT,
    check_callable,
    check_default,
    check_duration,
    check_entries,
    check_entry,
    check_name,
    check_optional_callable,
    check_retries,
)
from durable_sa.errors import DefinitionError

if TYPE_CHECKING:
    from durable_sa.core.backoff import Backoff
    from durable_sa.core.codec import JSONValue
    from durable_sa.core.steps import NoDefault


class DurableWorkflow:
    """A named, ordered list of steps, built by chaining and registered on creation."""

    def __init__(
        self,
        name: str,
        *,
        version: str | None = None,
        input_type: ResultType = None,
        max_active: int | None = None,
        max_active_per_key: int | None = None,
    ) -> None:
        """Create an empty workflow; prefer :func:`~durable_sa.core.definition.durable`.

        With ``input_type`` (an attrs class, dataclass or pydantic model), ``ctx.input``
        is the run's input structured as that type, and ``start()`` refuses an input
        that does not structure as it. ``max_active`` and ``max_active_per_key`` limit
        the runs active at once, in all and per ``concurrency_key``
        (:mod:`durable_sa.core.admission`).
        """
        check_name(name, "workflow name")
        if version is not None and (not isinstance(version, str) or not version):
            msg = f"workflow {name!r}: version must be a non-empty string"
            raise DefinitionError(msg)
        self.name: Final = name
        self.input_type: Final = _checked_type(input_type, f"workflow {name!r}: input_type")
        try:
            limits = Limits(max_active=max_active, max_active_per_key=max_active_per_key)
        except DefinitionError as exc:
            msg = f"workflow {name!r}: {exc}"
            raise DefinitionError(msg) from None
        self.limits: Final = limits
        """The limits on the workflow's active runs (none by default)."""
        self._result_types: dict[str, Any] = {}
        self._explicit_version = version
        self._steps: list[StepDefinition] = []
        self._fingerprint: str | None = None
        self._result_keys: set[str] = set()
        self._finish_hook: FinishHook | None = None

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

    @property
    def finish_hook(self) -> FinishHook | None:
        """The ``on_finish`` hook, if one was set."""
        return self._finish_hook

    def on_finish(
        self,
        handler: StepHandler,
        *,
        max_retries: int = DEFAULT_MAX_RETRIES,
        retry_backoff: Backoff = DEFAULT_BACKOFF,
    ) -> DurableWorkflow:
        """Run ``handler(ctx)`` once when a run ends: completed, failed or canceled.

        It runs inside the transaction that writes the run's final status, with
        ``ctx.session`` on it, ``ctx.final_status`` and ``ctx.error``: its writes commit
        with the final status or not at all. A hook that raises is retried like a step
        (``max_retries`` attempts in all); when they are spent the run still ends with
        its status and the ``#finish`` journal row records the hook's failure.
        Runs started before the hook was set do not run it.
        """
        if self._finish_hook is not None:
            msg = f"workflow {self.name!r} already has an on_finish hook"
            raise DefinitionError(msg)
        check_callable(handler, f"workflow {self.name!r}: on_finish")
        check_retries("on_finish", max_retries, retry_backoff)
        self._finish_hook = FinishHook(
            handler=handler, max_retries=max_retries, retry_backoff=retry_backoff
        )
        return self

    def result_type_of(self, key: str) -> ResultType:
        """The ``result_type`` declared for the result stored under ``key`` (``None``: JSON)."""
        return self._result_types.get(key)

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
        result_type: ResultType = None,
        rate_limit: str | None = None,
    ) -> DurableWorkflow:
        """Add a step; its result is stored in ``ctx.results[name]``.

        ``compensate`` undoes it if a later step fails for good. With
        ``transactional=True`` the handler gets ``ctx.session``, on the very transaction
        that checkpoints the step, so its writes commit exactly once; so does the
        compensator, on the transaction that journals ``<step>#compensate``. With
        ``result_type``, ``ctx.result(name)`` reads the result back as that type. With
        ``rate_limit``, each execution counts against that shared limit
        (``engine.set_rate_limit``) and waits, without using an attempt, while it is reached.
        """
        self._claim_step(name)
        check_callable(handler, f"step {name!r}: handler")
        check_optional_callable(compensate, f"step {name!r}: compensate")
        check_retries(name, max_retries, retry_backoff)
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
                result_type=_checked_type(result_type, f"step {name!r}: result_type"),
                rate_limit=check_rate_limit_name(rate_limit, f"step {name!r}"),
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
        rate_limit: str | None = None,
    ) -> DurableWorkflow:
        """Add entries that run concurrently; each result is stored under its entry name.

        ``entries`` holds :class:`ParallelEntry` values or ``(name, handler)`` /
        ``(name, handler, compensate)`` tuples; an entry's ``result_type`` is how
        ``ctx.result(entry_name)`` reads its result. ``rate_limit`` is the shared limit
        each entry's execution counts against, unless the entry names its own
        (``ParallelEntry(..., rate_limit=)``); the step begins when all its entries may.
        """
        self._claim_step(name)
        check_retries(name, max_retries, retry_backoff)
        built = tuple(
            check_entry(name, raw) for raw in check_entries(entries, f"parallel {name!r}")
        )
        for entry in built:
            _checked_type(entry.result_type, f"parallel {name!r}: entry {entry.name!r} result_type")
            check_rate_limit_name(entry.rate_limit, f"parallel {name!r}: entry {entry.name!r}")
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
                name=name,
                entries=built,
                max_retries=max_retries,
                retry_backoff=retry_backoff,
                rate_limit=check_rate_limit_name(rate_limit, f"parallel {name!r}"),
            ),
            result_keys=keys,
        )

    def route(  # noqa: PLR0913 - the reference's route options, keyword-only
        self,
        name: str,
        resolver: RouteResolver,
        branches: Mapping[str, StepHandler],
        *,
        max_retries: int = DEFAULT_MAX_RETRIES,
        retry_backoff: Backoff = DEFAULT_BACKOFF,
        result_type: ResultType = None,
    ) -> DurableWorkflow:
        """Add a route: ``resolver(ctx)`` returns a key and that branch runs.

        A key with no branch completes the step with no result.
        """
        self._claim_step(name)
        check_callable(resolver, f"route {name!r}: resolver")
        check_retries(name, max_retries, retry_backoff)
        if not isinstance(branches, Mapping):
            msg = f"route {name!r}: branches must be a mapping of key to handler"
            raise DefinitionError(msg)
        for key, branch in branches.items():
            if not isinstance(key, str):
                msg = f"route {name!r}: branch key {key!r} must be a string"
                raise DefinitionError(msg)
            check_callable(branch, f"route {name!r}: branch {key!r}")
        return self._add(
            RouteStep(
                name=name,
                resolver=resolver,
                branches=dict(branches),
                max_retries=max_retries,
                retry_backoff=retry_backoff,
                result_type=_checked_type(result_type, f"route {name!r}: result_type"),
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
        result_type: ResultType = None,
    ) -> DurableWorkflow:
        """Add a loop: ``handler(input, ctx)`` runs until ``until(result, done)`` holds.

        The first input is ``map_input(ctx)`` (default ``ctx.input``), the next one
        ``feedback(result)`` (default: the same input). Each iteration is journaled as
        ``<name>#iter<i>`` and is not re-run after a crash or a retry.
        """
        self._claim_step(name)
        check_callable(handler, f"loop {name!r}: handler")
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
        last_unit = iteration_unit(name, max_iterations - 1)
        if len(last_unit) > UNIT_ID_LIMIT:
            msg = (
                f"loop {name[:40]!r}: its last iteration's journal id is {len(last_unit)} "
                f"characters long; at most {UNIT_ID_LIMIT} fit (a shorter name or fewer "
                "iterations)"
            )
            raise DefinitionError(msg)
        check_optional_callable(until, f"loop {name!r}: until")
        check_optional_callable(feedback, f"loop {name!r}: feedback")
        check_optional_callable(map_input, f"loop {name!r}: map_input")
        check_retries(name, max_retries, retry_backoff)
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
                result_type=_checked_type(result_type, f"loop {name!r}: result_type"),
            ),
            result_keys=[name],
        )

    def sleep(
        self, name: str, duration: timedelta | float | datetime | DurationFn
    ) -> DurableWorkflow:
        """Add a durable timer: a duration (``timedelta`` or seconds) or an aware datetime.

        ``duration`` may also be a callable ``ctx -> timedelta | float | datetime`` (plain
        or ``async def``), which decides it per run: it is called once, when the step is
        reached, and the wake time it gives is journaled as the step's result, so a
        retry or a crash never changes it. A callable that raises or returns anything
        else fails the step, which is retried like a step with the default retries.
        """
        self._claim_step(name)
        if isinstance(duration, datetime):
            if duration.tzinfo is None or duration.utcoffset() is None:
                msg = f"sleep {name!r}: the datetime must be timezone-aware"
                raise DefinitionError(msg)
            return self._add(SleepStep(name=name, until=duration), result_keys=[])
        if _is_duration_fn(duration):
            return self._add(SleepStep(name=name, compute=duration), result_keys=[])
        delay = check_duration(duration, f"sleep {name!r}: duration", allow_zero=True)
        return self._add(SleepStep(name=name, delay=delay), result_keys=[])

    def wait_for_signal(
        self,
        name: str,
        signal: str,
        *,
        timeout: timedelta | float | DurationFn | None = None,
        default: object = NO_DEFAULT,
        result_type: ResultType = None,
    ) -> DurableWorkflow:
        """Park the run, holding no process, until ``send`` or ``resume`` delivers ``signal``.

        The payload becomes the step's result. After ``timeout`` the step fails with an
        error saying it timed out, and the run compensates like any failed step; given a
        ``default`` (any JSON value, ``None`` too), the timeout completes the step with
        that value instead, as if the signal had arrived with it, so a later ``route``
        can branch on it. ``timeout`` may be a callable ``ctx -> timedelta | float |
        datetime``, called once when the step is reached; the deadline it gives is kept
        on the run.
        """
        self._claim_step(name)
        check_name(signal, f"wait_for_signal {name!r}: signal", limit=NAME_LIMIT)
        stored: JSONValue | NoDefault = NO_DEFAULT
        if default is not NO_DEFAULT:
            if timeout is None:
                msg = (
                    f"wait_for_signal {name!r}: a default is the step's result when it times "
                    "out; give a timeout too, or drop the default"
                )
                raise DefinitionError(msg)
            stored = check_default(default, f"wait_for_signal {name!r}: default")
        typed = _checked_type(result_type, f"wait_for_signal {name!r}: result_type")
        if timeout is not None and _is_duration_fn(timeout):
            step = SignalStep(
                name=name,
                signal=signal,
                compute_timeout=timeout,
                default=stored,
                result_type=typed,
            )
        else:
            limit = (
                None if timeout is None else check_duration(timeout, f"signal {name!r}: timeout")
            )
            step = SignalStep(
                name=name, signal=signal, timeout=limit, default=stored, result_type=typed
            )
        return self._add(step, result_keys=[name])

    def child_workflow(
        self,
        name: str,
        child_name: str,
        map_input: InputMapper | None = None,
        *,
        result_type: ResultType = None,
    ) -> DurableWorkflow:
        """Start ``child_name`` as an independent durable run and wait for it.

        Its results become this step's result; its failure fails this step.
        ``map_input(ctx)`` builds the child's input (default: this run's input).
        """
        self._claim_step(name)
        check_name(child_name, f"child_workflow {name!r}: child workflow name")
        check_optional_callable(map_input, f"child_workflow {name!r}: map_input")
        return self._add(
            ChildStep(
                name=name,
                child_name=child_name,
                map_input=map_input,
                result_type=_checked_type(result_type, f"child_workflow {name!r}: result_type"),
            ),
            result_keys=[name],
        )

    # ── helpers ────────────────────────────────────────────────────────────────

    def _claim_step(self, name: str) -> None:
        check_name(name, "step name", limit=STEP_NAME_LIMIT)
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
        if isinstance(step, ParallelStep):
            self._result_types.update(
                (entry.name, entry.result_type) for entry in step.entries if entry.result_type
            )
        elif getattr(step, "result_type", None) is not None:
            self._result_types[step.name] = getattr(step, "result_type", None)
        return self


def _is_duration_fn(value: object) -> TypeGuard[DurationFn]:
    """A duration decided per run: something callable (a number or a timedelta is not)."""
    return callable(value) and not isinstance(value, (timedelta, datetime))


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


def _checked_type(value: ResultType, what: str) -> ResultType:
    """A payload type as given: ``None``, a class, or a generic alias (``list[Quote]``)."""
    if value is None or isinstance(value, (type, types.UnionType)) or hasattr(value, "__origin__"):
        return value
    msg = (
        f"{what} must be a type (an attrs class, dataclass, pydantic model or a container "
        f"of them, such as list[Quote]), not {value!r}"
    )
    raise DefinitionError(msg)
