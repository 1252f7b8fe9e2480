"""Redis Streams as a durable-sa queue: one stream per queue, read by a consumer group.

Rules:
- **Producing** is the outbox's: the engine's transaction writes an outbox row and a
  relay XADDs due rows to the stream ``{prefix}:{queue}``, one entry per job with the
  job's JSON document in the field ``job`` (and its run id in ``run``, for inspection).
  Delays (sleeps, retry backoffs) wait in the outbox, so a stream holds only work that
  can run now.
- **Consuming**: a worker reads with XREADGROUP as the consumer named after itself,
  blocking up to ``block`` seconds, so an idle worker costs one round trip per ``block``.
  An entry it reads stays in the group's pending list until the engine has committed
  the step it drove; only then is it acknowledged and deleted (XACK + XDEL), so a stream
  holds exactly the jobs not yet done.
- **Leases**: the heartbeat renews a worker's entries (XCLAIM to itself, which resets
  their idle time, checked by a script so an entry already taken over is left alone).
  Entries idle longer than the lease belong to a dead consumer: any worker takes them
  over with XAUTOCLAIM, at most once per ``reclaim_every`` seconds when there are none.
- **Attempts**: an entry's attempts are those of earlier copies of its job plus the
  times the group delivered it; past the engine's ``max_job_attempts`` the job is
  dead-lettered, so a job that kills every worker that takes it stops coming back.
- **Bad entries**: an entry that is not a durable-sa job document is dead-lettered (in
  ``durable_dead_letters``, with the stream, entry id and raw fields) and removed; the
  consumer goes on with the next entry.
- **Jobs this worker cannot run** (another workflow version) are deferred: written back
  to the outbox a few seconds later, for a worker that has the version.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Final

import redis
from sqlalchemy.orm import Session

from durable_sa.backends import DEFER_DELAY
from durable_sa.errors import InvalidArgumentError, PayloadError
from durable_sa.outbox.backend import (
    DEFAULT_KEEP_PUBLISHED,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_QUEUE,
    OutboxBackend,
)
from durable_sa.outbox.message import OutboxMessage, decode_message, encode_message

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Mapping, Sequence
    from datetime import datetime

    from sqlalchemy import Engine

    from durable_sa.queue.protocol import ClaimedJob

logger = logging.getLogger(__name__)

DEFAULT_URL: Final = "redis://127.0.0.1:6379/0"
JOB_FIELD: Final = b"job"
RUN_FIELD: Final = b"run"
_MAX_SKIPS: Final = 32
"""Bad or deferred entries one claim may step over before it returns empty-handed."""
_SCAN_PAGE: Final = 500
_CLEANUP_EVERY_S: Final = 60.0
_GONE_AFTER_MS: Final = 15 * 60 * 1000
_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")

_Entry = tuple[str, bytes, dict[bytes, bytes], int]
"""A stream entry read for a consumer: stream, entry id, fields, times delivered."""

# Renew only entries still owned by the consumer: XCLAIM with a min-idle of 0 would
# otherwise take back an entry another worker already took over.
_RENEW_SCRIPT: Final = """
local held = 0
for i, key in ipairs(KEYS) do
    local id = ARGV[i + 2]
    local pending = redis.call('XPENDING', key, ARGV[1], id, id, 1)
    if pending[1] and pending[1][2] == ARGV[2] then
        redis.call('XCLAIM', key, ARGV[1], ARGV[2], 0, id, 'JUSTID')
        held = held + 1
    end
