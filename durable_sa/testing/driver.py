"""A deterministic, in-process driver that plays fault schedules against real runs.

Rules:
- It runs on a real database through a :class:`Durable` engine whose clock is a
  :class:`FakeClock`: time moves only when a schedule (or :meth:`Driver.settle`) moves it.
- Jobs run one at a time in the calling thread, oldest first, except the second copy
  of a concurrent duplicate, which runs in a thread beside the first.
- A simulated crash raises inside the job's transaction just before it commits, so the
  database rolls everything back exactly as if the process had died there.
- Every event leaves one line in :attr:`Driver.trace`, which is what a person reads when
  a property fails, and one :class:`Played` in :attr:`Driver.played` (settling included),
  which a schedule can play again.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import attrs
from sqlalchemy import select

from durable_sa.core.codec import JSONValue
from durable_sa.core.jobs import (
    AdvanceJob,
    BeginJob,
    CompensateJob,
    FinishJob,
    JobPayload,
    JobSpec,
    decode_payload,
)
from durable_sa.core.registry import registry
from durable_sa.core.status import RunStatus
from durable_sa.engine import runner
from durable_sa.errors import DurableError, PayloadError
from durable_sa.store.models import runs_table
from durable_sa.store.queries import load_run
from durable_sa.testing.clock import FakeClock
from durable_sa.testing.faults import (
    ClockJump,
    ConcurrentDuplicate,
    CrashAfterCommit,
    CrashAfterPhaseA,
    Deliver,
    DuplicateDelivery,
    Event,
    Signal,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from durable_sa.facade import Durable
    from durable_sa.queue.protocol import ClaimedJob

_WORKER = "durable-sa-driver"


class SimulatedCrash(Exception):  # noqa: N818 - it is not an error: it is the point
    """Raised inside a job's transaction to roll it back as a dying process would."""


@attrs.frozen(kw_only=True)
class Played:
    """One event as the driver played it; ``undo`` when it hit a compensation job.

    Replaying the events of :attr:`Driver.played` in order (``Driver.play``) takes a run
    along the same path again, which is how the exhaustive checker reaches the n-th job.
    """

    event: Event
    undo: bool = False


@attrs.frozen(kw_only=True)
class Accepted:
    """A resume the engine accepted: which run, which step waited, what was delivered."""

    run_id: int
    workflow: str
    step: str
    signal: str
    data: JSONValue


