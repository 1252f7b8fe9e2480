"""asyncio applications: the sync engine calls, run from an event loop.

Rules:
- ONE PATH: an ``_async`` call runs the sync call itself, never a copy of its logic.
  With the caller's ``AsyncSession`` it runs through :meth:`AsyncSession.run_sync` on
  that session's sync ``Session``, inside SQLAlchemy's greenlet bridge: every statement
  goes through the async driver (asyncpg, psycopg async, aiosqlite) and joins the
  caller's transaction, which the caller commits (or rolls back) as with a sync
  ``Session``. Without a session, on an ``AsyncEngine``: the same in a fresh
  ``AsyncSession`` that commits, retried as the engine's own sync transactions are
  (:func:`~durable_sa.engine.shell.retry_pause`). On a plain ``Engine``: the sync call in
  a worker thread (:func:`asyncio.to_thread`).
- A sync call refuses an ``AsyncSession`` and an ``_async`` call a sync ``Session``, with
  a :class:`~durable_sa.errors.WrongSessionError` that names the call to use instead.
- Nothing here imports ``sqlalchemy.ext.asyncio`` (which needs greenlet) until asyncio is
  used: ``import durable_sa`` works without the ``asyncio`` extra. An object is an
  ``AsyncSession`` or an ``AsyncEngine`` only if that module is loaded, so it is looked
  up in ``sys.modules``.
"""

from __future__ import annotations

import asyncio
import functools
import sys
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from sqlalchemy import create_engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from durable_sa.engine.shell import retry_pause
from durable_sa.errors import InvalidArgumentError, WrongSessionError

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType

    from sqlalchemy import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

    from durable_sa.engine.shell import Shell

T = TypeVar("T")

_ASYNCIO_MODULE: Final = "sqlalchemy.ext.asyncio"
_SYNC_DRIVERS: Final = {"postgresql": "postgresql+psycopg", "sqlite": "sqlite"}
"""The sync driver a ``Durable`` on an ``AsyncEngine`` uses for workers, ``wait`` and the
sync calls, by database: psycopg 3 (LISTEN/NOTIFY wake-ups) and the standard sqlite3."""


def _asyncio_module() -> ModuleType | None:
    return sys.modules.get(_ASYNCIO_MODULE)


def is_async_session(session: object) -> bool:
    """True for an ``AsyncSession`` (or an ``async_scoped_session``)."""
    return _async_session(session) is not None


def _async_session(session: object) -> AsyncSession | None:
    """``session`` as an ``AsyncSession`` (a scoped one's current session), else ``None``."""
    module = _asyncio_module()
    if module is None:
        return None
    if isinstance(session, module.async_scoped_session):
        return cast("AsyncSession", session())
    if isinstance(session, module.AsyncSession):
        return cast("AsyncSession", session)
    return None


def as_async_engine(engine: object) -> AsyncEngine | None:
    """``engine`` if it is an ``AsyncEngine``, else ``None``."""
    module = _asyncio_module()
    if module is not None and isinstance(engine, module.AsyncEngine):
        return cast("AsyncEngine", engine)
    return None


def refuse_async_session(session: object, verb: str) -> None:
    """Raise if a sync call ``verb`` was given an ``AsyncSession``.

    Raises:
        WrongSessionError: ``session`` is an ``AsyncSession``.

    """
    if session is not None and is_async_session(session):
        msg = (
            f"engine.{verb}() was given an AsyncSession, which it cannot use; in asyncio "
            f"code call `await engine.{verb}_async(..., session=session)`: it joins the "
            "AsyncSession's transaction the same way"
        )
        raise WrongSessionError(msg)


