"""Execute one top-level step against its journal and say what happened.

Rules (the reference's, kept):
- Units already journaled as completed are read back, never re-run: parallel entries
  (``step#entry``), loop iterations (``step#iterN``) and a route's decision
  (``step#route``). A redelivered step fast-forwards to its first unfinished unit.
- A handler that raises, or returns something JSON cannot hold (or whose JSON is over
  the engine's ``max_payload_bytes``), fails the step: it is retried while attempts
  remain, then compensated. Units that finished before the failure
  are journaled either way.
- Results are normalised to JSON as soon as they are produced, so a handler sees the
  same value whether a result was just computed or read back after a crash.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from durable_sa.core.codec import (
    JSONObject,
    JSONValue,
    check_size,
    structure_as,
    to_json,
    to_json_object,
)
from durable_sa.core.outcomes import (
    Advance,
    AwaitChild,
    AwaitSignal,
    Failed,
    Sleep,
    StepOutcome,
    SuspendAgent,
)
from durable_sa.core.registry import registry
from durable_sa.core.snapshot import JournalRecord, JournalStatus, JournalWrite
from durable_sa.core.steps import (
    DEFAULT_BACKOFF,
    DEFAULT_MAX_RETRIES,
    ChildStep,
    LoopStep,
    ParallelStep,
    RetryableStep,
    RouteStep,
    SignalStep,
    SleepStep,
    StepDefinition,
    TaskStep,
)
from durable_sa.core.stored import StoredForm, as_is
from durable_sa.core.units import compensate_unit, entry_unit, iteration_unit, route_unit
from durable_sa.core.validation import check_duration
from durable_sa.errors import DefinitionError, PayloadError, ResultNotSerializableError
from durable_sa.execute.agent import agent_snapshot, is_suspended_agent
from durable_sa.execute.failures import FailureInfo, StepFailedError, describe, failure_info
from durable_sa.execute.invoke import call, call_all

if TYPE_CHECKING:
    from durable_sa.core.backoff import Backoff
    from durable_sa.core.context import DurableContext

Journal = Mapping[str, JournalRecord]


def drive_step(  # noqa: PLR0911 - one return per step kind
    step: StepDefinition,
    ctx: DurableContext,
    journal: Journal,
    stored: StoredForm = as_is,
    *,
    max_payload_bytes: int | None = None,
) -> StepOutcome:
    """Execute ``step`` for ``ctx`` and return its outcome (never raises for handler errors).

    ``stored`` gives a result as the database will give it back: what a loop's ``until``
    and ``feedback`` see of an iteration just run, as they would after a crash. A result
    whose JSON is over ``max_payload_bytes`` fails the step (``None``: no limit).

    Raises:
        WorkflowNotRegisteredError: a child step names a workflow this process lacks.

    """
    limit = max_payload_bytes
    if isinstance(step, TaskStep):
        return _task(step, ctx, limit)
    if isinstance(step, ParallelStep):
        return _parallel(step, ctx, journal, limit)
    if isinstance(step, RouteStep):
        return _route(step, ctx, journal, limit)
    if isinstance(step, LoopStep):
        return _loop(step, ctx, journal, stored, limit)
    if isinstance(step, SleepStep):
        return _sleep(step, ctx)
    if isinstance(step, SignalStep):
        return _await_signal(step, ctx)
    return _child(step, ctx, limit)


def _failure(
    step: RetryableStep,
    exc: BaseException,
    partial: list[JournalWrite],
    *,
    undo_failed_step: bool = False,
) -> StepOutcome:
    return _failed(
        step.name,
        exc,
        partial,
        backoff=step.retry_backoff,
        max_attempts=step.max_retries,
        undo_failed_step=undo_failed_step,
    )


def _failed(  # noqa: PLR0913 - a failed attempt's parts, keyword-only
    name: str,
    exc: BaseException,
    partial: Sequence[JournalWrite],
    *,
    backoff: Backoff,
    max_attempts: int,
    undo_failed_step: bool = False,
) -> Failed:
    info = failure_info(exc)
    return Failed(
        step_name=name,
        journal=tuple(partial),
        failure=info.message,
        error_type=info.error_type,
        traceback=info.traceback,
        backoff=backoff,
        max_attempts=max_attempts,
        undo_failed_step=undo_failed_step,
    )


def _encode(value: object, what: str, limit: int | None) -> JSONValue:
    """``value`` as JSON, or :class:`StepFailedError`: not JSON, or over ``limit`` bytes."""
    try:
        data = to_json(value, what=what, error=ResultNotSerializableError)
        check_size(data, limit, what=what)
    except PayloadError as exc:  # ResultNotSerializableError or PayloadTooLargeError
        raise StepFailedError(str(exc)) from exc
    return data


def _completed(step_id: str, result: JSONValue, attempt: int) -> JournalWrite:
    return JournalWrite(
        step_id=step_id, status=JournalStatus.COMPLETED, result=result, attempt=attempt
    )


# ── step ────────────────────────────────────────────────────────────────────────


def _task(step: TaskStep, ctx: DurableContext, limit: int | None) -> StepOutcome:
    try:
        raw = call(step.handler, ctx)
        if ctx.has_session:
            # A transactional step's writes are part of the step: a constraint that
            # fails at flush fails the step, like an exception in the handler.
            ctx.session.flush()
        if is_suspended_agent(raw):
            snapshot = _encode(
                agent_snapshot(raw), f"step {step.name!r}'s suspended agent snapshot", limit
            )
            return SuspendAgent(step_name=step.name, snapshot=snapshot)
        result = _encode(raw, f"the result of step {step.name!r}", limit)
    except StepFailedError as exc:
        return _failure(step, exc, [])
    except Exception as exc:  # noqa: BLE001 - any handler error fails the step
        return _failure(step, exc, [])
    return Advance(
        journal=(_completed(step.name, result, ctx.attempt),),
        result_patch={step.name: result},
    )


# ── parallel ────────────────────────────────────────────────────────────────────


def _parallel(
    step: ParallelStep, ctx: DurableContext, journal: Journal, limit: int | None
) -> StepOutcome:
    results: dict[str, JSONValue] = {}
    pending = []
    for entry in step.entries:
        record = journal.get(entry_unit(step.name, entry.name))
        if record is not None and record.completed:
            results[entry.name] = record.result
        else:
            pending.append(entry)

    outcomes = call_all([(entry.handler, (ctx,)) for entry in pending])
    writes: list[JournalWrite] = []
    first_error: BaseException | None = None
    for entry, outcome in zip(pending, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            first_error = first_error or outcome
            continue
        try:
            value = _encode(
                outcome, f"the result of parallel entry {step.name}#{entry.name}", limit
            )
        except StepFailedError as exc:
            first_error = first_error or exc
            continue
        results[entry.name] = value
        writes.append(_completed(entry_unit(step.name, entry.name), value, ctx.attempt))

    if first_error is not None:
        undoable = any(
            entry.compensate is not None and entry.name in results for entry in step.entries
        )
        return _failure(step, first_error, writes, undo_failed_step=undoable)

    ordered: JSONObject = {entry.name: results[entry.name] for entry in step.entries}
    writes.append(_completed(step.name, ordered, ctx.attempt))
    return Advance(journal=tuple(writes), result_patch=dict(ordered))


# ── route ───────────────────────────────────────────────────────────────────────


def _route(
    step: RouteStep, ctx: DurableContext, journal: Journal, limit: int | None
) -> StepOutcome:
    writes: list[JournalWrite] = []
    decision = journal.get(route_unit(step.name))
    try:
        if decision is not None and decision.completed and isinstance(decision.result, str):
            key = decision.result
        else:
            raw = call(step.resolver, ctx)
            if not isinstance(raw, str):
                msg = f"route {step.name!r}: the resolver returned {raw!r}, not a branch key string"
                raise StepFailedError(msg)  # noqa: TRY301 - same handling as a raising resolver
            key = str(raw)
            writes.append(_completed(route_unit(step.name), key, ctx.attempt))
    except StepFailedError as exc:
        return _failure(step, exc, [])
    except Exception as exc:  # noqa: BLE001 - any handler error fails the step
        return _failure(step, exc, [])

    branch = step.branches.get(key)
    try:
        result: JSONValue = None
        if branch is not None:
            what = f"the result of route {step.name!r} branch {key!r}"
            result = _encode(call(branch, ctx), what, limit)
    except StepFailedError as exc:
        return _failure(step, exc, writes)
    except Exception as exc:  # noqa: BLE001 - any handler error fails the step
        return _failure(step, exc, writes)
    writes.append(_completed(step.name, result, ctx.attempt))
    patch: JSONObject = {step.name: result} if branch is not None else {}
    return Advance(journal=tuple(writes), result_patch=patch)


# ── loop ────────────────────────────────────────────────────────────────────────


def _loop(
    step: LoopStep, ctx: DurableContext, journal: Journal, stored: StoredForm, limit: int | None
) -> StepOutcome:
    writes: list[JournalWrite] = []
    last: JSONValue = None
    seen: object = None
    try:
        current: object = call(step.map_input, ctx) if step.map_input else ctx.input
        for i in range(step.max_iterations):
            unit = iteration_unit(step.name, i)
            record = journal.get(unit)
            if record is not None and record.completed:
                last = seen = record.result
            else:
                try:
                    raw = call(step.handler, current, ctx)
                except Exception as exc:  # noqa: BLE001 - finished iterations stay journaled
                    return _failure(step, exc, writes)
                last = _encode(raw, f"the result of loop {step.name!r} iteration {i}", limit)
                writes.append(_completed(unit, last, ctx.attempt))
                seen = stored(last)
            if step.until is not None and call(step.until, seen, i + 1):
                break
            if step.feedback is not None:
                current = call(step.feedback, seen)
    except StepFailedError as exc:
        return _failure(step, exc, writes)
    except Exception as exc:  # noqa: BLE001 - any handler error fails the step
        return _failure(step, exc, writes)
    writes.append(_completed(step.name, last, ctx.attempt))
    return Advance(journal=tuple(writes), result_patch={step.name: last})


# ── sleep and signal: durations decided per run ──────────────────────────────


def _sleep(step: SleepStep, ctx: DurableContext) -> StepOutcome:
    if step.compute is None:
        return Sleep(step_name=step.name, delay=step.delay, until=step.until)
    try:
        answer = _decided_duration(step.compute, ctx, f"sleep {step.name!r}: duration")
    except Exception as exc:  # noqa: BLE001 - any error of the callable fails the step
        return _failed(
            step.name, exc, [], backoff=DEFAULT_BACKOFF, max_attempts=DEFAULT_MAX_RETRIES
        )
    if isinstance(answer, datetime):
        return Sleep(step_name=step.name, until=answer)
    return Sleep(step_name=step.name, delay=answer)


def _await_signal(step: SignalStep, ctx: DurableContext) -> StepOutcome:
    if step.compute_timeout is None:
        return AwaitSignal(step_name=step.name, signal=step.signal, timeout=step.timeout)
    try:
        answer = _decided_duration(
            step.compute_timeout, ctx, f"wait_for_signal {step.name!r}: timeout"
        )
    except Exception as exc:  # noqa: BLE001 - any error of the callable fails the step
        return _failed(
            step.name, exc, [], backoff=DEFAULT_BACKOFF, max_attempts=DEFAULT_MAX_RETRIES
        )
    if isinstance(answer, datetime):
        return AwaitSignal(step_name=step.name, signal=step.signal, until=answer)
    return AwaitSignal(step_name=step.name, signal=step.signal, timeout=answer)


def _decided_duration(
    compute: Callable[..., object], ctx: DurableContext, what: str
) -> timedelta | datetime:
    """Call a per-run duration; its answer as a ``timedelta`` or an aware ``datetime``.

    The answer is checked as a duration given at definition time would be (a sleep may
    be zero, a timeout must be positive; at most :data:`MAX_DURATION`).
    """
    answer = call(compute, ctx)
    if isinstance(answer, datetime):
        if answer.tzinfo is None or answer.utcoffset() is None:
            msg = f"{what} callable returned a naive datetime {answer!r}; return an aware one"
            raise StepFailedError(msg)
        return answer
    try:
        return check_duration(answer, f"{what} callable's answer", allow_zero=True)
    except DefinitionError as exc:
        raise StepFailedError(str(exc)) from None


# ── child ───────────────────────────────────────────────────────────────────────


def _child(step: ChildStep, ctx: DurableContext, limit: int | None) -> StepOutcome:
    child = registry.get(step.child_name)  # not defined here: the job is deferred
    try:
        raw = call(step.map_input, ctx) if step.map_input else ctx.input
        what = f"the input of child workflow step {step.name!r}"
        child_input = to_json_object(raw, what=what)
        check_size(child_input, limit, what=what)
        if child.input_type is not None:  # refused here, as start() refuses it
            structure_as(child_input, child.input_type, what=what)
    except Exception as exc:  # noqa: BLE001 - any handler error fails the step
        # a bad input mapping fails the same way on every attempt: no retry
        return _failed(step.name, exc, [], backoff=DEFAULT_BACKOFF, max_attempts=1)
    return AwaitChild(
        step_name=step.name,
        child_name=child.name,
        child_version=child.version,
        child_total_steps=len(child.steps),
        child_input=child_input,
        child_on_finish=child.finish_hook is not None,
        child_limits=child.limits if child.limits.any else None,
    )


# ── compensation ────────────────────────────────────────────────────────────────


def drive_compensation(step: StepDefinition, ctx: DurableContext, journal: Journal) -> JournalWrite:
    """Run ``step``'s compensators for its completed units; the ``step#compensate`` row.

    A compensator that raises is recorded (the row is ``failed`` with its message) and the
    rollback goes on: it does not get stuck on one step. The row's result says what was
    done, so an operator can tell an undo from a step that had nothing to undo:
    ``{"ran": ["charge"]}`` (the step's name, or its parallel entries' names), or
    ``{"ran": [], "nothing_to_undo": "<why>"}``.
    """
    errors: list[str] = []
    failures: list[FailureInfo] = []
    todo: list[tuple[str, Callable[..., object]]] = []
    declared = False
    if isinstance(step, TaskStep):
        declared = step.compensate is not None
        record = journal.get(step.name)
        if step.compensate is not None and record is not None and record.completed:
            todo.append((step.name, step.compensate))
    elif isinstance(step, ParallelStep):
        for entry in step.entries:
            declared = declared or entry.compensate is not None
            record = journal.get(entry_unit(step.name, entry.name))
            if entry.compensate is not None and record is not None and record.completed:
                todo.append((entry.name, entry.compensate))
    for label, compensator in todo:
        try:
            call(compensator, ctx)
            if ctx.has_session:
                # A transactional compensator's writes are part of its row: a constraint
                # that fails at flush fails the compensator, like an exception in it.
                ctx.session.flush()
        except Exception as exc:  # noqa: BLE001 - recorded, rollback continues
            errors.append(describe(exc) if label == step.name else f"{label}: {describe(exc)}")
            failures.append(failure_info(exc))
    done: dict[str, JSONValue] = {"ran": [label for label, _ in todo]}
    if not todo:
        done["nothing_to_undo"] = (
            "nothing of it had completed" if declared else "it has no compensator"
        )
    return JournalWrite(
        step_id=compensate_unit(step.name),
        status=JournalStatus.FAILED if errors else JournalStatus.COMPLETED,
        result=done,
        error="; ".join(errors) if errors else None,
        attempt=1,
        # Typed and traced like a failed step's row (the first compensator that failed;
        # a parallel step's others are named in ``error``).
        error_type=failures[0].error_type if failures else None,
        traceback=failures[0].traceback if failures else None,
    )
