"""Waiting for a run to end, from the caller's side.

On PostgreSQL a dedicated connection LISTENs for the ``durable_sa_runs`` notification
that the runs trigger sends when a run reaches a terminal status, and the status is
re-read on each one (and every second, in case a notification was missed). On SQLite
the status is polled, starting at 20 ms and backing off to half a second.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Final

import psycopg
from psycopg import sql

from durable_sa.errors import InvalidArgumentError, WaitTimeoutError
from durable_sa.store.notify import RUNS_CHANNEL
from durable_sa.worker.listen import conninfo_for

if TYPE_CHECKING:
    from durable_sa.facade import Durable
    from durable_sa.results import RunStatusSnapshot

_FIRST_POLL: Final = 0.02
_MAX_POLL: Final = 0.5
_RECHECK: Final = 1.0


def _seconds(timeout: float | timedelta | None) -> float | None:
    if timeout is None:
        return None
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
    if seconds < 0:
        msg = f"timeout must not be negative, not {timeout!r}"
        raise InvalidArgumentError(msg)
    return seconds


def wait_for_run(
    engine: Durable, run_id: int, timeout: float | timedelta | None
) -> RunStatusSnapshot:
    """Block until run ``run_id`` is terminal; raise :class:`WaitTimeoutError` after ``timeout``."""
    limit = _seconds(timeout)
    deadline = None if limit is None else time.monotonic() + limit
    snapshot = engine.status(run_id)  # RunNotFoundError at once for an unknown id
    if snapshot.is_terminal:
        return snapshot
    if engine.sa_engine.dialect.name == "postgresql":
        return _wait_listening(engine, run_id, deadline, limit)
    pause = _FIRST_POLL
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise WaitTimeoutError(run_id, limit or 0.0, snapshot.status)
        time.sleep(pause if remaining is None else min(pause, remaining))
        pause = min(pause * 2, _MAX_POLL)
        snapshot = engine.status(run_id)
        if snapshot.is_terminal:
            return snapshot


def _wait_listening(
    engine: Durable, run_id: int, deadline: float | None, limit: float | None
) -> RunStatusSnapshot:
    with psycopg.connect(conninfo_for(engine.sa_engine), autocommit=True) as conn:
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(RUNS_CHANNEL)))
        while True:
            snapshot = engine.status(run_id)  # after LISTEN: no ending can slip between
            if snapshot.is_terminal:
                return snapshot
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise WaitTimeoutError(run_id, limit or 0.0, snapshot.status)
            window = _RECHECK if remaining is None else min(_RECHECK, remaining)
            for note in conn.notifies(timeout=window):
                if note.payload == str(run_id):
                    break


async def wait_for_run_async(
    engine: Durable,
    run_id: int,
    timeout: float | timedelta | None,  # noqa: ASYNC109 - a deadline, as documented
) -> RunStatusSnapshot:
    """The asyncio twin of :func:`wait_for_run`; database reads run in a thread."""
    limit = _seconds(timeout)
    deadline = None if limit is None else time.monotonic() + limit
    snapshot = await asyncio.to_thread(engine.status, run_id)
    if snapshot.is_terminal:
        return snapshot
    if engine.sa_engine.dialect.name == "postgresql":
        return await _wait_listening_async(engine, run_id, deadline, limit)
    pause = _FIRST_POLL
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise WaitTimeoutError(run_id, limit or 0.0, snapshot.status)
        await asyncio.sleep(pause if remaining is None else min(pause, remaining))
        pause = min(pause * 2, _MAX_POLL)
        snapshot = await asyncio.to_thread(engine.status, run_id)
        if snapshot.is_terminal:
            return snapshot


async def _wait_listening_async(
    engine: Durable, run_id: int, deadline: float | None, limit: float | None
) -> RunStatusSnapshot:
    conn = await psycopg.AsyncConnection.connect(conninfo_for(engine.sa_engine), autocommit=True)
    async with conn:
        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(RUNS_CHANNEL)))
        while True:
            snapshot = await asyncio.to_thread(engine.status, run_id)
            if snapshot.is_terminal:
                return snapshot
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise WaitTimeoutError(run_id, limit or 0.0, snapshot.status)
            window = _RECHECK if remaining is None else min(_RECHECK, remaining)
            async for note in conn.notifies(timeout=window):
                if note.payload == str(run_id):
                    break
