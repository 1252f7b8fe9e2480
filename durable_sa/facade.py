"""``Durable``: the engine's front door.

Rules:
- ``start``, ``resume`` and ``cancel`` accept the caller's ``Session`` and then only add
  statements to its transaction: the caller commits, so a business row and the run that
  processes it commit or roll back together. Without a session each call commits its own
  short transaction.
- Their ``_async`` twins (and ``status_async``, ``list_async``) are the same calls run
  for asyncio code by :class:`~durable_sa.engine.async_bridge.AsyncBridge`: in the
  caller's ``AsyncSession``, or on the engine. Each twin is one line here.
- Every value stored is JSON through the codec; bad input raises before anything is
  written.
- ``Durable`` holds the verbs an application writes (the reference facade's start,
  resume, cancel, status, list and recover, plus wait, worker and create_tables).
  Operator and driver verbs (dead letters, requeue, prune, live workers, single jobs)
  live on ``engine.admin`` (:class:`durable_sa.admin.Admin`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, cast

from durable_sa.admin import Admin
from durable_sa.core.admission import check_concurrency_key, check_priority
from durable_sa.core.codec import check_size, structure_as, to_json, to_json_object
from durable_sa.core.decide import decide_cancel, decide_resume
from durable_sa.core.endings import signals_refused
from durable_sa.core.ids import checked_run_id
from durable_sa.core.plan import NewRun, plan_start, plan_transition
from durable_sa.core.rates import RateLimit
from durable_sa.core.registry import registry
from durable_sa.core.schedule_inputs import schedule_inputs
from durable_sa.core.schedules import (
    MAX_SCHEDULE_NAME,
    Cron,
    FiredTick,
    ScheduleInfo,
    checked_overlap,
    checked_window,
)
from durable_sa.core.start import decide_start
from durable_sa.core.status import RunStatus
from durable_sa.core.validation import NAME_LIMIT, check_name, check_text
from durable_sa.engine import schedules
from durable_sa.engine.applier import PlanItem
from durable_sa.engine.async_bridge import (
    AsyncBridge,
    as_async_engine,
    refuse_async_session,
    sync_engine_for,
)
from durable_sa.engine.delivery import DEFER_DELAY
from durable_sa.engine.recovery import recover_runs
from durable_sa.engine.shell import Clock, Shell, configure_sqlite
from durable_sa.errors import (
    InvalidArgumentError,
    RunNotFoundError,
    RunTerminalError,
    UnknownWorkflowError,
)
from durable_sa.outbox.relay import Relay
from durable_sa.queue import dead_letters
from durable_sa.queue.backends import check_capabilities, load_backend
from durable_sa.queue.jobs_table import JobsTableBackend
from durable_sa.results import (
    CancelResult,
    ResumeReason,
    ResumeResult,
    RunStatusSnapshot,
    SendResult,
    StartResult,
)
from durable_sa.runtime.presence import live_workers
from durable_sa.store import controls
from durable_sa.store.known_workflows import stored_workflow, stored_workflow_names
from durable_sa.store.models import metadata
from durable_sa.store.notify import install_triggers
from durable_sa.store.queries import load_run, lock_run, lock_tree
from durable_sa.store.signals import buffer_signal
from durable_sa.views import checked_limit, list_cutoff, list_runs, run_status
from durable_sa.waiting import wait_for_run, wait_for_run_async

if TYPE_CHECKING:
    import builtins
    from collections.abc import Callable, Mapping, Sequence

    from sqlalchemy import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
    from sqlalchemy.orm import Session

    from durable_sa.queue.protocol import QueueBackend
    from durable_sa.worker import Worker

logger = logging.getLogger(__name__)


_PROBE_RUN: Final = NewRun(
    workflow_name="",
    workflow_version=None,
    total_steps=0,
    input={},
    due=datetime.min.replace(tzinfo=UTC),
)
"""A start plan's shape, to ask the applier whether a start is one statement."""


def _check_name_argument(value: object, what: str) -> None:
    """A rate limit's or a workflow's name given to a verb: non-empty text that fits."""
    if not isinstance(value, str) or not value.strip():
        msg = f"the {what} must be a non-empty string, not {value!r}"
        raise InvalidArgumentError(msg)
    try:
        check_text(value, what, limit=NAME_LIMIT)
    except ValueError as exc:
        raise InvalidArgumentError(str(exc)) from exc


