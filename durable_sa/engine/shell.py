"""The engine's connection to the world: sessions, transactions, clock, queue backend.

Rules:
- A decision's transaction is either the caller's (``session=`` given: the caller
  commits, and nothing here retries) or the engine's own, short one.
- The engine's own transactions are retried on a deadlock or serialization failure
  (PostgreSQL) and on "database is locked" (SQLite); the work inside is re-run from the
  start, which is safe because it re-locks and re-checks the run.
- Reads outside a transaction hold no lock and release their connection at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

from sqlalchemy import Engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from durable_sa.core.stored import StoredForm, exact_form, text_form
from durable_sa.engine.applier import Applier
from durable_sa.errors import InvalidArgumentError
from durable_sa.store.controls import PausedCache

if TYPE_CHECKING:
    from durable_sa.queue.protocol import QueueBackend

logger = logging.getLogger(__name__)

T = TypeVar("T")

Clock = Callable[[], datetime]

_RETRYABLE_SQLSTATES: Final = frozenset({"40001", "40P01"})
_MAX_TRANSACTION_TRIES: Final = 6
SQLITE_BUSY_TIMEOUT_MS: Final = 30_000
_CONFIGURED: Final = "durable_sa_configured"


def system_clock() -> datetime:
    """The wall clock, timezone-aware UTC."""
    return datetime.now(UTC)


def is_retryable(exc: BaseException) -> bool:
    """True for errors a fresh attempt of the same transaction can clear."""
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if sqlstate in _RETRYABLE_SQLSTATES:
        return True
    return "database is locked" in str(orig) or "database table is locked" in str(orig)


def retry_pause(exc: DBAPIError, attempt: int) -> float | None:
    """Seconds to wait before trying an engine-owned transaction again; ``None``: give up.

    The one retry policy of the engine's own transactions, sync (:meth:`Shell.transaction`)
    and asyncio (:mod:`durable_sa.engine.async_bridge`) alike: up to
    ``_MAX_TRANSACTION_TRIES`` attempts, for retryable errors only, with a jittered
    exponential backoff from 10 ms.
    """
    if attempt >= _MAX_TRANSACTION_TRIES or not is_retryable(exc):
        return None
    logger.info(
        "transaction retried after %s (attempt %d)",
        type(exc.orig).__name__,
        attempt,
        extra={"action": "retry_transaction"},
    )
    return 0.01 * 2.0 ** (attempt - 1) * (1 + random.random())  # noqa: S311 - not crypto


def configure_sqlite(sa_engine: Engine) -> None:
    """Make SQLite fit for concurrent use: WAL, a busy timeout, foreign keys on.

    Applied once per DBAPI connection when it is first checked out from the pool, so
    connections the application opened before creating the engine are covered too. WAL is
    persistent in the database file; the others are per connection. For an
    ``AsyncEngine`` (aiosqlite) pass its ``sync_engine``: the same listener then runs on
    the adapted connection, inside SQLAlchemy's greenlet bridge.
    """
    if sa_engine.dialect.name != "sqlite" or event.contains(sa_engine, "checkout", _on_checkout):
        return
    event.listen(sa_engine, "checkout", _on_checkout)


def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:  # noqa: ANN401
    if record.info.get(_CONFIGURED):
        return
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA journal_mode")  # aiosqlite's adapted execute returns None
        mode = cursor.fetchone()
        if mode is not None and str(mode[0]).lower() not in {"wal", "memory"}:
            try:
                cursor.execute("PRAGMA journal_mode = WAL")
            except Exception:  # another connection holds a lock: a later one switches
                logger.info("could not switch SQLite to WAL yet", exc_info=True)
    finally:
        cursor.close()
    record.info[_CONFIGURED] = True


def stored_form_for(sa_engine: Engine) -> StoredForm:
    """What reading a JSON value back from ``sa_engine``'s database gives.

    It uses the engine's JSON serializer and deserializer (``json_serializer=`` of
    ``create_engine``), as the writes and reads do.
    """
    dialect = sa_engine.dialect
    serialize = getattr(dialect, "_json_serializer", None) or json.dumps
    deserialize = getattr(dialect, "_json_deserializer", None) or json.loads
    form = exact_form if dialect.name == "postgresql" else text_form
    return form(serialize, deserialize)


class HasShell(Protocol):
    """What long-running parts (a worker, ``wait()``) take: anything that has a shell.

    :class:`~durable_sa.Durable` is one; they need none of its user verbs.
    """

    @property
    def shell(self) -> Shell:
        """The engine's shell."""
        ...


