"""Running one job: what every consumer (worker, ``drain``, relay consumers) calls.

A job goes through the same three moves wherever it is run:

- **Phase A, no lock held.** Read the run (or take the snapshot the claim read with the
  job); a job that no longer matches its run is stale and only acknowledged. Otherwise
  run the user code (a step, or a step's compensators). The handler may take minutes; no
  row lock is held and no transaction is open.
- **Decide.** The pure core turns what happened into a transition and a write plan, on
  the snapshot read in phase A (:class:`Decision` keeps how to decide again).
- **Apply.** The one applier writes the plan with a compare-and-set on the run's
  revision, together with the job's acknowledgement. If the run moved meanwhile (a
  cancel, a signal, a duplicate delivery), nothing is written: the decision is made again
  on a fresh read, exactly as a locked decision would have seen it.

A worker groups the plans of different runs into one commit (:mod:`durable_sa.worker.
pipeline`); everyone else commits each plan alone with
:func:`~durable_sa.engine.decision.commit_alone`. Both use the same applier, so what
``drain`` and the testing toolkit exercise is what workers run.

This module takes a job through phase A, by kind (advance, compensate, signal timeout,
finish), and runs it to its commit alone. The rest of the way has a module each:

- :mod:`~durable_sa.engine.execution`: a step's user code, its context and its log line;
- :mod:`~durable_sa.engine.decision`: what phase A hands on, and committing it alone;
- :mod:`~durable_sa.engine.transactional`: a ``transactional=True`` step, whose handler
  runs inside the transaction that applies its plan, so its writes commit with the
  checkpoint;
- :mod:`~durable_sa.engine.finishing`: a transactional compensator and an ``on_finish``
  hook, whose writes commit with their journal row (a finish job is the run's last);
- :mod:`~durable_sa.engine.controls`: a job held back before its user code runs (a
  paused workflow, a step over its shared rate limit), deferred with no attempt used;
- :mod:`~durable_sa.engine.delivery`: the one delivery policy for every backend
  (dead-letter, defer, give back). A job that no longer matches its run is
  acknowledged and dropped here.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from durable_sa.core.begin import decide_begin, is_debouncing
from durable_sa.core.decide import (
    decide_compensation,
    decide_signal_timeout,
    is_current_advance,
    is_current_compensation,
    is_current_signal_timeout,
)
from durable_sa.core.finish import is_current_finish
from durable_sa.core.jobs import (
    AdvanceJob,
    BeginJob,
    CompensateJob,
    FinishJob,
    JobPayload,
    SignalTimeoutJob,
    decode_payload,
)
from durable_sa.core.outcomes import Complete
from durable_sa.core.steps import (
    NO_DEFAULT,
    LoopStep,
    ParallelStep,
    RouteStep,
    SignalStep,
    TaskStep,
)
from durable_sa.core.units import compensate_unit
from durable_sa.engine.controls import GrantReserve, held_by_pause, held_by_rate_limit
from durable_sa.engine.decision import Decision, Done, Open, Prepared, commit_alone
from durable_sa.engine.delivery import dead_letter, defer, job_failed
from durable_sa.engine.execution import (
    compensate_step,
    definition_for,
    execute_step,
    step_decision,
)
from durable_sa.engine.finishing import compensate_transactional, finish_run
from durable_sa.engine.transactional import TransactionalStep, advance_transactional
from durable_sa.errors import DefinitionChanged, PayloadError, WorkflowNotRegisteredError
from durable_sa.queue.protocol import Claim, ClaimedJob
from durable_sa.results import JobOutcome
from durable_sa.store.queries import load_journal, load_run
from durable_sa.telemetry.log_fields import job_fields, run_fields

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime, timedelta

    from durable_sa.core.codec import JSONValue
    from durable_sa.core.snapshot import JournalRecord, JournalWrite, RunSnapshot
    from durable_sa.core.steps import NoDefault
    from durable_sa.core.transition import Transition
    from durable_sa.engine.applier import Applier
    from durable_sa.engine.shell import Shell

logger = logging.getLogger(__name__)

_UNIT_STEPS: Final = (ParallelStep, RouteStep, LoopStep)
"""Step kinds that journal units inside the step, read back on a redelivery."""


# ── one claimed job ─────────────────────────────────────────────────────────────


def prepare(  # noqa: PLR0913 - the job, its run and how it was handed over
    shell: Shell,
    claimed: ClaimedJob,
    run: RunSnapshot | None = None,
    *,
    in_place: bool = False,
    applier: Applier | None = None,
    lease: timedelta | None = None,
    keep_open: bool = False,
    grants: GrantReserve | None = None,
) -> Prepared:
    """Phase A of a claimed job; never raises for a bad job or a failing database.

    ``run`` is the snapshot a claim read with the job (read here when ``None``);
    ``in_place`` says the job is the run's next step handed on by the commit that just
    made it, so no unit of it can be journaled yet. A transactional step commits alone,
    through ``applier``; with ``lease``, its run's next step is handed back to the
    applier's worker. ``grants``: the worker's rate-limit grants
    (:class:`~durable_sa.engine.controls.GrantReserve`).
    """
    if claimed.defect is not None:
        return Done(dead_letter(shell, claimed, claimed.defect, run=run))
    if claimed.attempts > claimed.max_attempts:
        error = (
            f"job {claimed.id} was claimed {claimed.attempts} times without finishing "
            f"(max {claimed.max_attempts}); its worker may have crashed on it each time"
        )
        return Done(dead_letter(shell, claimed, error, run=run))
    try:
        payload = decode_payload(claimed.kind, claimed.payload)
        if claimed.run_id is not None and payload.run_id != claimed.run_id:
            msg = f"job payload names run {payload.run_id} but the job row names {claimed.run_id}"
            raise PayloadError(msg)  # noqa: TRY301 - one handler for every malformed job
    except PayloadError as exc:
        return Done(dead_letter(shell, claimed, str(exc), run=run))
    try:
        return prepare_payload(
            shell,
            payload,
            claimed,
            run,
            in_place=in_place,
            applier=applier,
            lease=lease,
            keep_open=keep_open,
            grants=grants,
        )
    except (WorkflowNotRegisteredError, DefinitionChanged) as exc:
        return Done(defer(shell, claimed, str(exc), delay=shell.defer_delay, run=run))
    except Exception as exc:  # noqa: BLE001 - every unexpected error gives the job back
        return Done(job_failed(shell, claimed, exc, run=run))


def prepare_payload(  # noqa: PLR0913 - the job, its run and how it was handed over
    shell: Shell,
    payload: JobPayload,
    claimed: ClaimedJob | None = None,
    run: RunSnapshot | None = None,
    *,
    in_place: bool = False,
    applier: Applier | None = None,
    lease: timedelta | None = None,
    keep_open: bool = False,
    grants: GrantReserve | None = None,
) -> Prepared:
    """Phase A of ``payload``: run its user code; its :class:`Decision` (or :class:`Done`).

    With ``keep_open``, a transactional step comes back as an :class:`Open` transaction.

    Raises:
        WorkflowNotRegisteredError: the run's workflow is not defined here.
        DefinitionChanged: the run is pinned to another definition.

    """
    if run is None:
        with shell.reading() as session:
            run = load_run(session, payload.run_id)
    if claimed is not None and (held := held_by_pause(shell, claimed, run)):
        return Done(held)
    if isinstance(payload, AdvanceJob):
        return _advance(
            shell,
            payload,
            claimed,
            run,
            in_place=in_place,
            applier=applier,
            lease=lease,
            keep_open=keep_open,
            grants=grants,
        )
    if isinstance(payload, CompensateJob):
        return _compensate(shell, payload, claimed, run, applier=applier)
    if isinstance(payload, FinishJob):
        return _finish(shell, payload, claimed, run, applier=applier)
    if isinstance(payload, BeginJob):
        return _begin(payload, claimed, run)
    return _signal_timeout(payload, claimed, run)


def _finish(
    shell: Shell,
    job: FinishJob,
    claimed: ClaimedJob | None,
    run: RunSnapshot | None,
    *,
    applier: Applier | None,
) -> Prepared:
    """A finish job: the run's ``on_finish`` hook and final status (or stale)."""
    if run is None or not is_current_finish(run, job):
        return _stale(job, claimed, run)
    return finish_run(shell, job, claimed, applier=applier)


