"""The relay: publishes committed outbox rows to the broker, in due order, at least once.

Rules:
- One batch is one transaction: an UPDATE stamps the oldest due, unpublished rows as
  published (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so concurrent relays take
  disjoint rows and never wait on each other; SQLite's write lock serializes them), the
  broker receives the batch, then the transaction commits. If publishing fails the
  transaction rolls back and the rows stay unpublished; if the relay is killed between
  publishing and committing, the rows are published again later. Delivery is therefore
  at least once, and each row is in the hands of one relay at a time.
- Only due rows are published: a sleep or a retry backoff waits in the database.
- For a backend that ``tracks_delivery`` (a row stays until its job is done), a row still
  there ``redeliver_after`` after its publication is published again: the broker lost it.
- A row a worker took to run in place (``claimed_until`` set) is the worker's while its
  lease lasts; once the lease has run out (the worker died), the row is published like
  any other, its redelivery counted.
- Idle, the relay sleeps until the next row is due, an in-process commit wakes it, a
  NOTIFY arrives (PostgreSQL), or the poll interval passes.
- Published rows are deleted once older than the backend's ``keep_published``, checked
  every ``prune_interval``, in small batches (never for a backend that tracks delivery).
- Errors (the broker or the database away) are logged and retried with a growing pause;
  the relay never dies of them.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import attrs
from sqlalchemy import delete, func, select, update

from durable_sa.engine.shell import system_clock
from durable_sa.errors import InvalidArgumentError
from durable_sa.outbox.message import message_from_row
from durable_sa.runtime.listen import Listener
from durable_sa.runtime.service import ErrorPause, Service
from durable_sa.store.models import outbox_table
from durable_sa.store.notify import OUTBOX_CHANNEL
from durable_sa.store.picks import picked_once

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from sqlalchemy import ColumnElement, RowMapping
    from sqlalchemy.orm import Session

    from durable_sa.outbox.backend import OutboxBackend

logger = logging.getLogger(__name__)

outbox = outbox_table

_PRUNE_BATCH: Final = 1000


@attrs.define
class RelayStats:
    """Counts since the relay started (read them from another thread freely)."""

    published: int = 0
    batches: int = 0
    pruned: int = 0
    errors: int = 0


class Relay(Service):
    """Publishes an :class:`OutboxBackend`'s due rows; see the module docstring.

    ``run()`` publishes in the calling thread, ``start()`` in a background thread;
    ``stop()`` lets the batch in hand commit or roll back, never half-done
    (:class:`~durable_sa.runtime.service.Service`).
    """

    daemon_thread = True

    def __init__(  # noqa: PLR0913 - relay tuning, all keyword-only
        self,
        backend: OutboxBackend,
        *,
        clock: Callable[[], datetime] = system_clock,
        batch_size: int = 500,
        poll_interval: float | None = None,
        prune_interval: timedelta = timedelta(minutes=1),
        name: str | None = None,
    ) -> None:
        """Prepare a relay for ``backend``; nothing runs until :meth:`run` or :meth:`start`."""
        if not backend.capabilities.outbox:
            msg = (
                f"{backend!r} has no outbox to relay: only relay backends (such as redis "
                "or celery) need a relay; the jobs table is read by workers directly"
            )
            raise InvalidArgumentError(msg)
        if batch_size < 1:
            msg = f"batch_size must be at least 1, not {batch_size}"
            raise InvalidArgumentError(msg)
        self.backend = backend
        self.clock = clock
        self.batch_size = batch_size
        sqlite = backend.sa_engine.dialect.name == "sqlite"
        self.poll_interval = (
            poll_interval if poll_interval is not None else (0.25 if sqlite else 1.0)
        )
        self.prune_interval = prune_interval
        self.id = name or f"relay:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stats = RelayStats()
        super().__init__(f"durable-sa-{self.id}")
        self._listener = Listener(
            backend.sa_engine, [OUTBOX_CHANNEL], self._on_notify, on_reconnect=self.wake
        )

    def __repr__(self) -> str:
        return f"<Relay {self.id} backend={self.backend.name}>"

    # ── one step at a time (tests, scripts) ────────────────────────────────────

    def publish_due(self) -> int:
        """Publish one batch of due rows in one transaction; how many were published.

        For a backend that ``tracks_delivery``, rows published ``redeliver_after`` ago
        and still there (their job never finished) are published again first.
        """
        now = self.clock()
        with self.backend.sessions.begin() as session:
            rows: list[RowMapping] = []
            for pick in (self._lapsed_rows, self._stale_rows, self._due_rows):
                if len(rows) < self.batch_size:
                    rows += pick(session, now, self.batch_size - len(rows))
            if not rows:
                return 0
            messages = sorted(
                (message_from_row(row) for row in rows), key=lambda m: (m.available_at, m.id)
            )
            self.backend.publish(messages)  # raises: the rows stay as they were
        self.stats.published += len(messages)
        self.stats.batches += 1
        return len(messages)

    def _due_rows(self, session: Session, now: datetime, limit: int) -> Sequence[RowMapping]:
        """Rows never published and due now."""
        due = (outbox.c.published_at.is_(None), outbox.c.available_at <= now)
        order = (outbox.c.available_at, outbox.c.id)
        return self._stamp(session, now, due, order, limit)

    def _lapsed_rows(self, session: Session, now: datetime, limit: int) -> Sequence[RowMapping]:
        """Rows taken to run in place by a worker whose lease ran out: publish them."""
        lapsed = (outbox.c.claimed_until.is_not(None), outbox.c.claimed_until < now)
        order = (outbox.c.claimed_until, outbox.c.id)
        rows = self._stamp(session, now, lapsed, order, limit, again=True)
        if rows:
            logger.warning(
                "relay %s: %d job(s) run in place by a worker whose lease ran out; publishing them",
                self.id,
                len(rows),
                extra={"action": "redeliver"},
            )
        return rows

    def _stale_rows(self, session: Session, now: datetime, limit: int) -> Sequence[RowMapping]:
        """Rows published ``redeliver_after`` ago and still there: the broker lost them.

        Only for a backend that ``tracks_delivery`` (its rows stay until the job is done).
        """
        after = self.backend.redeliver_after
        if not self.backend.capabilities.tracks_delivery or after is None:
            return []
        stale = (
            outbox.c.published_at.is_not(None),
            outbox.c.published_at < now - after,
            outbox.c.claimed_until.is_(None),
        )
        order = (outbox.c.published_at, outbox.c.id)
        rows = self._stamp(session, now, stale, order, limit, again=True)
        if rows:
            logger.warning(
                "relay %s: %d job(s) published %s ago never finished; publishing them again",
                self.id,
                len(rows),
                after,
                extra={"action": "redeliver"},
            )
        return rows

    def _stamp(  # noqa: PLR0913 - one pick, all of it positional but ``again``
        self,
        session: Session,
        now: datetime,
        where: tuple[ColumnElement[bool], ...],
        order: tuple[ColumnElement[Any], ...],
        limit: int,
        *,
        again: bool = False,
    ) -> Sequence[RowMapping]:
        """Mark up to ``limit`` rows matching ``where`` published by this relay; their columns.

        Rows are taken in ``order``, skipping those another relay holds, picked once
        (:func:`~durable_sa.store.picks.picked_once`: never more than ``limit``).

        ``again``: a publication after an earlier one was lost (counted as a redelivery,
        and a worker's hold on the row ends).
        """
        pick = (
            select(outbox.c.id)
            .where(*where)
            .order_by(*order)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        values: dict[str, Any] = {"published_at": now, "published_by": self.id}
        if again:
            values |= {"claimed_until": None, "redeliveries": outbox.c.redeliveries + 1}
        stamp = (
            update(outbox)
            .where(picked_once(outbox.c.id, pick, session.get_bind().dialect.name))
            .values(values)
            .returning(*(outbox.c[name] for name in _MESSAGE_COLUMNS))
        )
        return session.execute(stamp).mappings().all()

    def drain(self) -> int:
        """Publish every due row; how many were published."""
        total = 0
        while published := self.publish_due():
            total += published
        return total

    def prune(self, *, now: datetime | None = None) -> int:
        """Delete rows published more than the backend's ``keep_published`` ago.

        Nothing to do for a backend that ``tracks_delivery``: its rows go when their
        job is done, and one still there is a job not done.
        """
        if self.backend.capabilities.tracks_delivery:
            return 0
        cutoff = (now or self.clock()) - self.backend.keep_published
        total = 0
        while True:
            doomed = (
                select(outbox.c.id)
                .where(
                    outbox.c.published_at.is_not(None),
                    outbox.c.published_at < cutoff,
                    outbox.c.claimed_until.is_(None),
                )
                .limit(_PRUNE_BATCH)
            )
            with self.backend.sessions.begin() as session:
                result = session.execute(delete(outbox).where(outbox.c.id.in_(doomed)))
            deleted = int(getattr(result, "rowcount", 0) or 0)
            total += deleted
            if deleted < _PRUNE_BATCH:
                break
        self.stats.pruned += total
        return total

    def backlog(self) -> int:
        """Rows due now and not yet published."""
        return self.backend.unpublished_count(due_by=self.clock())

    def next_due(self) -> datetime | None:
        """When the earliest unpublished row is due (``None``: the outbox is empty)."""
        stmt = select(func.min(outbox.c.available_at)).where(outbox.c.published_at.is_(None))
        with self.backend.sessions() as session:
            value = session.execute(stmt).scalar()
        if isinstance(value, str):  # SQLite returns an aggregate of a date as text
            value = datetime.fromisoformat(value)
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    # ── lifecycle ──────────────────────────────────────────────────────────────

    def _serve(self) -> None:
        self.backend.add_wake_callback(self.wake)
        self._listener.start()
        logger.info(
            "relay %s started for %s", self.id, self.backend.name, extra={"action": "relay_started"}
        )
        self._ready()
        try:
            self._loop()
        finally:
            self._listener.stop()
            self.backend.remove_wake_callback(self.wake)
            logger.info(
                "relay %s stopped: %s",
                self.id,
                attrs.asdict(self.stats),
                extra={"action": "relay_stopped"},
            )

    def _loop(self) -> None:
        pause = ErrorPause()
        next_prune = time.monotonic()
        while not self._stopping.is_set():
            seen = self._wakeup.rung
            try:
                published = self.publish_due()
                if time.monotonic() >= next_prune:
                    self.prune()
                    next_prune = time.monotonic() + self.prune_interval.total_seconds()
                wait = 0.0 if published >= self.batch_size else self._until_next_due()
            except Exception as exc:  # noqa: BLE001 - the broker or the database is away
                self.stats.errors += 1
                wait = pause.failed()
                logger.warning(
                    "relay %s could not publish (%s: %s); retrying in %.1f s",
                    self.id,
                    type(exc).__name__,
                    exc,
                    wait,
                    extra={"action": "relay_failed"},
                )
                self._idle(wait, seen)
                continue
            pause.succeeded()
            self._idle(wait, seen)

    def _until_next_due(self) -> float:
        due = self.next_due()
        if due is None:
            return self.poll_interval
        seconds = (due - self.clock()).total_seconds()
        # A due row still there is held by another relay: look again at the next poll.
        return self.poll_interval if seconds <= 0 else min(self.poll_interval, seconds)

    def _on_notify(self, _channel: str, _payload: str) -> None:
        self.wake()


_MESSAGE_COLUMNS: Final = (
    "id",
    "queue",
    "kind",
    "run_id",
    "workflow_name",
    "workflow_version",
    "payload",
    "attempts",
    "max_attempts",
    "available_at",
    "redeliveries",
)