def sync_engine_for(async_engine: AsyncEngine) -> Engine:
    """A sync ``Engine`` on the same database as ``async_engine``.

    The URL is the async engine's (credentials, host, database and query kept) with the
    sync driver of the same database: ``postgresql+psycopg`` for asyncpg and psycopg
    async, the standard ``sqlite3`` for aiosqlite. The JSON serializer and deserializer
    and the execution options (``schema_translate_map``...) are carried over.

    Raises:
        InvalidArgumentError: the database is neither PostgreSQL nor a SQLite file.

    """
    url = async_engine.url
    dialect = async_engine.dialect
    driver = _SYNC_DRIVERS.get(dialect.name)
    if driver is None:
        msg = (
            f"durable-sa runs on PostgreSQL and SQLite, not on {dialect.name!r} ({url.drivername})"
        )
        raise InvalidArgumentError(msg)
    if dialect.name == "sqlite" and url.database in {None, "", ":memory:"}:
        msg = (
            "an in-memory SQLite AsyncEngine cannot be shared with the sync engine that "
            "workers use (each would see its own empty database); use a database file, "
            "e.g. sqlite+aiosqlite:///app.db"
        )
        raise InvalidArgumentError(msg)
    options: dict[str, Any] = {}
    for name in ("json_serializer", "json_deserializer"):
        value = getattr(dialect, f"_{name}", None)
        if value is not None:
            options[name] = value
    sync = create_engine(url.set(drivername=driver), **options)
    given = async_engine.sync_engine.get_execution_options()
    return sync.execution_options(**given) if given else sync


class AsyncBridge:
    """Runs the engine's sync calls for asyncio code (see the module's rules)."""

    def __init__(self, shell: Shell, async_engine: AsyncEngine | None) -> None:
        """Run calls on ``async_engine`` when there is one, else on ``shell``'s engine."""
        self.shell = shell
        self.async_engine = async_engine

    async def call(
        self,
        method: Callable[..., T],
        /,
        *args: Any,  # noqa: ANN401 - the sync call's own arguments
        session: object | None = None,
        **kwargs: Any,  # noqa: ANN401 - the sync call's own keyword arguments
    ) -> T:
        """``await method(*args, session=..., **kwargs)``: a sync call, run for asyncio.

        ``method`` is a sync call that takes ``session=`` (``Durable.start``...); it gets
        ``session``'s sync ``Session``, an ``AsyncEngine`` session's, or ``None`` (its
        own transaction, in a worker thread).

        Raises:
            WrongSessionError: ``session`` is not an ``AsyncSession``.

        """
        run = functools.partial(method, *args, **kwargs)
        verb = getattr(method, "__name__", "call")
        if session is not None:
            joined = _async_session(session)
            if joined is None:
                raise _not_async(session, verb)
            return await joined.run_sync(lambda sync: run(session=sync))
        if self.async_engine is None:
            return await asyncio.to_thread(run, session=None)
        return await self._own_transaction(run)

    async def read(self, query: Callable[[Session], T]) -> T:
        """``query(session)`` on a lock-free read session of the engine, for asyncio."""
        if self.async_engine is None:
            return await asyncio.to_thread(self._read_sync, query)
        from sqlalchemy.ext.asyncio import AsyncSession  # noqa: PLC0415 - needs greenlet

        async with AsyncSession(self.async_engine) as own:
            return await own.run_sync(query)

    def _read_sync(self, query: Callable[[Session], T]) -> T:
        with self.shell.reading() as session:
            return query(session)

    async def _own_transaction(self, run: Callable[..., T]) -> T:
        """``run(session=...)`` in a fresh ``AsyncSession`` that commits, retried as needed."""
        from sqlalchemy.ext.asyncio import AsyncSession  # noqa: PLC0415 - needs greenlet

        attempt = 1
        while True:
            try:
                async with (
                    AsyncSession(self.async_engine, expire_on_commit=False) as own,
                    own.begin(),
                ):
                    return await own.run_sync(lambda sync: run(session=sync))
            except DBAPIError as exc:
                pause = retry_pause(exc, attempt)
                if pause is None:
                    raise
                await asyncio.sleep(pause)
                attempt += 1


def _not_async(session: object, verb: str) -> WrongSessionError:
    if isinstance(session, Session):
        msg = (
            f"engine.{verb}_async() was given a sync Session; it takes an AsyncSession. "
            f"With a sync Session call `engine.{verb}(..., session=session)`"
        )
    else:
        msg = (
            f"engine.{verb}_async() takes an SQLAlchemy AsyncSession as session=, "
            f"not {type(session).__name__}"
        )
    return WrongSessionError(msg)