def run_job(
    shell: Shell,
    claimed: ClaimedJob,
    *,
    applier: Applier | None = None,
    lease: timedelta | None = None,
) -> JobOutcome:
    """Run a claimed job to its commit, alone; never raises for a bad job or database.

    With ``lease`` and an ``applier`` of a consumer that runs jobs in place, each next
    step of the run that the commit hands to that consumer runs here too, in turn,
    until the run stops (waits, ends, or its next step is not due now). The first
    job's outcome is returned.
    """
    done = _run_one(shell, Claim(job=claimed), in_place=False, applier=applier, lease=lease)
    follow = done.follow
    while follow is not None:
        follow = _run_one(shell, follow, in_place=True, applier=applier, lease=lease).follow
    return done.outcome


def _run_one(
    shell: Shell,
    claim: Claim,
    *,
    in_place: bool,
    applier: Applier | None,
    lease: timedelta | None,
) -> Done:
    claimed = claim.job
    prepared = prepare(shell, claimed, claim.run, in_place=in_place, applier=applier, lease=lease)
    if isinstance(prepared, Done):
        return prepared
    try:
        if isinstance(prepared, Open):  # pragma: no cover - only asked for with keep_open
            return prepared.commit()
        return commit_alone(shell, prepared, applier=applier, lease=lease)
    except Exception as exc:  # noqa: BLE001 - every unexpected error gives the job back
        return Done(job_failed(shell, claimed, exc, run=claim.run))