end
return held
"""


class RedisStreamsBackend(OutboxBackend):
    """Jobs relayed to Redis Streams; see the module docstring for the rules."""

    name: ClassVar[str] = "redis"

    def __init__(  # noqa: PLR0913 - backend options, all keyword-only
        self,
        sa_engine: Engine,
        *,
        queue: str = DEFAULT_QUEUE,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        url: str = DEFAULT_URL,
        client: redis.Redis | None = None,
        prefix: str = "durable-sa",
        group: str = "durable-sa",
        block: float = 1.0,
        reclaim_every: float = 1.0,
        keep_published: timedelta = DEFAULT_KEEP_PUBLISHED,
        defer_delay: timedelta = DEFER_DELAY,
    ) -> None:
        """Relay ``sa_engine``'s jobs to the Redis server at ``url`` (or ``client``).

        ``prefix`` names the streams (``{prefix}:{queue}``) and ``group`` the consumer
        group; ``block`` is how long an idle worker's read waits for an entry (seconds).
        ``defer_delay``: how long an entry for a workflow version the worker that read
        it does not define waits to be offered again (as the engine's ``defer_delay``).

        Raises:
            InvalidArgumentError: a bad option.

        """
        super().__init__(
            sa_engine, queue=queue, max_attempts=max_attempts, keep_published=keep_published
        )
        for option, value in (("prefix", prefix), ("group", group), ("queue", queue)):
            if not isinstance(value, str) or not _NAME.match(value):
                msg = f"{option} must be letters, digits and _.:- only, not {value!r}"
                raise InvalidArgumentError(msg)
        if not block > 0 or reclaim_every < 0:
            msg = (
                f"block must be > 0 and reclaim_every >= 0 seconds, not {block} and "
                f"{reclaim_every} (an idle worker waits up to block seconds per read)"
            )
            raise InvalidArgumentError(msg)
        if not isinstance(defer_delay, timedelta) or defer_delay <= timedelta(0):
            msg = f"defer_delay must be a positive timedelta, not {defer_delay!r}"
            raise InvalidArgumentError(msg)
        self.defer_delay = defer_delay
        self.prefix = prefix
        self.group = group
        self.block = block
        self.reclaim_every = reclaim_every
        self.redis = client or redis.Redis.from_url(
            url,
            socket_timeout=block + 10.0,  # above the blocking read's own wait
            socket_connect_timeout=5.0,
            health_check_interval=30,
        )
        self._renew = self.redis.register_script(_RENEW_SCRIPT)
        self._groups: set[str] = set()
        self._entries: dict[int, tuple[str, bytes]] = {}  # job id → (stream, entry id)
        self._lock = threading.Lock()
        self._next_reclaim = 0.0
        self._next_cleanup = 0.0

    def __repr__(self) -> str:
        return f"<RedisStreamsBackend queue={self.queue!r} prefix={self.prefix!r} {self.redis!r}>"

    def stream(self, queue: str) -> str:
        """The stream that carries ``queue``'s jobs."""
        return f"{self.prefix}:{queue}"

    # ── relay side ─────────────────────────────────────────────────────────────

    def publish(self, messages: Sequence[OutboxMessage]) -> None:
        """XADD every message to its queue's stream in one pipeline; raise if any failed."""
        for key in {self.stream(m.queue) for m in messages}:
            self._ensure_group(key)
        with self.redis.pipeline(transaction=False) as pipe:
            for message in messages:
                pipe.xadd(
                    self.stream(message.queue),
                    {JOB_FIELD: encode_message(message), RUN_FIELD: str(message.run_id)},
                )
            pipe.execute(raise_on_error=True)

    def _ensure_group(self, key: str, *, again: bool = False) -> None:
        if key in self._groups and not again:
            return
        try:
            # From id 0: entries published before the group existed are read too.
            self.redis.xgroup_create(key, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(key)

    # ── consumer side ──────────────────────────────────────────────────────────

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
        """Take over an entry of a dead consumer, else read the next new entry.

        Blocks up to ``block`` seconds when no entry is waiting; ``None`` after that.
        ``queues`` defaults to this backend's queue.
        """
        jobs = self.claim_many(
            now=now,
            worker=worker,
            lease=lease,
            limit=1,
            queues=queues,
            workflows=workflows,
            fifo=fifo,
        )
        return jobs[0] if jobs else None

    def claim_many(  # noqa: PLR0913 - every option is keyword-only
        self,
        *,
        now: datetime,
        worker: str,
        lease: timedelta,
        limit: int,
        queues: Sequence[str] | None = None,
        workflows: Mapping[str, str] | None = None,
        fifo: bool = False,  # noqa: ARG002 - a stream is always in publish order
        wait: bool = True,
    ) -> list[ClaimedJob]:
        """Take over one entry of a dead consumer (alone), else read up to ``limit`` new ones.

        With ``wait``, blocks up to ``block`` seconds when no entry is waiting.
        ``queues`` defaults to this backend's queue.
        """
        keys = [self.stream(q) for q in (queues or [self.queue])]
        for key in keys:
            self._ensure_group(key)
        for _ in range(_MAX_SKIPS):
            reclaimed = self._reclaim(keys, worker, lease)
            entries = [reclaimed] if reclaimed else self._read(keys, worker, limit, wait=wait)
            if not entries:
                return []
            jobs = [
                job
                for entry in entries
                if (job := self._accept(entry, now=now, lease=lease, workflows=workflows))
            ]
            if jobs:
                return jobs
        return []

    def _read(self, keys: list[str], worker: str, count: int, *, wait: bool) -> list[_Entry]:
        block_ms = max(1, int(self.block * 1000))  # 0 would mean "forever" to Redis
        try:
            reply: Any = self.redis.xreadgroup(
                self.group,
                worker,
                dict.fromkeys(keys, ">"),
                count=count,
                block=block_ms if wait else None,
            )
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            for key in keys:  # the server lost the group (restarted without its data)
                self._ensure_group(key, again=True)
            return []
        return [
            (_text(key), entry_id, fields, 1)
            for key, entries in reply or []
            for entry_id, fields in entries
        ][:count]

    def _reclaim(self, keys: list[str], worker: str, lease: timedelta) -> _Entry | None:
        with self._lock:
            if time.monotonic() < self._next_reclaim:
                return None
            self._next_reclaim = time.monotonic() + self.reclaim_every
        idle_ms = max(1, int(lease.total_seconds() * 1000))
        self._forget_gone_consumers(keys)
        for key in keys:
            reply: Any = self.redis.xautoclaim(
                key, self.group, worker, min_idle_time=idle_ms, start_id="0-0", count=1
            )
            for entry_id, fields in reply[1]:
                pending: Any = self.redis.xpending_range(
                    key, self.group, min=entry_id, max=entry_id, count=1
                )
                deliveries = int(pending[0]["times_delivered"]) if pending else 1
                with self._lock:
                    self._next_reclaim = 0.0  # there may be more: look again next claim
                logger.warning(
                    "took over entry %s of %s from a dead consumer (delivery %d)",
                    _text(entry_id),
                    key,
                    deliveries,
                    extra={"action": "reclaim"},
                )
                return key, entry_id, fields, deliveries
        return None

    def _forget_gone_consumers(self, keys: list[str]) -> None:
        """Delete consumers that hold nothing and have not read for a long while.

        Every worker process joins the group under its own name; without this, the
        group would list every worker that ever ran. A live worker reads every
        ``block`` seconds, so only dead ones go idle for ``_GONE_AFTER_MS``.
        """
        with self._lock:
            if time.monotonic() < self._next_cleanup:
                return
            self._next_cleanup = time.monotonic() + _CLEANUP_EVERY_S
        for key in keys:
            consumers: Any = self.redis.xinfo_consumers(key, self.group)
            for consumer in consumers:
                if int(consumer["pending"]) == 0 and int(consumer["idle"]) > _GONE_AFTER_MS:
                    self.redis.xgroup_delconsumer(key, self.group, consumer["name"])

    def _accept(
        self,
        entry: _Entry,
        *,
        now: datetime,
        lease: timedelta,
        workflows: Mapping[str, str] | None,
    ) -> ClaimedJob | None:
        key, entry_id, fields, deliveries = entry
        try:
            message = decode_message(fields.get(JOB_FIELD))
        except PayloadError as exc:
            self._dead_letter_entry(key, entry_id, fields, str(exc))
            return None
        if workflows is not None and (message.workflow, message.version) not in workflows.items():
            self.defer_message(
                message,
                until=now + self.defer_delay,
                reason=(
                    f"no workflow {message.workflow!r} version {message.version!r} on the worker "
                    "that read it; offered again"
                ),
            )
            self._drop(key, entry_id)
            return None
        with self._lock:
            self._entries[message.id] = (key, entry_id)
        return self.hold(message, deliveries=deliveries, claimed_until=now + lease)

    def _dead_letter_entry(
        self, key: str, entry_id: bytes, fields: Mapping[bytes, bytes], error: str
    ) -> None:
        self.dead_letter_unreadable(
            queue=key.removeprefix(f"{self.prefix}:"),
            raw={
                "stream": key,
                "entry": _text(entry_id),
                "fields": {_text(k): _text(v) for k, v in fields.items()},
            },
            error=f"malformed entry {_text(entry_id)} on stream {key}: {error}",
        )
        self._drop(key, entry_id)

    def _drop(self, key: str, entry_id: bytes) -> None:
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(key, self.group, entry_id)
            pipe.xdel(key, entry_id)
            pipe.execute()

    def settle(self, job: ClaimedJob) -> None:
        """XACK and XDEL the entry that delivered ``job``: it is done."""
        self.settle_all([job])

    def settle_all(self, jobs: Sequence[ClaimedJob]) -> None:
        """XACK and XDEL the entries that delivered ``jobs``, in one round trip."""
        with self._lock:
            found = [self._entries.pop(job.id, None) for job in jobs]
        where = [entry for entry in found if entry is not None]
        if not where:
            return
        with self.redis.pipeline(transaction=False) as pipe:
            for key, entry_id in where:
                pipe.xack(key, self.group, entry_id)
                pipe.xdel(key, entry_id)
            pipe.execute()

    def renew_deliveries(self, job_ids: Collection[int], *, worker: str, until: datetime) -> int:  # noqa: ARG002 - Redis counts idle time itself
        """Reset the idle time of ``worker``'s entries for ``job_ids``; how many it holds."""
        with self._lock:
            held = [self._entries[i] for i in job_ids if i in self._entries]
        if not held:
            return 0
        keys = [key for key, _ in held]
        ids = [entry_id for _, entry_id in held]
        return int(self._renew(keys=keys, args=[self.group, worker, *ids]))

    def release_deliveries(self, job_ids: Collection[int], *, worker: str) -> int:  # noqa: ARG002 - the entries are this process's
        """Put the entries of ``job_ids`` back at the end of their streams, now."""
        released = 0
        for job_id in job_ids:
            message = self.forget(job_id)
            with self._lock:
                where = self._entries.pop(job_id, None)
            if message is None or where is None:
                continue
            key, entry_id = where
            with self.redis.pipeline(transaction=True) as pipe:
                pipe.xadd(key, {JOB_FIELD: encode_message(message), RUN_FIELD: str(message.run_id)})
                pipe.xack(key, self.group, entry_id)
                pipe.xdel(key, entry_id)
                pipe.execute()
            released += 1
        return released

    def next_due(
        self,
        *,
        now: datetime,
        queues: Sequence[str] | None = None,  # noqa: ARG002 - the read blocks by itself
        workflows: Mapping[str, str] | None = None,  # noqa: ARG002
    ) -> datetime | None:
        """Always ``now``: :meth:`claim` waits for entries itself (XREADGROUP BLOCK)."""
        return now

    # ── inspection ─────────────────────────────────────────────────────────────

    def streams(self) -> list[str]:
        """Every stream of this backend's prefix on the server."""
        found = {
            _text(key)
            for key in self.redis.scan_iter(match=f"{self.prefix}:*", count=100, _type="STREAM")
        }
        return sorted(found | {self.stream(self.queue)})

    def broker_run_ids(self, run_ids: Iterable[int]) -> set[int]:
        """Runs of ``run_ids`` with an entry in a stream (a job not done yet)."""
        wanted = {int(r) for r in run_ids}
        found: set[int] = set()
        if not wanted:
            return found
        for key in self.streams():
            start = "-"
            while True:
                page: Any = self.redis.xrange(key, min=start, max="+", count=_SCAN_PAGE)
                for _entry_id, fields in page:
                    run = fields.get(RUN_FIELD)
                    if run is not None and run.isdigit() and int(run) in wanted:
                        found.add(int(run))
                if len(page) < _SCAN_PAGE:
                    break
                start = "(" + _text(page[-1][0])
        return found

    def broker_pending(self) -> int:
        """Entries in the streams: every job published and not done."""
        return sum(int(self.redis.xlen(key)) for key in self.streams())

    def broker_clear(self) -> None:
        """Delete the streams (and their groups)."""
        keys = self.streams()
        if keys:
            self.redis.delete(*keys)
        with self._lock:
            self._groups.clear()
            self._entries.clear()

    def close(self) -> None:
        """Close the Redis connections."""
        self.redis.close()


def _text(value: Any) -> str:  # noqa: ANN401 - Redis replies are bytes or str
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


__all__ = ["RedisStreamsBackend", "Session"]
