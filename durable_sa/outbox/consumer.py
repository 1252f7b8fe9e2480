"""The consumer half a relay backend builds on: claims, leases, and how a delivery ends.

A subclass takes messages from its broker (:meth:`OutboxConsumer.claim`, or
:meth:`OutboxConsumer.claim_many` for a broker that reads batches); a worker's pipeline
claims batches with their runs. A job run in place is held by its row's lease in the
database, a delivered one by the broker. A job given back after an error
(:meth:`~OutboxConsumer.release`) or held for another worker
(:meth:`~OutboxConsumer.defer`) is written back to the outbox as a new row, due at its
retry time, and the delivered message is settled; delays therefore live in the
database, whatever the broker can or cannot schedule. Only the first of two copies of
a job delivered at once may end it (:meth:`~OutboxConsumer._forget_row`).
"""

from __future__ import annotations

import abc
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update

from durable_sa.outbox.message import OutboxMessage
from durable_sa.outbox.producer import OutboxProducer
from durable_sa.queue import dead_letters
from durable_sa.queue.claims import runs_by_id
from durable_sa.queue.protocol import Claim, ClaimedJob, ClaimKind
from durable_sa.queue.rows import requeue_into
from durable_sa.store.models import outbox_table, runs_table

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence

    from sqlalchemy import Connection
    from sqlalchemy.orm import Session

outbox = outbox_table

logger = logging.getLogger("durable_sa.outbox.backend")
"""The relay backends' logger, whichever of their modules writes: log filters keep working."""