def run_payload(shell: Shell, payload: JobPayload, claimed: ClaimedJob | None = None) -> JobOutcome:
    """Run ``payload`` to its commit, alone (a duplicate delivery, a direct call).

    Raises:
        WorkflowNotRegisteredError: the run's workflow is not defined here.
        DefinitionChanged: the run is pinned to another definition.

    """
    prepared = prepare_payload(shell, payload, claimed)
    if isinstance(prepared, Done):
        return prepared.outcome
    if isinstance(prepared, Open):  # pragma: no cover - only asked for with keep_open
        return prepared.commit().outcome
    return commit_alone(shell, prepared).outcome


# ── advance ─────────────────────────────────────────────────────────────────────


def _advance(  # noqa: PLR0913 - the job, its run and how it was handed over
    shell: Shell,
    job: AdvanceJob,
    claimed: ClaimedJob | None,
    run: RunSnapshot | None,
    *,
    in_place: bool,
    applier: Applier | None,
    lease: timedelta | None,
    keep_open: bool,
    grants: GrantReserve | None = None,
) -> Prepared:
    """Run one top-level step of a run (the ``advance`` job)."""
    if run is None or not is_current_advance(run, job):
        return _stale(job, claimed, run)
    if run.current_step >= run.total_steps:
        return Decision(
            payload=job, job=claimed, run=run, decide=step_decision(shell, job, Complete())
        )
    step = definition_for(run).steps[run.current_step]
    journal: Mapping[str, JournalRecord] = {}
    if isinstance(step, _UNIT_STEPS) and not (in_place and job.attempt == 1):
        with shell.reading() as session:
            journal = load_journal(session, run.id)
    if claimed is not None and (
        held := held_by_rate_limit(shell, claimed, run, step, journal, grants=grants)
    ):
        return Done(held)
    if isinstance(step, TaskStep) and step.transactional:
        transactional = TransactionalStep(
            shell=shell,
            job=job,
            claimed=claimed,
            step=step,
            applier=applier or shell.applier,
            lease=lease,
        )
        return advance_transactional(transactional, run, keep_open=keep_open)
    outcome = execute_step(
        run,
        step,
        job.attempt,
        journal,
        stored=shell.stored_form,
        max_payload_bytes=shell.max_payload_bytes,
    )
    return Decision(payload=job, job=claimed, run=run, decide=step_decision(shell, job, outcome))


