"""The step kinds of a workflow, as frozen values: what the builder methods produce.

Each builder method of :class:`~durable_sa.core.workflow.DurableWorkflow` checks its
arguments and appends one of these values; the engine and the step driver read them and
nothing else. Their public home is :mod:`durable_sa.core.definition`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, TypeAlias

import attrs

from durable_sa.core.backoff import Backoff
from durable_sa.core.codec import JSONValue

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
DurationFn: TypeAlias = "Callable[[DurableContext], object]"
"""Decides a sleep's duration or a signal's timeout per run, when the step is reached:
returns a ``timedelta``, seconds or an aware ``datetime`` (may be ``async def``)."""


class _NoDefault(enum.Enum):
    """The type of :data:`NO_DEFAULT`."""

    NO_DEFAULT = "NO_DEFAULT"

    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Final = _NoDefault.NO_DEFAULT
"""A signal step given no ``default``: its timeout fails the step (``None`` is a default)."""
NoDefault: TypeAlias = Literal[_NoDefault.NO_DEFAULT]
"""The type of :data:`NO_DEFAULT`, for annotations."""

ResultType: TypeAlias = Any
"""What ``ctx.result(name)`` decodes a stored result as (``result_type=``): an attrs
class, a dataclass, a pydantic model, or a container of them (``list[Quote]``); ``None``
keeps the stored JSON. Never part of the definition's fingerprint."""

DEFAULT_MAX_RETRIES: Final = 3
DEFAULT_BACKOFF: Final[Backoff] = "exponential"


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
    result_type: ResultType = None
    rate_limit: str | None = None
    """The shared rate limit this entry's executions count against (``None``: the
    parallel step's own ``rate_limit``, if any). Never part of the fingerprint."""


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
    result_type: ResultType = None
    rate_limit: str | None = None
    """The shared rate limit each execution counts against (:mod:`durable_sa.core.rates`)."""


@attrs.frozen(kw_only=True)
class ParallelStep:
    """Entries run concurrently; each result is stored under the entry's name."""

    type: ClassVar[StepType] = StepType.PARALLEL
    name: str
    entries: tuple[ParallelEntry, ...]
    max_retries: int = DEFAULT_MAX_RETRIES
    retry_backoff: Backoff = DEFAULT_BACKOFF
    rate_limit: str | None = None
    """The rate limit of every entry that names none itself."""


@attrs.frozen(kw_only=True)
class RouteStep:
    """The resolver picks a branch key; that branch's handler runs."""

    type: ClassVar[StepType] = StepType.ROUTE
    name: str
    resolver: RouteResolver
    branches: Mapping[str, StepHandler]
    max_retries: int = DEFAULT_MAX_RETRIES
    retry_backoff: Backoff = DEFAULT_BACKOFF
    result_type: ResultType = None


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
    result_type: ResultType = None


@attrs.frozen(kw_only=True)
class SleepStep:
    """A durable timer: for ``delay`` from when the step runs, or ``until`` an instant.

    With ``compute``, the duration is decided per run: called once when the step is
    reached, its answer becomes the wake time journaled as the step's result.
    """

    type: ClassVar[StepType] = StepType.SLEEP
    name: str
    delay: timedelta | None = None
    until: datetime | None = None
    compute: DurationFn | None = None

    @property
    def duration(self) -> timedelta | datetime | DurationFn:
        """What was given: the delay, the instant to sleep until, or the callable."""
        if self.compute is not None:
            return self.compute
        if self.until is not None:
            return self.until
        return self.delay if self.delay is not None else timedelta(0)


@attrs.frozen(kw_only=True)
class SignalStep:
    """Park the run until ``signal`` is delivered; after ``timeout``, fail the step.

    ``compute_timeout`` decides the timeout per run when the step is reached (the
    deadline is kept on the run). With a ``default`` (any JSON value, ``None``
    included), a timeout completes the step with it instead of failing it.
    """

    type: ClassVar[StepType] = StepType.SIGNAL
    name: str
    signal: str
    timeout: timedelta | None = None
    result_type: ResultType = None
    compute_timeout: DurationFn | None = None
    default: JSONValue | NoDefault = NO_DEFAULT
    """The step's result when it times out; :data:`NO_DEFAULT`: the timeout fails it."""

    @property
    def has_default(self) -> bool:
        """True when a timeout completes the step with :attr:`default`."""
        return self.default is not NO_DEFAULT


@attrs.frozen(kw_only=True)
class ChildStep:
    """Start the workflow ``child_name`` as its own durable run and wait for it."""

    type: ClassVar[StepType] = StepType.CHILD
    name: str
    child_name: str
    map_input: InputMapper | None = None
    result_type: ResultType = None


StepDefinition: TypeAlias = (
    TaskStep | ParallelStep | RouteStep | LoopStep | SleepStep | SignalStep | ChildStep
)
RetryableStep: TypeAlias = TaskStep | ParallelStep | RouteStep | LoopStep


@attrs.frozen(kw_only=True)
class FinishHook:
    """A workflow's ``on_finish`` hook: run once, in the transaction that ends the run.

    Retried like a step: ``max_retries`` attempts in all, ``retry_backoff`` between them.
    """

    handler: StepHandler
    max_retries: int = DEFAULT_MAX_RETRIES
    retry_backoff: Backoff = DEFAULT_BACKOFF
