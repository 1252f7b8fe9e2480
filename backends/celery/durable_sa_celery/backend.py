"""Celery as a durable-sa queue: each job is a task message on the user's Celery app.

Rules:
- **Producing** is the outbox's: the engine's transaction writes an outbox row, and a
  relay sends each due row as one task message (``send_task``) to ``celery_queue`` (by
  default the app's default queue), with the job's JSON document as its only argument.
  Delays (sleeps, backoffs) wait in the outbox, never in Celery's ETA.
- **Consuming** is Celery's: the user's Celery workers run the task registered by
  :func:`durable_sa_celery.install`, which calls :meth:`CeleryBackend.consume`. The task
  is ``acks_late``: the step's checkpoint commits *before* the task returns, and only
  then does Celery acknowledge the message. A worker killed mid-step leaves the message
  unacknowledged, and Celery delivers it again (``reject_on_worker_lost`` for a killed
  pool process, the broker's visibility timeout for a killed worker).
- **The outbox row is the job's record until it is done** (``tracks_delivery``): the
  transaction that applies a job's outcome deletes its row. Celery can lose a message
  (a worker killed between taking it and recording it as unacknowledged), so the relay
  publishes again a row still there ``redeliver_after`` after it was published; the
  engine drops the duplicate of a job that did finish. ``recover()`` and
  ``pending_count()`` read the rows, so they are exact.
- **Attempts**: Celery flags a message delivered again but does not count; the count is
  kept on the outbox row (:meth:`~durable_sa.outbox.OutboxBackend.count_redelivery`), so
  a job that kills every worker that takes it is dead-lettered after ``max_job_attempts``.
  A redelivered copy whose row is gone belongs to a job that is over: it is dropped
  without running, so a dead-lettered poison job cannot crash workers through a copy.
- **Nothing is lost when the database is away**: if the outcome of a delivery could not
  be written (release or dead letter failed), :meth:`consume` raises
  :class:`NotPersisted` and the task rejects the message back to the queue after
  ``retry_delay`` seconds.
- durable-sa workers do not consume Celery: ``claim`` returns nothing, and a durable-sa
  worker on this backend only runs the relay.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import threading
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Final

import attrs
from celery import Celery
from sqlalchemy import func, select

from durable_sa.engine import runner
from durable_sa.engine.applier import Applier
from durable_sa.errors import InvalidArgumentError, PayloadError
from durable_sa.outbox.backend import (
    DEFAULT_KEEP_PUBLISHED,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_QUEUE,
    OutboxBackend,
)
from durable_sa.outbox.message import decode_message, encode_message
from durable_sa.results import JobOutcome
from durable_sa.store.models import outbox_table

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Mapping, Sequence
    from datetime import datetime

    from sqlalchemy import Engine

    from durable_sa.facade import Durable
    from durable_sa.outbox.message import OutboxMessage
    from durable_sa.queue.capabilities import Capabilities
    from durable_sa.queue.protocol import ClaimedJob

logger = logging.getLogger(__name__)

TASK_NAME: Final = "durable_sa.run_job"
"""The name of the task that runs a durable job, on the user's Celery app."""
DEFAULT_REDELIVER_AFTER: Final = timedelta(minutes=15)


class NotPersisted(Exception):  # noqa: N818 - it says what happened, not that it failed
    """A delivery's outcome could not be written: the message must go back to the queue."""