class Shell:
    """Sessions, the clock and the backend, shared by every engine operation."""

    def __init__(  # noqa: PLR0913 - the engine's parts, keyword-only
        self,
        sa_engine: Engine,
        *,
        backend: QueueBackend,
        defer_delay: timedelta,
        clock: Clock | None = None,
        jitter: Callable[[], float] | None = None,
        lease: timedelta = timedelta(minutes=5),
        max_payload_bytes: int | None = None,
    ) -> None:
        """Wire the engine to ``sa_engine`` and ``backend``."""
        self.sa_engine = sa_engine
        self.backend = backend
        self.clock: Clock = clock or system_clock
        self.jitter: Callable[[], float] = jitter or random.random
        self.lease = lease
        self.defer_delay = defer_delay
        """How long a job whose workflow or version this process lacks waits to be offered again."""
        self.sessions = sessionmaker(bind=sa_engine, expire_on_commit=False)
        self.stored_form = stored_form_for(sa_engine)
        self.max_payload_bytes = max_payload_bytes
        """The largest JSON (in bytes) an input, a result or a signal may store; ``None``: any."""
        """A result as this database gives it back (see :mod:`durable_sa.core.stored`)."""
        self.paused = PausedCache(self.sessions)
        """Whether a workflow is paused, read cheaply on every job's way in."""
        self.applier = Applier(backend)
        """Applies plans for everyone who commits them alone (drain, start, resume...)."""
        self.crash_before_commit: Callable[[], None] | None = None
        """Test hook: called inside a job's transaction just before it commits; raising
        there rolls the whole outcome back, as a process dying at that instant would."""

    def about_to_commit(self) -> None:
        """Give the test hook its chance to 'crash' (a no-op in production)."""
        if self.crash_before_commit is not None:
            self.crash_before_commit()

    @property
    def dialect(self) -> str:
        """``postgresql`` or ``sqlite``."""
        return self.sa_engine.dialect.name

    def now(self) -> datetime:
        """The engine's clock, always aware UTC."""
        value = self.clock()
        if value.tzinfo is None:
            msg = "the engine's clock must return timezone-aware datetimes"
            raise InvalidArgumentError(msg)
        return value.astimezone(UTC)

    @contextlib.contextmanager
    def reading(self) -> Iterator[Session]:
        """A session for lock-free reads; its connection goes back to the pool at exit."""
        with self.sessions() as session:
            yield session

    def transaction(
        self,
        work: Callable[[Session], T],
        *,
        session: Session | None = None,
        autocommit: bool = False,
    ) -> T:
        """Run ``work`` in ``session``'s transaction, or in a fresh one that commits.

        ``autocommit`` runs ``work`` on a connection where each statement commits by
        itself: one round trip instead of three, for work that is exactly one write
        statement (the applier says when: :meth:`Applier.one_statement`).

        The engine's own transactions are retried when the database reports a deadlock,
        a serialization failure or a locked SQLite file.
        """
        if session is not None:
            return work(session)
        attempt = 1
        while True:
            try:
                if autocommit:
                    return self._autocommit(work)
                with self.sessions.begin() as own:
                    return work(own)
            except DBAPIError as exc:
                pause = retry_pause(exc, attempt)
                if pause is None:
                    raise
                time.sleep(pause)
                attempt += 1

    def _autocommit(self, work: Callable[[Session], T]) -> T:
        with (
            self.sa_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn,
            Session(bind=conn, expire_on_commit=False) as own,
        ):
            result = work(own)
            own.commit()
            return result