class OutboxConsumer(OutboxProducer):
    """The consumer side: a base of :class:`~durable_sa.outbox.backend.OutboxBackend`."""

    def release(self, job: ClaimedJob, *, error: str, retry_at: datetime) -> None:
        """Write the job back to the outbox, due at ``retry_at``; settle the delivery."""
        message = self._message_of(job)
        with self._sessions.begin() as session:
            if self._forget_row(session, job.id):
                self._write_back(session, message, attempts=job.attempts, due=retry_at, error=error)
        self._settle_quietly(job)

    def defer(self, job: ClaimedJob, *, until: datetime, reason: str) -> None:
        """Offer a delivered job again at ``until`` (no attempt used); settle the delivery.

        The engine calls this for a job whose run's definition this process lacks.
        """
        self.defer_message(self._message_of(job), until=until, reason=reason)
        self._settle_quietly(job)

    def defer_message(self, message: OutboxMessage, *, until: datetime, reason: str) -> int | None:
        """Offer a delivered message again at ``until`` (no attempt used); the new job id.

        ``None`` when another delivery of the same job already finished it.

        For a job this consumer cannot run (a workflow or version it does not define): a
        worker that has it will take it then.
        """
        with self._sessions.begin() as session:
            if not self._forget_row(session, message.id):
                return None
            return self._write_back(
                session,
                message,
                attempts=message.attempts + message.redeliveries,
                due=until,
                error=reason,
            )

    def dead_letter_unreadable(self, *, queue: str, raw: Mapping[str, Any], error: str) -> None:
        """Record a broker message that is no job document at all (kind ``unreadable``).

        ``raw`` is whatever the broker gave (as text), kept for the operator; such a
        dead letter cannot be requeued, since it names no run.
        """
        logger.error(error, extra={"action": "dead_letter"})
        job = ClaimedJob(
            id=0,
            queue=queue,
            kind="unreadable",
            run_id=None,
            payload=dict(raw),
            attempts=1,
            max_attempts=self.max_attempts,
            available_at=datetime.now(UTC),
        )
        with self._sessions.begin() as session:
            dead_letters.record(session, job, error=error)

    def count_redelivery(self, job_id: int) -> int | None:
        """Count one more redelivery of job ``job_id``; how many so far.

        For brokers that say a message is delivered again but not how often: the count
        lives on the outbox row, so a job that kills every consumer runs out of attempts.
        ``None``: the row is gone, so the job is over (done, given back as a new row, or
        dead-lettered) and this delivery is a stale copy.
        """
        with self._sessions.begin() as session:
            count = session.execute(
                update(outbox)
                .where(outbox.c.id == job_id)
                .values(redeliveries=outbox.c.redeliveries + 1)
                .returning(outbox.c.redeliveries)
            ).scalar()
        return None if count is None else int(count)

    def redeliveries_of(self, job_id: int) -> int | None:
        """The redeliveries counted for job ``job_id``; ``None`` when its row is gone."""
        with self._sessions() as session:
            count = session.execute(
                select(outbox.c.redeliveries).where(outbox.c.id == job_id)
            ).scalar()
        return None if count is None else int(count)

    def dead_letter(self, job: ClaimedJob, *, error: str) -> None:
        """Record the job in ``durable_dead_letters``, then settle its delivery."""
        with self._sessions.begin() as session:
            if self._forget_row(session, job.id):
                dead_letters.record(session, job, error=error)
        self._settle_quietly(job)

    def _forget_row(self, session: Session, job_id: int) -> bool:
        """End the job's outbox record (``tracks_delivery``); False if it had already ended.

        Two copies of one job may be delivered at once (the broker's redelivery and the
        relay's second publication): only the first to end the record may write a dead
        letter or a retry, so a job is never dead-lettered or released twice.
        """
        if not self.capabilities.tracks_delivery and not self.runs_in_place(job_id):
            return True
        result = session.execute(delete(outbox).where(outbox.c.id == job_id))
        return bool(getattr(result, "rowcount", 0))

    def requeue(self, dead_letter_id: int, *, now: datetime) -> int | None:
        """Move a dead letter back to the outbox, due now; its new job id (or ``None``)."""
        with self._sessions.begin() as session:
            row_id = requeue_into(
                session, outbox, dead_letter_id, max_attempts=self.max_attempts, now=now
            )
            if row_id is not None:
                self._wake.after_commit(session)
        return row_id

    def _message_of(self, job: ClaimedJob) -> OutboxMessage:
        message = self.held_message(job.id)
        if message is not None:
            return message
        # Delivered through another instance: the workflow is the run's.
        with self._sessions() as session:
            row = session.execute(
                select(runs_table.c.workflow_name, runs_table.c.workflow_version).where(
                    runs_table.c.id == job.run_id
                )
            ).first()
        return OutboxMessage(
            id=job.id,
            queue=job.queue,
            kind=job.kind,
            run_id=job.run_id or 0,
            workflow=row.workflow_name if row else "",
            version=row.workflow_version if row else None,
            payload=job.payload,
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            available_at=job.available_at,
        )

    @abc.abstractmethod
    def claim(  # noqa: PLR0913 - every option is keyword-only
        self,
        *,
        now: datetime,
        worker: str,
        lease: timedelta,
        queues: Sequence[str] | None = None,
        workflows: Mapping[str, str] | None = None,
        fifo: bool = False,
    ) -> ClaimedJob | None:
        """Take the next message for ``worker`` from the broker (``None``: none came)."""

    def claim_batch(  # noqa: PLR0913 - the worker's claim, every option keyword-only
        self,
        *,
        now: datetime,
        worker: str,
        lease: timedelta,
        limit: int,
        queues: Sequence[str] | None = None,
        workflows: Mapping[str, str] | None = None,
        fifo: bool = False,
        connection: Connection | None = None,  # noqa: ARG002 - claims read the broker
        kind: ClaimKind = ClaimKind.BATCH,
        wait: bool = True,
    ) -> list[Claim]:
        """Take up to ``limit`` messages for ``worker``'s pipeline, with their runs.

        ``wait`` lets the read wait for the broker (a worker with nothing in hand). The
        runs of the batch are read in one statement after it. Only batches are claimed:
        a delivery whose consumer died is taken over by the broker's own redelivery (or
        the relay, for a row run in place).
        """
        if limit <= 0 or kind is not ClaimKind.BATCH:
            return []
        jobs = self.claim_many(
            now=now,
            worker=worker,
            lease=lease,
            limit=limit,
            queues=queues,
            workflows=workflows,
            fifo=fifo,
            wait=wait,
        )
        if not jobs:
            return []
        with self.sa_engine.connect() as conn:
            runs = runs_by_id(conn, [job.run_id for job in jobs])
        return [Claim(job=job, run=runs.get(job.run_id or 0)) for job in jobs]

    def claim_many(  # noqa: PLR0913 - every option is keyword-only
        self,
        *,
        now: datetime,
        worker: str,
        lease: timedelta,
        limit: int,  # noqa: ARG002 - one at a time unless a broker reads batches
        queues: Sequence[str] | None = None,
        workflows: Mapping[str, str] | None = None,
        fifo: bool = False,
        wait: bool = True,  # noqa: ARG002 - claim() waits as its broker does
    ) -> list[ClaimedJob]:
        """Take up to ``limit`` messages (a broker that can read a batch overrides this)."""
        job = self.claim(
            now=now, worker=worker, lease=lease, queues=queues, workflows=workflows, fifo=fifo
        )
        return [] if job is None else [job]

    def has_lapsed(
        self,
        *,
        now: datetime,  # noqa: ARG002
        queues: Sequence[str] | None = None,  # noqa: ARG002
        workflows: Mapping[str, str] | None = None,  # noqa: ARG002
    ) -> bool:
        """Always False: the broker redelivers a dead consumer's messages itself."""
        return False

    def renew(self, job_ids: Collection[int], *, worker: str, until: datetime) -> int:
        """Extend ``worker``'s hold on ``job_ids``; how many it holds.

        Rows run in place get a new lease in the database; broker deliveries are
        renewed with :meth:`renew_deliveries`.
        """
        in_place, delivered = self._split(job_ids)
        held = self._update_taken(in_place, worker, {"claimed_until": until})
        if delivered:
            held += self.renew_deliveries(delivered, worker=worker, until=until)
        return held

    def release_claims(self, job_ids: Collection[int], *, worker: str) -> int:
        """Give ``worker``'s jobs of ``job_ids`` back now, for any consumer.

        A row run in place becomes an unpublished row, due now, that a relay publishes;
        broker deliveries go back with :meth:`release_deliveries`.
        """
        in_place, delivered = self._split(job_ids)
        unpublished = {"published_at": None, "published_by": None, "claimed_until": None}
        released = self._update_taken(in_place, worker, unpublished)
        for job_id in in_place:
            self.forget(job_id)
        if delivered:
            released += self.release_deliveries(delivered, worker=worker)
        return released

    def _update_taken(self, job_ids: list[int], worker: str, values: dict[str, Any]) -> int:
        """Set ``values`` on the rows of ``job_ids`` that ``worker`` holds taken; how many."""
        if not job_ids:
            return 0
        with self._sessions.begin() as session:
            result = session.execute(
                update(outbox)
                .where(
                    outbox.c.id.in_(job_ids),
                    outbox.c.published_by == worker,
                    outbox.c.claimed_until.is_not(None),
                )
                .values(values)
            )
            self._wake.after_commit(session)  # a row given back: the relay publishes it
        return int(getattr(result, "rowcount", 0) or 0)

    @abc.abstractmethod
    def renew_deliveries(self, job_ids: Collection[int], *, worker: str, until: datetime) -> int:
        """Extend ``worker``'s hold on the broker's deliveries of ``job_ids``; how many."""

    @abc.abstractmethod
    def release_deliveries(self, job_ids: Collection[int], *, worker: str) -> int:
        """Give ``worker``'s broker deliveries of ``job_ids`` back to the broker now."""

    @abc.abstractmethod
    def next_due(
        self,
        *,
        now: datetime,
        queues: Sequence[str] | None = None,
        workflows: Mapping[str, str] | None = None,
    ) -> datetime | None:
        """When a consumer should look again (``now`` if ``claim`` waits by itself)."""
