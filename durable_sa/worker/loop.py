"""The worker: N slots that claim and run jobs, one heartbeat, one listener.

Rules:
- Slots claim due jobs (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so workers never wait
  on each other; a blocking read on a broker) and run them; a job's outcome and its
  acknowledgement commit together. Whatever the backend, the slots work through the
  pipeline (:mod:`durable_sa.worker.pipeline`): runs in hand, continued in place,
  commits grouped, every outcome written by the one applier.
- Only jobs of workflows this process defines, at the version it defines, are claimed:
  a job pinned to another version waits for a worker that has it.
- A claim is a lease. The heartbeat renews the leases of running jobs; a job running
  past ``job_timeout`` is abandoned (its lease is left to expire, so another worker
  retries it). A worker that dies stops renewing and its jobs are taken over.
- Idle slots sleep until the next job is due, a NOTIFY arrives (PostgreSQL), or the
  poll interval passes, whichever comes first; no busy polling.
- ``stop()`` stops claiming at once, lets running steps finish within the grace period,
  gives back claims that did not finish, and removes the worker's heartbeat row.
- Database errors (a restart, a dropped connection) are logged and retried with a
  growing pause; the worker never dies of them.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, cast

import attrs

from durable_sa.core.registry import registry
from durable_sa.errors import DatabaseNotMigratedError, InvalidArgumentError
from durable_sa.outbox.relay import Relay
from durable_sa.results import JobOutcome
from durable_sa.runtime import presence
from durable_sa.runtime.listen import Listener
from durable_sa.runtime.service import ErrorPause, Service
from durable_sa.store import slot_function
from durable_sa.store.notify import JOBS_CHANNEL
from durable_sa.telemetry.log_fields import job_fields
from durable_sa.worker.firing import FiresSchedules, ScheduleThread
from durable_sa.worker.pipeline import Pipeline
from durable_sa.worker.stats import WorkerStats

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy import Connection

    from durable_sa.engine.shell import HasShell
    from durable_sa.outbox.backend import OutboxBackend
    from durable_sa.worker.hand import Work

from durable_sa.queue.protocol import ClaimedJob  # an attrs field type: needed at run time

logger = logging.getLogger(__name__)


@attrs.define
class _InFlight:
    job: ClaimedJob
    started: float
    slot: int
    abandoned: bool = False


class Worker(Service):
    """Runs an engine's jobs until stopped; see the module docstring for the rules.

    ``run()`` works in the calling thread, ``start()`` in a background thread (returning
    once slots claim), ``stop()`` stops claiming while running steps finish within the
    grace period (:class:`~durable_sa.runtime.service.Service`).
    """

    def __init__(  # noqa: PLR0913 - worker tuning, all keyword-only
        self,
        engine: HasShell,
        *,
        concurrency: int = 1,
        queues: Sequence[str] | None = None,
        lease: timedelta = timedelta(seconds=30),
        heartbeat: timedelta = timedelta(seconds=5),
        job_timeout: timedelta = timedelta(minutes=10),
        grace_period: timedelta = timedelta(seconds=30),
        poll_interval: float | None = None,
        name: str | None = None,
        relay: bool | None = None,
        prefetch: int | None = None,
        commit_timeout: timedelta | None = timedelta(seconds=10),
        startup_timeout: timedelta = timedelta(minutes=1),
        schedules: bool = True,
    ) -> None:
        """Prepare a worker; nothing runs until :meth:`run` or :meth:`start`.

        ``relay``: run a relay thread publishing the outbox (relay backends only). The
        default runs one when the backend has an outbox; ``False`` leaves publishing to
        separate ``durable-sa relay`` processes.

        ``prefetch``: how many jobs the worker holds at most, running or ready (the
        jobs table; default eight per slot, at least 16, at most 64). More lets one
        commit carry more runs; ready work never waits long behind busy slots either
        way (it is given back to the queue). ``commit_timeout``: how long a commit may
        block (a row lock held by an application, a half-open connection) before the
        worker gives up what it holds to other workers. ``startup_timeout``: how long
        the worker keeps trying to reach its database when it starts (it then raises
        :class:`~durable_sa.errors.DatabaseUnreachableError`). ``schedules``: fire due
        schedules (``engine.schedule``) in a thread of this worker; every worker does by
        default, and exactly one fires each tick (:mod:`durable_sa.worker.firing`).

        Raises:
            InvalidArgumentError: a bad setting, or ``relay=True`` without an outbox.

        """
        if concurrency < 1:
            msg = f"concurrency must be at least 1, not {concurrency}"
            raise InvalidArgumentError(msg)
        if prefetch is not None and prefetch < 1:
            msg = f"prefetch must be at least 1, not {prefetch}"
            raise InvalidArgumentError(msg)
        if commit_timeout is not None and commit_timeout <= timedelta(0):
            msg = f"commit_timeout must be a positive duration, not {commit_timeout}"
            raise InvalidArgumentError(msg)
        if heartbeat * 2 > lease:
            msg = f"the lease ({lease}) must be at least twice the heartbeat ({heartbeat})"
            raise InvalidArgumentError(msg)
        self.engine = engine
        self.shell = shell = engine.shell
        self.concurrency = concurrency
        self.queues = list(queues) if queues else None
        self.lease = lease
        self.heartbeat = heartbeat
        self.job_timeout = job_timeout
        self.grace_period = grace_period
        self.startup_timeout = startup_timeout
        sqlite = shell.dialect == "sqlite"
        self.poll_interval = (
            poll_interval if poll_interval is not None else (0.25 if sqlite else 2.0)
        )
        self.id = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stats = WorkerStats()
        super().__init__(f"durable-sa-{self.id}")
        self._lock = threading.Lock()
        self._in_flight: dict[int, _InFlight] = {}  # by claim token: a job may come back
        self._tokens = itertools.count()
        self._threads: list[threading.Thread] = []
        self._retiring: set[int] = set()  # slots whose abandoned job got a replacement
        # A backend whose own workers consume it (Celery) leaves only the relay to run.
        self._consumes = shell.backend.capabilities.consumed_by_workers
        self._pipeline = (
            Pipeline(
                shell,
                shell.backend,
                worker=self.id,
                lease=lease,
                queues=self.queues,
                workflows=lambda: self.workflows,
                concurrency=concurrency,
                wake=self.wake,
                on_outcome=self.stats.count,
                on_claimed=self.stats.count_claimed,
                prefetch=prefetch,
                commit_timeout=commit_timeout,
            )
            if self._consumes
            else None
        )
        self._schedules = (
            ScheduleThread(
                engine,
                shell,
                interval=self.poll_interval,
                stopping=self._stopping,
                on_fired=self.wake,
                worker=self.id,
            )
            if schedules and isinstance(engine, FiresSchedules)
            else None
        )
        self._listener = Listener(
            shell.sa_engine, [JOBS_CHANNEL], self._on_notify, on_reconnect=self.wake
        )
        backend = shell.backend
        has_outbox = backend.capabilities.outbox
        if relay and not has_outbox:
            msg = f"relay=True needs a relay backend; {backend.name!r} has no outbox"
            raise InvalidArgumentError(msg)
        self._relay: Relay | None = (
            Relay(cast("OutboxBackend", backend), clock=shell.now, name=f"relay:{self.id}")
            if has_outbox and relay is not False
            else None
        )

    def __repr__(self) -> str:
        return f"<Worker {self.id} concurrency={self.concurrency}>"

    @property
    def workflows(self) -> dict[str, str]:
        """The workflow versions this worker can run: name → definition version."""
        return {name: registry.get(name).version for name in registry.names()}

    @property
    def in_flight(self) -> int:
        """Jobs running now."""
        with self._lock:
            return len(self._in_flight)

    # ── the main thread of the worker ──────────────────────────────────────────

    def _serve(self) -> None:
        started = time.monotonic()
        if not self._reach(self.shell.sa_engine, self.startup_timeout, f"worker {self.id}"):
            return  # stopped before the database came
        with self.shell.reading() as session:  # no tables: fail now, not beat forever
            presence.live_workers(session, now=self.shell.now())
            self._check_migrated(session.connection())
        self._announce()
        self.shell.backend.add_wake_callback(self.wake)
        self._listener.start()
        if self._relay is not None:
            self._relay.start()
        if self._pipeline is not None:
            self._pipeline.start()
        for _ in range(self.concurrency if self._pipeline is not None else 0):
            self._add_slot()
        if self._schedules is not None:
            self._schedules.start()
        self._ready()
        try:
            while not self._stopping.wait(self.heartbeat.total_seconds()):
                self._beat()
        finally:
            self._shut_down()
            logger.info(
                "worker %s stopped after %.1f s: %s",
                self.id,
                time.monotonic() - started,
                attrs.asdict(self.stats),
                extra={"action": "worker_stopped", "worker": self.id},
            )

    def _check_migrated(self, connection: Connection) -> None:
        """Refuse to start when the database lacks what this worker's workflows need.

        Workflows with limits need the give-back function on PostgreSQL; without it, every
        group that ends one of their runs would fail after its steps ran.

        Raises:
            DatabaseNotMigratedError: the function is missing (the message says what to do).

        """
        if connection.dialect.name != "postgresql":
            return
        limited = sorted(name for name in self.workflows if registry.get(name).limits)
        if limited and not slot_function.installed(connection):
            msg = f"{slot_function.MISSING} (workflows with limits: {', '.join(limited)})"
            raise DatabaseNotMigratedError(msg)

    def _announce(self) -> None:
        versions = ", ".join(f"{n}@{v}" for n, v in sorted(self.workflows.items())) or "none"
        logger.info(
            "worker %s started: concurrency %d, queues %s, workflows %s",
            self.id,
            self.concurrency,
            ", ".join(self.queues) if self.queues else "all",
            versions,
            extra={"action": "worker_started", "worker": self.id},
        )
        try:
            with self.shell.sessions.begin() as session:
                presence.sweep(session, now=self.shell.now())
        except Exception:
            logger.warning("could not sweep dead workers", exc_info=True)
        self._beat()

    def _shut_down(self) -> None:
        self.wake()
        deadline = time.monotonic() + self.grace_period.total_seconds()
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if self._schedules is not None:
            self._schedules.join(timeout=max(0.0, deadline - time.monotonic()))
        self._listener.stop()
        if self._pipeline is not None:
            self._pipeline.close()
        self.shell.backend.remove_wake_callback(self.wake)
        with self._lock:
            unfinished = [flight.job.id for flight in self._in_flight.values()]
        try:
            if unfinished:
                released = self.shell.backend.release_claims(unfinished, worker=self.id)
                logger.warning(
                    "grace period over: gave back %d unfinished job(s)",
                    released,
                    extra={"action": "shutdown", "worker": self.id},
                )
            with self.shell.sessions.begin() as session:
                presence.leave(session, self.id)
        except Exception:
            logger.warning("could not clean up after stopping", exc_info=True)
        if self._relay is not None:  # last: the final steps' next jobs get published
            self._relay.stop(wait=True)

    # ── heartbeat: leases and presence ─────────────────────────────────────────

    def _beat(self) -> None:
        now = self.shell.now()
        timeout = self.job_timeout.total_seconds()
        renew: set[int] = set(self._pipeline.held_ids()) if self._pipeline is not None else set()
        with self._lock:
            for flight in self._in_flight.values():
                job_id = flight.job.id
                if time.monotonic() - flight.started <= timeout:
                    continue  # the pipeline says which of its jobs to renew
                renew.discard(job_id)  # abandoned: its lease must run out
                if not flight.abandoned:
                    flight.abandoned = True
                    if self._pipeline is not None:
                        self._pipeline.abandon(job_id)
                    self.stats.abandoned += 1
                    self._retiring.add(flight.slot)
                    self._add_slot()  # keep the capacity; the stuck slot retires later
                    logger.error(
                        "job %s (%s, run %s) ran past its %s timeout: abandoned to another worker",
                        job_id,
                        flight.job.kind,
                        flight.job.run_id,
                        self.job_timeout,
                        extra=job_fields(
                            flight.job.run_id,
                            flight.job.kind,
                            flight.job.payload,
                            job_id=job_id,
                            action="job_timeout",
                        ),
                    )
            in_flight = len(self._in_flight)
        try:
            if renew:
                self.shell.backend.renew(renew, worker=self.id, until=now + self.lease)
            if self._pipeline is not None:
                self._pipeline.look_for_lapsed()
            with self.shell.sessions.begin() as session:
                presence.beat(
                    session,
                    {
                        "id": self.id,
                        "hostname": socket.gethostname(),
                        "pid": os.getpid(),
                        "concurrency": self.concurrency,
                        "queues": self.queues,
                        "workflows": self.workflows,
                        "in_flight": in_flight,
                        "processed": self.stats.applied + self.stats.stale,
                        "started_at": now,
                        "last_seen": now,
                        "expires_at": now + self.heartbeat * presence.MISSED_BEATS_BEFORE_DEAD,
                    },
                )
        except Exception as exc:  # noqa: BLE001 - the next beat retries
            logger.warning(
                "heartbeat failed (%s: %s); retrying",
                type(exc).__name__,
                exc,
                extra={"action": "heartbeat_failed", "worker": self.id},
            )

    # ── slots ──────────────────────────────────────────────────────────────────

    def _add_slot(self) -> None:
        thread = threading.Thread(
            target=self._slot, name=f"durable-sa-slot-{len(self._threads)}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def _retire(self) -> bool:
        """True when this slot should end: its abandoned job got a replacement slot."""
        with self._lock:
            return threading.get_ident() in self._retiring

    def _slot(self) -> None:
        pause = ErrorPause()
        while not self._stopping.is_set() and not self._retire():
            seen = self._wakeup.rung
            try:
                job = self._next_job()
            except Exception as exc:  # noqa: BLE001 - a database blip must not kill the slot
                self.stats.errors += 1
                wait = pause.failed()
                logger.warning(
                    "claiming failed (%s: %s); retrying in %.1f s",
                    type(exc).__name__,
                    exc,
                    wait,
                    extra={"action": "claim_failed", "worker": self.id},
                )
                self._idle(wait, seen)
                continue
            pause.succeeded()
            if job is None:
                busy = self._pipeline is not None and self._pipeline.busy
                # Commits in flight wake us with their runs' next steps; else look again
                # when the next job is due.
                self._idle(self.poll_interval if busy else self._until_next_job(), seen)
                continue
            self._execute(job)

    def _next_job(self) -> Work | None:
        if self._pipeline is None:  # pragma: no cover - slots run only beside a pipeline
            return None
        return self._pipeline.next_work(may_claim=not self._stopping.is_set())

    def _execute(self, work: Work) -> None:
        if self._pipeline is None:  # pragma: no cover - slots run only beside a pipeline
            return
        token = next(self._tokens)
        flight = _InFlight(job=work.job, started=time.monotonic(), slot=threading.get_ident())
        with self._lock:
            self._in_flight[token] = flight
        try:
            self._pipeline.process(work)
        except Exception:
            self.stats.errors += 1
            logger.exception("job %s crashed the slot", work.job.id, extra={"worker": self.id})
            self.stats.count(JobOutcome.RELEASED)
        finally:
            with self._lock:
                self._in_flight.pop(token, None)

    def _until_next_job(self) -> float:
        try:
            now = self.shell.now()
            due = self.shell.backend.next_due(now=now, queues=self.queues, workflows=self.workflows)
        except Exception:  # noqa: BLE001 - the claim loop reports database errors
            return self.poll_interval
        if due is None:
            return self.poll_interval
        return max(0.0, min(self.poll_interval, (due - now).total_seconds()))

    def _on_notify(self, _channel: str, _payload: str) -> None:
        self.wake()