class Durable:
    """A durable workflow engine on an application's SQLAlchemy ``Engine`` or ``AsyncEngine``.

    >>> engine = Durable(create_engine("sqlite:///app.db"))   # doctest: +SKIP
    >>> engine.create_tables()                                 # doctest: +SKIP
    >>> engine.start("order", {"sku": "A-1"})                  # doctest: +SKIP
    """

    def __init__(  # noqa: PLR0913 - engine options, all keyword-only
        self,
        sa_engine: Engine | AsyncEngine,
        *,
        sync_engine: Engine | None = None,
        backend: QueueBackend | str | None = None,
        backend_options: Mapping[str, Any] | None = None,
        clock: Clock | None = None,
        queue: str = "default",
        max_job_attempts: int = 5,
        job_lease: timedelta = timedelta(minutes=5),
        max_payload_bytes: int | None = None,
        defer_delay: timedelta = DEFER_DELAY,
    ) -> None:
        """Bind the engine to ``sa_engine`` (PostgreSQL or SQLite).

        ``clock`` replaces the wall clock (it must return aware datetimes): tests use it
        to move time. ``backend`` replaces the built-in jobs-table queue: a
        :class:`QueueBackend`, or the name (``"jobs_table"``) or URL of an installed
        backend, built with ``backend_options`` (see :mod:`durable_sa.queue.backends`).
        ``max_payload_bytes`` bounds the JSON of a run's input, a step's result and a
        signal's data (compact UTF-8 bytes); larger ones are refused with
        :class:`~durable_sa.errors.PayloadTooLargeError`, a result by failing its step.
        ``defer_delay`` is how long a job whose workflow or pinned version this process
        does not define waits before it is offered again (:data:`DEFER_DELAY`, 5 s; a
        deploy takes longer than that): tests of a deploy in progress shorten it.

        ``sa_engine`` may be an ``AsyncEngine`` (asyncpg, psycopg async, aiosqlite; needs
        the ``asyncio`` extra): the ``_async`` calls then run on it. Workers, ``wait``,
        the CLI and the sync calls need a sync ``Engine``: ``sync_engine``, or by default
        one made from the async engine's URL with the sync driver of the same database
        (``postgresql+psycopg``, or the standard ``sqlite3``), credentials and query
        kept; it is :attr:`sa_engine`.

        Raises:
            BackendNotFound: no installed backend has that name or URL scheme.
            InvalidArgumentError: the backend refused ``backend_options``;
                ``max_payload_bytes`` is not a positive integer; ``defer_delay``
                is not a positive ``timedelta``; ``sync_engine``
                was given without an ``AsyncEngine``; the ``AsyncEngine`` is on neither
                PostgreSQL nor a SQLite file.

        """
        if not isinstance(defer_delay, timedelta) or defer_delay <= timedelta(0):
            msg = f"defer_delay must be a positive timedelta, not {defer_delay!r}"
            raise InvalidArgumentError(msg)
        if max_payload_bytes is not None and (
            isinstance(max_payload_bytes, bool)
            or not isinstance(max_payload_bytes, int)
            or max_payload_bytes < 1
        ):
            msg = f"max_payload_bytes must be a positive integer or None, not {max_payload_bytes!r}"
            raise InvalidArgumentError(msg)
        self.async_engine: AsyncEngine | None = as_async_engine(sa_engine)
        """The application's ``AsyncEngine``, if it gave one; ``None`` otherwise."""
        if self.async_engine is not None:
            configure_sqlite(self.async_engine.sync_engine)
            sa_engine = sync_engine or sync_engine_for(self.async_engine)
        elif sync_engine is not None:
            msg = "sync_engine goes with an AsyncEngine; this engine is sync already"
            raise InvalidArgumentError(msg)
        sa_engine = cast("Engine", sa_engine)
        configure_sqlite(sa_engine)
        self.sa_engine: Engine = sa_engine
        if isinstance(backend, str):
            backend = load_backend(
                backend,
                sa_engine,
                queue=queue,
                max_attempts=max_job_attempts,
                options=backend_options,
            )
        elif backend_options:
            msg = "backend_options go with a backend name or URL, not a backend object"
            raise InvalidArgumentError(msg)
        self.backend: QueueBackend = backend or JobsTableBackend(
            sa_engine, queue=queue, max_attempts=max_job_attempts
        )
        check_capabilities(self.backend)
        self.shell = Shell(
            sa_engine,
            backend=self.backend,
            clock=clock,
            lease=job_lease,
            max_payload_bytes=max_payload_bytes,
            defer_delay=defer_delay,
        )
        self.admin = Admin(self.shell)
        """Operator and driver verbs: dead letters, requeue, prune, workers, single jobs."""
        self._bridge = AsyncBridge(self.shell, self.async_engine)

    def __repr__(self) -> str:
        return f"<Durable {self.sa_engine.url!r} backend={self.backend.name}>"

    @property
    def now(self) -> datetime:
        """The engine's clock."""
        return self.shell.now()

    # ── schema ─────────────────────────────────────────────────────────────────

    def create_tables(self) -> None:
        """Create durable-sa's tables and indexes if missing (idempotent).

        On SQLite this also switches the database file to WAL, so readers never block
        the engine's writers. Applications with migrations include :data:`metadata` in
        their Alembic environment instead.
        """
        if self.sa_engine.dialect.name == "sqlite":
            with self.sa_engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        metadata.create_all(self.sa_engine, checkfirst=True)
        with self.sa_engine.begin() as conn:
            install_triggers(conn)

    # ── start / resume / cancel ────────────────────────────────────────────────

    def start(  # noqa: PLR0913 - the run's options, keyword-only
        self,
        name: str,
        input: Any = None,  # noqa: A002, ANN401 - the reference's name; any JSON mapping
        *,
        session: Session | None = None,
        idempotency_key: str | None = None,
        concurrency_key: str | None = None,
        priority: int = 0,
        debounce_key: str | None = None,
        debounce: timedelta | None = None,
    ) -> StartResult:
        """Start workflow ``name`` with ``input``: the run row and its first job, atomically.

        With ``idempotency_key``, a second start with the same key returns the first run
        (``created=False``) whatever its input; one run exists.

        A start never blocks: over the workflow's ``max_active`` (or, with
        ``concurrency_key``, its ``max_active_per_key``) the run is created ``pending``
        and begins when a place frees, lowest ``priority`` first, then in arrival order.
        ``priority`` orders the run's jobs among due jobs of its queue too (lower first).

        With ``debounce_key`` and ``debounce`` (a ``timedelta``), starts of that key
        within the window collapse into one ``pending`` run, which begins when
        ``debounce`` has passed since the last of them, with the latest input; each call
        returns that run's id (``created`` is True for the call that made it).

        Raises:
            DefinitionError: ``name`` is too long for its column, or holds NUL or a lone
                surrogate.
            WorkflowNotRegisteredError: no workflow ``name`` in this process.
            PayloadError: ``input`` is not a JSON-serializable mapping, does not
                structure as the workflow's ``input_type``, or ``idempotency_key`` is not
                a string of 1 to 255 characters, nor ``concurrency_key``, or
                ``priority`` is not a 32-bit integer, or ``debounce_key`` comes
                without a positive ``debounce`` (or with an ``idempotency_key``).
            PayloadTooLargeError: its JSON is over ``max_payload_bytes``.
            WrongSessionError: ``session`` is an ``AsyncSession`` (use the ``_async`` twin).

        """
        refuse_async_session(session, "start")
        if concurrency_key is not None:
            check_concurrency_key(concurrency_key)
        check_priority(priority)
        if isinstance(name, str):  # a name no column can hold: say so, not a driver error
            check_text(name, "workflow name", limit=NAME_LIMIT)
        workflow = registry.get(name)
        data = to_json_object(input, what=f"the input of workflow {name!r}")
        check_size(data, self.shell.max_payload_bytes, what=f"start({name!r})'s input")
        if workflow.input_type is not None:  # refused now, not in a worker later
            structure_as(data, workflow.input_type, what=f"the input of workflow {name!r}")

        def work(tx: Session) -> StartResult:
            now = self.shell.now()
            new = decide_start(
                workflow_name=workflow.name,
                workflow_version=workflow.version,
                total_steps=len(workflow.steps),
                input=data,
                now=now,
                idempotency_key=idempotency_key,
                on_finish=workflow.finish_hook is not None,
                concurrency_key=concurrency_key,
                priority=priority,
                limits=workflow.limits,
                debounce_key=debounce_key,
                debounce=debounce,
            )
            applied = self.shell.applier.apply_one(tx, PlanItem(plan_start(new)), now=now)
            if applied.run_id is None:  # pragma: no cover - a start always names its run
                msg = "starting a run returned no id"
                raise RuntimeError(msg)
            if not applied.created and debounce_key is not None:
                return StartResult(run_id=applied.run_id, status=RunStatus.PENDING, created=False)
            if not applied.created:
                return StartResult(
                    run_id=applied.run_id,
                    status=applied.status or RunStatus.RUNNING,
                    created=False,
                )
            if logger.isEnabledFor(logging.INFO):
                logger.info(
                    "run %s of %s started",
                    applied.run_id,
                    workflow.name,
                    extra={"action": "start", "run_id": applied.run_id, "workflow": workflow.name},
                )
            return StartResult(run_id=applied.run_id, status=applied.status or RunStatus.RUNNING)

        plain = not workflow.limits.any and priority == 0 and debounce_key is None
        probe = [PlanItem(plan_start(_PROBE_RUN))]
        alone = plain and self.shell.applier.one_statement(probe, self.sa_engine.dialect.name)
        return self.shell.transaction(work, session=session, autocommit=alone)

    def resume(
        self,
        run_id: int,
        signal: str,
        data: Any = None,  # noqa: ANN401 - any JSON value
        *,
        session: Session | None = None,
    ) -> ResumeResult:
        """Deliver ``signal`` with ``data`` to a suspended run.

        Accepted only when the run is suspended on exactly that signal (or, for an agent
        step, on that step's name); otherwise nothing changes, ``accepted`` is False and
        ``reason`` says why: ``"not_waiting"`` (running, or suspended on something else)
        or ``"terminal"``. Nothing is kept for later: :meth:`send` does that.

        Raises:
            RunNotFoundError: no run ``run_id``.
            PayloadError: ``data`` is not JSON-serializable.
            PayloadTooLargeError: its JSON is over ``max_payload_bytes``.
            WrongSessionError: ``session`` is an ``AsyncSession`` (use the ``_async`` twin).

        """
        refuse_async_session(session, "resume")
        run_id = checked_run_id(run_id)
        payload = to_json(data, what=f"the data of signal {signal!r}")
        check_size(payload, self.shell.max_payload_bytes, what=f"resume()'s data of {signal!r}")

        def work(tx: Session) -> ResumeResult:
            locked = lock_run(tx, run_id)
            if locked is None:
                raise RunNotFoundError(run_id)
            now = self.shell.now()
            transition = decide_resume(locked, signal=signal, data=payload, now=now)
            if transition is None:
                ended = signals_refused(locked) is not None
                return ResumeResult(
                    accepted=False,
                    status=locked.status,
                    reason=ResumeReason.TERMINAL if ended else ResumeReason.NOT_WAITING,
                )
            self.shell.applier.apply_one(tx, PlanItem(plan_transition(transition)), now=now)
            logger.info(
                "run %s resumed by %r",
                run_id,
                signal,
                extra={"action": "resume", "run_id": run_id},
            )
            return ResumeResult(accepted=True, status=transition.after.status)

        return self.shell.transaction(work, session=session)

    def send(
        self,
        run_id: int,
        signal: str,
        data: Any = None,  # noqa: ANN401 - any JSON value
        *,
        session: Session | None = None,
    ) -> SendResult:
        """Send ``signal`` with ``data`` to a run, durably: now, or kept for its next wait.

        If the run waits for ``signal`` now, it is delivered exactly as :meth:`resume`
        would (``delivered=True``). Otherwise (the run is running, sleeping, or suspended
        on another signal or a child) it is kept, and the run's next ``wait_for_signal``
        on ``signal`` takes it at once, without suspending: first sent, first taken, one
        per wait. With ``session`` it joins the caller's transaction, like :meth:`start`.

        Raises:
            RunNotFoundError: no run ``run_id``.
            RunTerminalError: the run has ended (completed, failed or canceled), or its
                steps have and only its ``on_finish`` hook is left to run.
            DefinitionError: ``signal`` is not a valid signal name.
            PayloadError: ``data`` is not JSON-serializable.
            PayloadTooLargeError: its JSON is over ``max_payload_bytes``.
            WrongSessionError: ``session`` is an ``AsyncSession`` (use :meth:`send_async`).

        """
        refuse_async_session(session, "send")
        run_id = checked_run_id(run_id)
        check_name(signal, "signal", limit=NAME_LIMIT)
        payload = to_json(data, what=f"the data of signal {signal!r}")
        check_size(payload, self.shell.max_payload_bytes, what=f"send()'s data of {signal!r}")

        def work(tx: Session) -> SendResult:
            locked = lock_run(tx, run_id)  # held to the commit: see store.signals
            if locked is None:
                raise RunNotFoundError(run_id)
            refused = signals_refused(locked)
            if refused is not None:  # no wait will ever take it
                raise RunTerminalError(run_id, refused)
            now = self.shell.now()
            transition = decide_resume(locked, signal=signal, data=payload, now=now)
            if transition is not None:
                self.shell.applier.apply_one(tx, PlanItem(plan_transition(transition)), now=now)
                status, delivered = transition.after.status, True
            else:
                buffer_signal(tx, run_id, signal, payload, now=now)
                status, delivered = locked.status, False
            logger.info(
                "run %s: signal %r %s",
                run_id,
                signal,
                "delivered" if delivered else "kept for its next wait",
                extra={"action": "send", "run_id": run_id},
            )
            return SendResult(run_id=run_id, signal=signal, delivered=delivered, status=status)

        return self.shell.transaction(work, session=session)

    def cancel(
        self, run_id: int, *, compensate: bool = False, session: Session | None = None
    ) -> CancelResult:
        """Cancel the run and all its descendants; their queued jobs are dropped.

        A canceled child that its parent waits for fails the parent's step, and the
        parent compensates.

        With ``compensate=True``, the run and each of its descendants first roll back
        their completed steps in reverse, as a failure would (the same compensation
        jobs and ``<step>#compensate`` rows, run by workers), and then end
        ``canceled``; a run that waited (a sleep, a signal, a child) stops waiting at
        once. Until its rollback is done a run shows ``compensating``. A run with an
        ``on_finish`` hook ends when its finish job has run the hook. A run that has
        ended (or whose final status only waits for its hook) is left as it is.

        Raises:
            RunNotFoundError: no run ``run_id``.
            WrongSessionError: ``session`` is an ``AsyncSession`` (use the ``_async`` twin).

        """
        refuse_async_session(session, "cancel")
        run_id = checked_run_id(run_id)

        def work(tx: Session) -> CancelResult:
            if load_run(tx, run_id) is None:
                raise RunNotFoundError(run_id)
            tree = lock_tree(tx, run_id)
            now = self.shell.now()
            canceled: list[int] = []
            for member in tree:
                transition = decide_cancel(member, compensate=compensate, now=now)
                if transition is not None:
                    plan = plan_transition(transition)
                    self.shell.applier.apply_one(tx, PlanItem(plan), now=now)
                    canceled.append(member.id)
            dead_letters.resolve_runs(tx, canceled, by=dead_letters.CANCEL, now=now)
            if canceled:
                logger.info(
                    "canceled runs %s",
                    canceled,
                    extra={"action": "cancel", "run_id": run_id},
                )
            return CancelResult(run_id=run_id, canceled=tuple(canceled))

        return self.shell.transaction(work, session=session)

    # ── schedules ──────────────────────────────────────────────────────────────

    def schedule(  # noqa: PLR0913 - the contract's options, keyword-only after cron
        self,
        schedule_name: str,
        workflow_name: str,
        cron: str,
        *,
        timezone: str = "UTC",
        input: Mapping[str, Any] | Callable[[datetime], Mapping[str, Any]] | None = None,  # noqa: A002
        overlap: str = "skip",
        catchup_window: timedelta | None = None,
    ) -> ScheduleInfo:
        """Create or update schedule ``schedule_name``: start ``workflow_name`` on ``cron``.

        ``cron`` has five fields (minute hour day month weekday) or six with seconds
        first, read on the wall clock of ``timezone`` (an IANA name): a tick in an hour
        that daylight saving skips fires once, when the clocks jump; a repeated hour
        fires once. ``input`` is a JSON mapping, or a callable ``fire_time -> mapping``
        (``fire_time`` is in UTC, not on ``timezone``'s wall clock) registered in this
        process under the schedule's name (only workers that registered it fire the
        schedule). ``overlap``: ``"skip"``, ``"allow"``,
        ``"buffer_one"`` or ``"cancel_previous"``. ``catchup_window``: after downtime,
        ticks at most this late are still started; by default none is (ticks up to
        10 seconds late count as on time). Updating a schedule keeps its next tick
        unless its cron or timezone changed. Workers fire it; see ``docs/queues.md``.

        Raises:
            InvalidArgumentError: a bad cron, timezone, overlap or window.
            DefinitionError: ``schedule_name`` is empty, holds ``#`` or is over 200
                characters (its runs' keys must fit their column).
            WorkflowNotRegisteredError: no workflow ``workflow_name`` in this process.
            PayloadError: ``input`` is not a JSON-serializable mapping.

        """
        check_name(schedule_name, "schedule name", limit=MAX_SCHEDULE_NAME)
        workflow = registry.get(workflow_name)
        parsed = Cron.parse(cron, timezone)
        policy = checked_overlap(overlap)
        window = checked_window(catchup_window)
        data = None
        if callable(input):
            maker = input
        else:
            maker = None
            data = to_json_object(input, what=f"the input of schedule {schedule_name!r}")
            check_size(
                data, self.shell.max_payload_bytes, what=f"schedule {schedule_name!r}'s input"
            )
            if workflow.input_type is not None:
                structure_as(
                    data, workflow.input_type, what=f"the input of schedule {schedule_name!r}"
                )
        saved = schedules.save(
            self.shell,
            name=schedule_name,
            workflow_name=workflow.name,
            cron=parsed,
            input=data,
            input_callable=maker is not None,
            overlap=policy,
            catchup_window=window,
        )
        if maker is not None:
            schedule_inputs.register(schedule_name, maker)
        else:
            schedule_inputs.unregister(schedule_name)
        return saved

    def unschedule(self, name: str) -> None:
        """Delete schedule ``name``; runs it started go on.

        Raises:
            ScheduleNotFoundError: no schedule ``name``.

        """
        schedules.remove(self.shell, name)

    def pause_schedule(self, name: str) -> ScheduleInfo:
        """Stop firing schedule ``name`` until :meth:`resume_schedule`.

        Raises:
            ScheduleNotFoundError: no schedule ``name``.

        """
        return schedules.set_paused(self.shell, name, paused=True)

    def resume_schedule(self, name: str) -> ScheduleInfo:
        """Fire schedule ``name`` again, from its first tick after now (none is caught up).

        Raises:
            ScheduleNotFoundError: no schedule ``name``.

        """
        return schedules.set_paused(self.shell, name, paused=False)

    def backfill(self, name: str, start: datetime, end: datetime) -> builtins.list[FiredTick]:
        """Start a run for every tick of schedule ``name`` in ``[start, end)``, now.

        Each run has its tick's idempotency key, so a tick that has a run already
        (``created=False``) is not started again; overlap and catch-up do not apply.

        Raises:
            ScheduleNotFoundError: no schedule ``name``.
            InvalidArgumentError: naive or reversed bounds, or over 10,000 ticks.

        """
        return schedules.backfill(self.shell, name, start, end, starter=self._start_in)

    def schedules(self) -> builtins.list[ScheduleInfo]:
        """Every schedule, by name, with its next tick, last run and whether it is paused."""
        return schedules.every(self.shell)

    def fire_schedules(self, *, now: datetime | None = None) -> builtins.list[FiredTick]:
        """Fire the due schedules of this process's workflows; the runs started.

        Workers call this on their own (no leader, no beat process); tests with a
        :class:`~durable_sa.testing.FakeClock` call it after moving the clock, and an
        application without workers may call it from its own timer. ``now`` fixes what
        is due (default: the engine's clock).
        """
        return schedules.fire_due(
            self.shell,
            workflows=registry.names(),
            starter=self._start_in,
            canceler=self._cancel_in,
            now=now,
        )

    def _start_in(
        self, session: Session, name: str, data: dict[str, Any], key: str
    ) -> tuple[int, bool]:
        """:meth:`start` in ``session``'s transaction: a schedule's one start path."""
        started = self.start(name, data, session=session, idempotency_key=key)
        return started.run_id, started.created

    def _cancel_in(self, session: Session, run_id: int) -> None:
        """:meth:`cancel` in ``session``'s transaction (``cancel_previous``)."""
        self.cancel(run_id, session=session)

    # ── inspection ─────────────────────────────────────────────────────────────

    def status(self, run_id: int) -> RunStatusSnapshot:
        """A snapshot of the run and its child runs.

        Raises:
            RunNotFoundError: no run ``run_id``.

        """
        query = self._status_query(run_id)
        with self.shell.reading() as session:
            return query(session)

    def _status_query(self, run_id: int) -> Callable[[Session], RunStatusSnapshot]:
        """What :meth:`status` reads, on any read session (sync, or an async one's)."""
        run_id = checked_run_id(run_id)

        def query(session: Session) -> RunStatusSnapshot:
            return run_status(
                session, run_id, now=self.shell.now(), live_run_ids=self.backend.live_run_ids
            )

        return query

    def list(  # noqa: PLR0913 - filters, keyword-only after the first two
        self,
        status: RunStatus | str | None = None,
        parent_run_id: int | None = None,
        *,
        workflow: str | None = None,
        top_level: bool = False,
        since: datetime | timedelta | None = None,
        limit: int | None = None,
    ) -> list[RunStatusSnapshot]:
        """Runs, most recent first, each with its child runs, filtered as asked.

        ``top_level`` keeps only runs that no other run started; ``since`` keeps runs
        created at or after an aware ``datetime``, or within a ``timedelta`` of now
        (``since=timedelta(hours=2)``). ``limit`` bounds the query; without it every run
        that matches is loaded.

        Raises:
            InvalidArgumentError: ``status`` is not a run status, ``since`` a naive
                datetime or a negative age, or ``limit`` not a whole number from 1.

        """
        query = self._list_query(
            status,
            parent_run_id,
            workflow=workflow,
            top_level=top_level,
            since=since,
            limit=limit,
        )
        with self.shell.reading() as session:
            return query(session)

    def _list_query(  # noqa: PLR0913 - list's filters
        self,
        status: RunStatus | str | None,
        parent_run_id: int | None,
        *,
        workflow: str | None,
        top_level: bool,
        since: datetime | timedelta | None,
        limit: int | None,
    ) -> Callable[[Session], builtins.list[RunStatusSnapshot]]:
        """What :meth:`list` reads, its filters checked, on any read session."""
        try:
            wanted = None if status is None else RunStatus(status)
        except ValueError:
            names = ", ".join(s.value for s in RunStatus)
            msg = f"unknown run status {status!r}; expected one of {names}"
            raise InvalidArgumentError(msg) from None
        now = self.shell.now()
        cutoff = list_cutoff(since, now)
        bound = checked_limit(limit)
        if parent_run_id is not None:
            try:
                checked_run_id(parent_run_id)
            except RunNotFoundError:
                return lambda _session: []  # an id out of the column's range: no children

        def query(session: Session) -> list[RunStatusSnapshot]:
            return list_runs(
                session,
                status=wanted,
                parent_run_id=parent_run_id,
                workflow=workflow,
                top_level=top_level,
                since=cutoff,
                limit=bound,
                now=now,
                live_run_ids=self.backend.live_run_ids,
            )

        return query

    # ── asyncio ────────────────────────────────────────────────────────────────
    # Each twin is the sync call, run by the bridge: in the caller's AsyncSession (its
    # transaction, which the caller commits), or on the engine (see async_bridge).

    async def start_async(  # noqa: PLR0913 - start's options, keyword-only
        self,
        name: str,
        input: Any = None,  # noqa: A002, ANN401 - start's own parameter
        *,
        session: AsyncSession | None = None,
        idempotency_key: str | None = None,
        concurrency_key: str | None = None,
        priority: int = 0,
        debounce_key: str | None = None,
        debounce: timedelta | None = None,
    ) -> StartResult:
        """:meth:`start` for asyncio code; ``session`` is an ``AsyncSession``.

        With ``session`` the run joins its transaction: the caller commits, and a
        rollback leaves no run and no job. Same results and errors as :meth:`start`.

        Raises:
            WrongSessionError: ``session`` is a sync ``Session`` (call :meth:`start`).

        """
        return await self._bridge.call(
            self.start,
            name,
            input,
            session=session,
            idempotency_key=idempotency_key,
            concurrency_key=concurrency_key,
            priority=priority,
            debounce_key=debounce_key,
            debounce=debounce,
        )

    async def resume_async(
        self,
        run_id: int,
        signal: str,
        data: Any = None,  # noqa: ANN401 - any JSON value
        *,
        session: AsyncSession | None = None,
    ) -> ResumeResult:
        """:meth:`resume` for asyncio code, in ``session``'s transaction if given.

        Raises:
            WrongSessionError: ``session`` is a sync ``Session`` (call :meth:`resume`).

        """
        return await self._bridge.call(self.resume, run_id, signal, data, session=session)

    async def send_async(
        self,
        run_id: int,
        signal: str,
        data: Any = None,  # noqa: ANN401 - any JSON value
        *,
        session: AsyncSession | None = None,
    ) -> SendResult:
        """:meth:`send` for asyncio code, in ``session``'s transaction if given.

        Raises:
            WrongSessionError: ``session`` is a sync ``Session`` (call :meth:`send`).

        """
        return await self._bridge.call(self.send, run_id, signal, data, session=session)

    async def cancel_async(
        self, run_id: int, *, compensate: bool = False, session: AsyncSession | None = None
    ) -> CancelResult:
        """:meth:`cancel` for asyncio code, in ``session``'s transaction if given.

        Raises:
            WrongSessionError: ``session`` is a sync ``Session`` (call :meth:`cancel`).

        """
        return await self._bridge.call(self.cancel, run_id, compensate=compensate, session=session)

    async def status_async(self, run_id: int) -> RunStatusSnapshot:
        """:meth:`status` for asyncio code; same snapshot, same errors."""
        return await self._bridge.read(self._status_query(run_id))

    async def list_async(  # noqa: PLR0913 - list's filters
        self,
        status: RunStatus | str | None = None,
        parent_run_id: int | None = None,
        *,
        workflow: str | None = None,
        top_level: bool = False,
        since: datetime | timedelta | None = None,
        limit: int | None = None,
    ) -> builtins.list[RunStatusSnapshot]:
        """:meth:`list` for asyncio code; same filters, same snapshots, same errors."""
        query = self._list_query(
            status,
            parent_run_id,
            workflow=workflow,
            top_level=top_level,
            since=since,
            limit=limit,
        )
        return await self._bridge.read(query)

    # ── shared rate limits and pause ───────────────────────────────────────────

    def set_rate_limit(self, name: str, *, limit: int, per: timedelta) -> RateLimit:
        """Create or change the shared rate limit ``name``: ``limit`` executions per ``per``.

        Steps declared with ``rate_limit=name`` (and parallel entries) then begin no more
        than ``limit`` times in any window of length ``per``, across every worker and
        process; one over it waits, without using an attempt or holding a worker slot.
        Stored in the database: running workers use a change from their next step on.

        Raises:
            InvalidArgumentError: an empty name, a limit below 1 or a ``per`` that is not
                a positive ``timedelta``.

        """
        _check_name_argument(name, "rate limit name")
        try:
            value = RateLimit(name, limit, per)
        except ValueError as exc:
            raise InvalidArgumentError(str(exc)) from exc
        now = self.shell.now()
        self.shell.transaction(lambda tx: controls.set_rate_limit(tx, value, now=now))
        return value

    def rate_limits(self) -> builtins.list[RateLimit]:
        """Every shared rate limit set, by name."""
        with self.shell.reading() as session:
            return controls.read_rate_limits(session)

    def remove_rate_limit(self, name: str) -> bool:
        """Delete the rate limit ``name``; whether it existed.

        Steps that name it then wait until it is set again (as for a limit never set).
        """
        return self.shell.transaction(lambda tx: controls.remove_rate_limit(tx, name))

    def pause(self, workflow_name: str, *, force: bool = False) -> bool:
        """Pause a workflow: no job of its runs is claimed until :meth:`unpause`.

        Steps already running finish; starts and signals are still accepted and wait.
        Stored in the database, so every worker sees it: a newly paused workflow returns
        after :data:`~durable_sa.store.controls.PAUSED_TTL` (one second), by when every
        process has seen it, so no step of it begins anywhere after ``pause`` returns.
        Returns whether the workflow was running (``False``: it was paused already).

        The name must be one this process defines, a live worker defines, a run has or
        a schedule starts (a typo would otherwise pause nothing, successfully);
        ``force=True`` pauses any name, e.g. a workflow only another service defines,
        before it has ever run.

        Raises:
            InvalidArgumentError: ``workflow_name`` is not a workflow name.
            UnknownWorkflowError: no such workflow is known, and not ``force``.

        """
        _check_name_argument(workflow_name, "workflow name")
        now = self.shell.now()

        def work(tx: Session) -> bool:
            if not force and not registry.has(workflow_name):
                live = {name for worker in live_workers(tx, now=now) for name in worker.workflows}
                if workflow_name not in live and not stored_workflow(tx, workflow_name):
                    stored = stored_workflow_names(tx)
                    raise UnknownWorkflowError(
                        workflow_name, sorted({*registry.names(), *live, *stored})
                    )
            return controls.pause(tx, workflow_name, now=now)

        paused = self.shell.transaction(work)
        self.shell.paused.forget()
        if paused:  # every process's cached read is then newer than the pause
            time.sleep(controls.PAUSED_TTL)
        return paused

    def unpause(self, workflow_name: str) -> bool:
        """Let a paused workflow's runs go on at once; whether it was paused.

        Jobs the pause gave back are due at once too (one scan of the queue's rows of
        the workflow: an operator's action, not a hot path).
        """
        _check_name_argument(workflow_name, "workflow name")
        now = self.shell.now()
        unpaused = self.shell.transaction(lambda tx: controls.unpause(tx, workflow_name, now=now))
        self.shell.paused.forget()
        return unpaused

    def paused_workflows(self) -> builtins.list[str]:
        """The names of the paused workflows, sorted."""
        with self.shell.reading() as session:
            return controls.paused_workflows(session)

    # ── recovery ───────────────────────────────────────────────────────────────

    def recover(self) -> int:
        """Re-enqueue runs that should progress but have no job (e.g. a dead-lettered one).

        Running runs get their current step (delayed to its wake time if sleeping),
        compensating runs their compensation cursor, runs waiting on a signal with a
        timeout their timer. Returns how many runs got a job.
        """
        return recover_runs(self.shell)

    # ── workers and waiting ────────────────────────────────────────────────────

    def worker(
        self,
        concurrency: int = 1,
        queues: Sequence[str] | None = None,
        **options: Any,  # noqa: ANN401 - forwarded to Worker: lease, heartbeat, ...
    ) -> Worker:
        """A worker for this engine; ``.run()`` works until stopped, ``.start()`` in the background.

        Options: ``lease``, ``heartbeat``, ``job_timeout``, ``grace_period`` (timedeltas),
        ``poll_interval`` (seconds) and ``name``; see :class:`durable_sa.worker.Worker`.
        """
        from durable_sa.worker import Worker  # noqa: PLC0415 - the worker imports the facade

        return Worker(self, concurrency=concurrency, queues=queues, **options)

    def relay(self, **options: Any) -> Relay:  # noqa: ANN401 - forwarded to Relay
        """A relay publishing this engine's outbox to its broker (relay backends only).

        ``.run()`` publishes until stopped, ``.start()`` in the background; workers of a
        relay backend also run one in a thread unless told not to (``relay=False``).
        Options: ``batch_size``, ``poll_interval`` (seconds), ``prune_interval``
        (timedelta) and ``name``; see :class:`durable_sa.outbox.Relay`.

        Raises:
            InvalidArgumentError: the backend has no outbox (the jobs table).

        """
        return Relay(self.backend, clock=self.shell.now, **options)  # type: ignore[arg-type]

    def wait(self, run_id: int, timeout: float | timedelta | None = None) -> RunStatusSnapshot:
        """Block until the run is completed, failed or canceled; its final snapshot.

        Woken by NOTIFY on PostgreSQL, polling on SQLite.

        Raises:
            RunNotFoundError: no run ``run_id``.
            WaitTimeoutError: the run did not end within ``timeout``.

        """
        wait_for_run(self.shell, checked_run_id(run_id), timeout)
        return self.status(run_id)

    async def wait_async(
        self,
        run_id: int,
        timeout: float | timedelta | None = None,  # noqa: ASYNC109 - a deadline, as documented
    ) -> RunStatusSnapshot:
        """:meth:`wait` for asyncio code: the event loop keeps running while it waits."""
        await wait_for_run_async(self.shell, checked_run_id(run_id), timeout)
        return await asyncio.to_thread(self.status, run_id)