# ── compensate ──────────────────────────────────────────────────────────────────


def _compensate(
    shell: Shell,
    job: CompensateJob,
    claimed: ClaimedJob | None,
    run: RunSnapshot | None,
    *,
    applier: Applier | None = None,
) -> Prepared:
    """Undo one step of a compensating run and move the cursor down (or end the run)."""
    if run is None or not is_current_compensation(run, job):
        return _stale(job, claimed, run)
    workflow = definition_for(run)
    step = workflow.steps[job.index]
    if isinstance(step, TaskStep) and step.transactional and step.compensate is not None:
        return compensate_transactional(shell, job, claimed, step, applier=applier)
    with shell.reading() as session:
        journal = load_journal(session, run.id)
    writes: tuple[JournalWrite, ...] = ()
    if compensate_unit(step.name) not in journal:
        record = compensate_step(run, step, journal)
        writes = (record,)
        if record.error:
            logger.warning(
                "run %s: compensating %r failed: %s",
                run.id,
                step.name,
                record.error,
                extra={**run_fields(run, step.name, 1), "action": "compensate_failed"},
            )

    def decide(current: RunSnapshot | None, now: datetime) -> Transition | None:
        if current is None or not is_current_compensation(current, job):
            return None
        return decide_compensation(current, index=job.index, journal=writes, now=now)

    return Decision(payload=job, job=claimed, run=run, decide=decide)


# ── signal timeout ──────────────────────────────────────────────────────────────


def _signal_timeout(
    job: SignalTimeoutJob, claimed: ClaimedJob | None, run: RunSnapshot | None
) -> Prepared:
    """End a wait whose signal did not arrive before its deadline.

    The step fails, or, when its definition gives a ``default``, completes with it.

    Raises:
        WorkflowNotRegisteredError: a current timeout's workflow is not defined here.
        DefinitionChanged: the run is pinned to another definition.

    """
    default: JSONValue | NoDefault = NO_DEFAULT
    if run is not None and is_current_signal_timeout(run, job):
        step = definition_for(run).steps[job.step_index]
        if isinstance(step, SignalStep):
            default = step.default

    def decide(current: RunSnapshot | None, now: datetime) -> Transition | None:
        transition = (
            None
            if current is None
            else decide_signal_timeout(current, job, now=now, default=default)
        )
        if transition is not None:
            logger.info(
                "run %s: %s",
                job.run_id,
                transition.after.error
                if default is NO_DEFAULT
                else f"signal {job.signal!r} timed out; the step completes with its default",
                extra=job_fields(
                    job.run_id,
                    job.kind,
                    {"step_index": job.step_index},
                    current,
                    action="signal_timeout",
                ),
            )
        return transition

    return Decision(payload=job, job=claimed, run=run, decide=decide)


def _begin(job: BeginJob, claimed: ClaimedJob | None, run: RunSnapshot | None) -> Prepared:
    """A debounced run's window ended: begin it, admit it, or look again later."""
    if run is None or not is_debouncing(run):
        return _stale(job, claimed, run)

    def decide(current: RunSnapshot | None, now: datetime) -> Transition | None:
        return None if current is None else decide_begin(current, job, now=now)

    return Decision(payload=job, job=claimed, run=run, decide=decide)


def _stale(job: JobPayload, claimed: ClaimedJob | None, run: RunSnapshot | None) -> Prepared:
    """A job that no longer matches its run: only acknowledged (the decision is ``None``)."""
    logger.debug(
        "stale %s job for run %s ignored",
        job.kind,
        job.run_id,
        extra=job_fields(
            job.run_id,
            job.kind,
            None,
            run,
            job_id=None if claimed is None else claimed.id,
            action="stale",
        ),
    )
    if claimed is None:
        return Done(JobOutcome.STALE)
    return Decision(payload=job, job=claimed, run=run, decide=lambda _run, _now: None)