class CeleryBackend(OutboxBackend):
    """Jobs relayed to Celery tasks; see the module docstring for the rules."""

    name: ClassVar[str] = "celery"
    capabilities: ClassVar[Capabilities] = attrs.evolve(
        OutboxBackend.capabilities, consumed_by_workers=False, tracks_delivery=True
    )

    def __init__(  # noqa: PLR0913 - backend options, all keyword-only
        self,
        sa_engine: Engine,
        *,
        queue: str = DEFAULT_QUEUE,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        app: Celery | str,
        task_name: str = TASK_NAME,
        celery_queue: str | None = None,
        retry_delay: float = 1.0,
        redeliver_after: timedelta = DEFAULT_REDELIVER_AFTER,
        keep_published: timedelta = DEFAULT_KEEP_PUBLISHED,
    ) -> None:
        """Relay ``sa_engine``'s jobs to ``app`` (a Celery app, or ``"module:attribute"``).

        ``celery_queue`` is the Celery queue every job goes to (default: the app's
        ``task_default_queue``, which a plain ``celery worker`` consumes); ``retry_delay`` is
        how long a delivery whose outcome could not be written waits before its message
        goes back to the queue; ``redeliver_after`` is how long a published job may stay
        unfinished before the relay publishes it again (Celery can lose a message: it
        must be longer than a job can wait in Celery's queue and run).

        Raises:
            InvalidArgumentError: ``app`` is not a Celery app, or a bad option.

        """
        super().__init__(
            sa_engine, queue=queue, max_attempts=max_attempts, keep_published=keep_published
        )
        self.app = _celery_app(app)
        if retry_delay < 0:
            msg = f"retry_delay must be >= 0 seconds, not {retry_delay}"
            raise InvalidArgumentError(msg)
        if not isinstance(redeliver_after, timedelta) or redeliver_after <= timedelta(0):
            msg = f"redeliver_after must be a positive timedelta, not {redeliver_after!r}"
            raise InvalidArgumentError(msg)
        self.redeliver_after = redeliver_after
        self.task_name = task_name
        self.celery_queue = celery_queue
        self.retry_delay = retry_delay
        self._queues = {self.celery_queue_for(queue)}
        self._unsaved: set[int] = set()  # deliveries whose outcome could not be written
        self._appliers: tuple[Durable, Applier] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<CeleryBackend queue={self.queue!r} app={self.app.main!r}>"

    def celery_queue_for(self, queue: str) -> str:  # noqa: ARG002 - one queue for all jobs
        """The Celery queue that carries the jobs: ``celery_queue``, else the app's default."""
        return self.celery_queue or str(self.app.conf.task_default_queue)

    # ── relay side ─────────────────────────────────────────────────────────────

    def publish(self, messages: Sequence[OutboxMessage]) -> None:
        """Send one task message per job, on one producer connection; raise on failure."""
        with self.app.producer_or_acquire() as producer:
            for message in messages:
                target = self.celery_queue_for(message.queue)
                with self._lock:
                    self._queues.add(target)
                self.app.send_task(
                    self.task_name,
                    args=(encode_message(message),),
                    queue=target,
                    task_id=f"durable-sa-job-{message.id}",
                    producer=producer,
                    ignore_result=True,
                )

    # ── consumer side: the Celery task calls this ──────────────────────────────

    def consume(self, engine: Durable, document: object, *, redelivered: bool) -> JobOutcome:
        """Run the job in ``document`` (one task message); how it ended.

        Raises:
            NotPersisted: the outcome could not be written (the database is away); the
                caller must put the message back on the queue.

        """
        try:
            message = decode_message(document)
        except PayloadError as exc:
            self._dead_letter_document(document, str(exc))
            return JobOutcome.DEAD_LETTERED
        if redelivered or message.redeliveries:
            try:
                counted = (
                    self.count_redelivery(message.id)
                    if redelivered
                    else self.redeliveries_of(message.id)
                )
            except Exception as exc:
                msg = f"could not count a redelivery of job {message.id}: {exc}"
                raise NotPersisted(msg) from exc
            if counted is None:
                # The job is over: this copy (Celery's redelivery, or the relay's second
                # publication) must not run its step again, nor crash a worker again.
                logger.info(
                    "job %s (run %s): a copy of a finished job dropped",
                    message.id,
                    message.run_id,
                    extra={"action": "stale", "run_id": message.run_id},
                )
                return JobOutcome.STALE
            message = attrs.evolve(message, redeliveries=counted)
        job = self.hold(message, deliveries=1, claimed_until=None)
        outcome = runner.run_job(
            engine.shell, job, applier=self._applier(engine), lease=self.redeliver_after
        )
        with self._lock:
            unsaved = job.id in self._unsaved
            self._unsaved.discard(job.id)
        if unsaved:
            msg = f"job {job.id} ({job.kind}, run {job.run_id}): its outcome was not saved"
            raise NotPersisted(msg)
        return outcome

    def _applier(self, engine: Durable) -> Applier:
        """The applier of this process's consumer: it runs each run's next step in place.

        A step whose next step is due now commits that job's outbox row already taken by
        this process, leased for ``redeliver_after`` (the time a published job may take,
        too), and the task runs it before it returns: a run costs one task message per
        wake-up, not one per step. If the process dies, the relay publishes the row once
        the lease has run out.
        """
        with self._lock:
            if self._appliers is None or self._appliers[0] is not engine:
                worker = f"celery:{socket.gethostname()}:{os.getpid()}"
                self._appliers = (engine, Applier(self, worker=worker))
            return self._appliers[1]

    def _dead_letter_document(self, document: object, error: str) -> None:
        try:
            self.dead_letter_unreadable(
                queue=self.queue,
                raw={"document": document if isinstance(document, str) else repr(document)},
                error=f"malformed Celery task message for {self.task_name}: {error}",
            )
        except Exception as exc:
            msg = f"could not dead-letter a malformed message: {exc}"
            raise NotPersisted(msg) from exc

    def release(self, job: ClaimedJob, *, error: str, retry_at: datetime) -> None:
        """Write the job back to the outbox for ``retry_at`` (remembered if that fails)."""
        try:
            super().release(job, error=error, retry_at=retry_at)
        except Exception:
            with self._lock:
                self._unsaved.add(job.id)
            raise

    def dead_letter(self, job: ClaimedJob, *, error: str) -> None:
        """Record the job as a dead letter (remembered if that fails)."""
        try:
            super().dead_letter(job, error=error)
        except Exception:
            with self._lock:
                self._unsaved.add(job.id)
            raise

    def settle(self, job: ClaimedJob) -> None:
        """Nothing to do: Celery acknowledges the message when the task returns."""

    def claim(  # noqa: PLR0913 - the protocol's signature
        self,
        *,
        now: datetime,  # noqa: ARG002
        worker: str,  # noqa: ARG002
        lease: timedelta,  # noqa: ARG002
        queues: Sequence[str] | None = None,  # noqa: ARG002
        workflows: Mapping[str, str] | None = None,  # noqa: ARG002
        fifo: bool = False,  # noqa: ARG002
    ) -> ClaimedJob | None:
        """Always ``None``: Celery's own workers consume the messages."""
        return None

    def renew_deliveries(self, job_ids: Collection[int], *, worker: str, until: datetime) -> int:  # noqa: ARG002
        """Nothing to renew: Celery holds a message until its task returns."""
        return 0

    def release_deliveries(self, job_ids: Collection[int], *, worker: str) -> int:  # noqa: ARG002
        """Nothing to give back: durable-sa workers never hold Celery messages."""
        return 0

    def next_due(
        self,
        *,
        now: datetime,  # noqa: ARG002
        queues: Sequence[str] | None = None,  # noqa: ARG002
        workflows: Mapping[str, str] | None = None,  # noqa: ARG002
    ) -> datetime | None:
        """``None``: a durable-sa worker never has anything to claim here."""
        return None

    # ── inspection ─────────────────────────────────────────────────────────────

    def broker_run_ids(self, run_ids: Iterable[int]) -> set[int]:
        """Runs of ``run_ids`` with a published job not done yet (its row is still there)."""
        wanted = list(run_ids)
        if not wanted:
            return set()
        with self.sessions() as session:
            rows = session.execute(
                select(outbox_table.c.run_id)
                .where(
                    outbox_table.c.run_id.in_(wanted),
                    outbox_table.c.published_at.is_not(None),
                    outbox_table.c.claimed_until.is_(None),
                )
                .distinct()
            )
            return {int(r) for r in rows.scalars()}

    def broker_pending(self) -> int:
        """Published jobs not done yet: their rows stay until the job's outcome commits."""
        with self.sessions() as session:
            return int(
                session.execute(
                    select(func.count())
                    .select_from(outbox_table)
                    .where(
                        outbox_table.c.published_at.is_not(None),
                        outbox_table.c.claimed_until.is_(None),
                    )
                ).scalar_one()
            )

    def waiting_messages(self) -> int:
        """Messages waiting in this backend's Celery queues (not yet taken by a worker)."""
        with self._lock:
            queues = sorted(self._queues)
        with self.app.connection_for_write() as connection:
            channel: Any = connection.default_channel
            total = 0
            for name in queues:
                try:
                    total += int(channel.queue_declare(queue=name, passive=True).message_count)
                except connection.channel_errors:  # never declared: nothing in it
                    channel = connection.default_channel
        return total

    def broker_clear(self) -> None:
        """Purge this backend's Celery queues."""
        with self._lock:
            queues = sorted(self._queues)
        with self.app.connection_for_write() as connection:
            channel: Any = connection.default_channel
            for name in queues:
                try:
                    channel.queue_purge(name)
                except connection.channel_errors:
                    channel = connection.default_channel


def _celery_app(app: object) -> Celery:
    if isinstance(app, str):
        module_name, _, attribute = app.partition(":")
        if not attribute:
            msg = f"app must be a Celery app or 'module:attribute', not {app!r}"
            raise InvalidArgumentError(msg)
        app = getattr(importlib.import_module(module_name), attribute, None)
    if not isinstance(app, Celery):
        msg = f"app must be a Celery application (celery.Celery), not {app!r}"
        raise InvalidArgumentError(msg)
    return app