class Driver:
    """Plays events against an engine whose clock is a :class:`FakeClock`."""

    def __init__(self, engine: Durable) -> None:
        """Drive ``engine``; its clock must be a :class:`FakeClock`."""
        clock = engine.shell.clock
        if not isinstance(clock, FakeClock):
            msg = "the driver needs an engine built with clock=FakeClock()"
            raise DurableError(msg)
        self.engine = engine
        self.clock: FakeClock = clock
        self.trace: list[str] = []
        self.accepted: list[Accepted] = []
        self.played: list[Played] = []
        self._labels: dict[int, int] = {}  # job id -> the number people read

    # ── one event ──────────────────────────────────────────────────────────────

    def play(self, schedule: Sequence[Event], run_id: int) -> None:
        """Play ``schedule`` against run ``run_id`` (job faults hit the next due job)."""
        for event in schedule:
            self.apply(event, run_id)

    def apply(self, event: Event, run_id: int) -> None:
        """Play one event; a job fault with no due job does nothing (and says so)."""
        if isinstance(event, ClockJump):
            self.clock.advance(event.seconds)
            self.trace.append(event.describe())
            self.played.append(Played(event=event))
            return
        if isinstance(event, Signal):
            self._signal(run_id, event.name, event.data, scheduled=True)
            self.played.append(Played(event=event))
            return
        job = self._claim()
        if job is None:
            self.trace.append(f"(no job was due, so nothing was {event.describe()})")
            return
        label = self._label(job)
        self.played.append(Played(event=event, undo=job.kind == CompensateJob.kind))
        self._run(job, event)
        self.trace.append(f"{label}: {event.describe()}")

    def run_due(self, *, limit: int = 10_000) -> int:
        """Deliver every due job normally; how many ran."""
        done = 0
        while done < limit:
            job = self._claim()
            if job is None:
                return done
            self.played.append(Played(event=Deliver(), undo=job.kind == CompensateJob.kind))
            self.engine.admin.run_job(job)
            done += 1
        return done

    # ── driving a run to its end ───────────────────────────────────────────────

    def settle(
        self,
        run_id: int,
        signal_data: Callable[[int, str, str], tuple[bool, JSONValue]],
        *,
        max_rounds: int = 1_000,
    ) -> None:
        """Run the run tree to its end without faults.

        When nothing is due, a waiting run gets its signal if ``signal_data(run_id,
        step, signal)`` says so (``(True, data)``); otherwise time jumps to the next due
        job (a sleep, a backoff, a signal's deadline).
        """
        for _ in range(max_rounds):
            ran = self.run_due()
            tree = self.tree(run_id)
            if all(status.is_terminal for status in tree.values()):
                return
            if ran or self._deliver_awaited(tree, signal_data):
                continue
            now = self.clock()
            due = self.engine.backend.next_due(now=now)
            if due is None:
                return  # stuck: the caller's invariants say why
            if due > now:
                self.clock.set(due)
                self.played.append(Played(event=ClockJump((due - now).total_seconds())))

    def _deliver_awaited(
        self,
        tree: Mapping[int, RunStatus],
        signal_data: Callable[[int, str, str], tuple[bool, JSONValue]],
    ) -> bool:
        delivered = False
        with self.engine.shell.reading() as session:
            waiting = [
                load_run(session, rid) for rid, s in tree.items() if s is RunStatus.SUSPENDED
            ]
        for run in waiting:
            wait = None if run is None else run.waiting_for
            signal = None if run is None else run.resume_signal
            if run is None or wait is None or signal is None:
                continue
            send, data = signal_data(run.id, wait.step, signal)
            if send and self._signal(run.id, signal, data, scheduled=False):
                self.played.append(Played(event=Signal(signal, data)))
                delivered = True
        return delivered

    def tree(self, run_id: int) -> dict[int, RunStatus]:
        """Status of the run and every descendant."""
        statuses: dict[int, RunStatus] = {}
        frontier = [run_id]
        with self.engine.shell.reading() as session:
            while frontier:
                rows = session.execute(
                    select(runs_table.c.id, runs_table.c.status).where(
                        runs_table.c.id.in_(frontier)
                    )
                ).all()
                statuses.update({int(r.id): RunStatus(r.status) for r in rows})
                frontier = [
                    int(r)
                    for r in session.execute(
                        select(runs_table.c.id).where(runs_table.c.parent_run_id.in_(frontier))
                    ).scalars()
                ]
        return statuses

    # ── internals ──────────────────────────────────────────────────────────────

    def _claim(self) -> ClaimedJob | None:
        return self.engine.admin.claim(now=self.clock(), worker=_WORKER, fifo=True)

    def _signal(self, run_id: int, name: str, data: JSONValue, *, scheduled: bool) -> bool:
        targets = [rid for rid, s in self.tree(run_id).items() if s is RunStatus.SUSPENDED]
        accepted_by: int | None = None
        for target in [run_id, *[t for t in targets if t != run_id]]:
            with self.engine.shell.reading() as session:
                before = load_run(session, target)
            if before is None or before.resume_signal != name:
                continue
            if self.engine.resume(target, name, data).accepted:
                wait = before.waiting_for
                self.accepted.append(
                    Accepted(
                        run_id=target,
                        workflow=before.workflow_name,
                        step=wait.step if wait is not None else name,
                        signal=name,
                        data=data,
                    )
                )
                accepted_by = target
                break
        if scheduled:
            verdict = "accepted" if accepted_by is not None else "refused (nobody waited for it)"
            where = f" by run {accepted_by}" if accepted_by not in (None, run_id) else ""
            self.trace.append(f"signal {name!r} was sent: {verdict}{where}")
        return accepted_by is not None

    def _run(self, job: ClaimedJob, event: Event) -> None:
        if isinstance(event, Deliver):
            self.engine.admin.run_job(job)
            return
        try:
            payload = decode_payload(job.kind, job.payload)
        except PayloadError:
            self.engine.admin.run_job(job)  # a malformed job is dead-lettered either way
            return
        shell = self.engine.shell
        if isinstance(event, CrashAfterPhaseA):

            def crash() -> None:
                raise SimulatedCrash

            shell.crash_before_commit = crash
            try:
                runner.run_payload(shell, payload, job)
            except SimulatedCrash:
                pass
            finally:
                shell.crash_before_commit = None
            self.engine.backend.release_claims([job.id], worker=_WORKER)
        elif isinstance(event, CrashAfterCommit):
            self.engine.admin.run_job(job)
            self._redeliver(job, payload)
        elif isinstance(event, DuplicateDelivery):
            self.engine.admin.run_job(job)
            runner.run_payload(shell, payload)
        elif isinstance(event, ConcurrentDuplicate):
            self._concurrently(job, payload)

    def _concurrently(self, job: ClaimedJob, payload: JobPayload) -> None:
        gate = threading.Barrier(2)
        errors: list[BaseException] = []

        def first() -> None:
            try:
                gate.wait(timeout=10)
                self.engine.admin.run_job(job)
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)

        def second() -> None:
            try:
                gate.wait(timeout=10)
                runner.run_payload(self.engine.shell, payload)
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)

        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        if errors:
            raise errors[0]

    def _redeliver(self, job: ClaimedJob, payload: JobPayload) -> None:
        with self.engine.shell.reading() as session:
            run = load_run(session, payload.run_id)
        spec = JobSpec(
            payload=payload,
            available_at=self.clock(),
            workflow=run.workflow_name if run else "",
            version=run.workflow_version if run else None,
        )
        self.engine.shell.transaction(lambda tx: self.engine.backend.enqueue(tx, [spec]))
        del job

    def _label(self, job: ClaimedJob) -> str:
        number = self._labels.setdefault(job.id, len(self._labels) + 1)
        try:
            payload = decode_payload(job.kind, job.payload)
        except PayloadError:
            return f"job {number} ({job.kind}, malformed)"
        with self.engine.shell.reading() as session:
            run = load_run(session, payload.run_id)
        step = "?"
        index = getattr(payload, "step_index", getattr(payload, "index", None))
        if run is not None and index is not None and registry.has(run.workflow_name):
            steps = registry.get(run.workflow_name).steps
            if 0 <= index < len(steps):
                step = steps[index].name
            elif index >= len(steps):
                step = "(end)"
        who = f"run {payload.run_id}"
        if isinstance(payload, AdvanceJob):
            return f"job {number} (run step {step!r} of {who}, attempt {payload.attempt})"
        if isinstance(payload, CompensateJob):
            return f"job {number} (undo step {step!r} of {who})"
        if isinstance(payload, FinishJob):
            return f"job {number} (finish {who}: on_finish hook, attempt {payload.attempt})"
        if isinstance(payload, BeginJob):
            return f"job {number} (begin debounced {who})"
        return f"job {number} (signal timeout of step {step!r} of {who})"
