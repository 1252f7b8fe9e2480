"""Waiting for a run to end, from the caller's side.

On PostgreSQL a dedicated connection LISTENs for the ``durable_sa_runs`` notification
that the runs trigger sends when a run reaches a terminal status; the status is re-read
on each one, and every second in case one was missed. On SQLite the status is polled,
starting at 20 ms and backing off to half a second.

One logic, two shells: :class:`_Deadline` decides how long to wait next (or that time
is up); :func:`wait_for_run` and :func:`wait_for_run_async` only do the waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Final

import psycopg
from psycopg import sql
from sqlalchemy import select

from durable_sa.core.status import RunStatus
from durable_sa.errors import InvalidArgumentError, RunNotFoundError, WaitTimeoutError
from durable_sa.runtime.listen import conninfo_for
from durable_sa.store.models import runs_table
from durable_sa.store.notify import RUNS_CHANNEL

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from durable_sa.engine.shell import Shell

_FIRST_POLL: Final = 0.02
_MAX_POLL: Final = 0.5
_RECHECK: Final = 1.0
_LISTEN = sql.SQL("LISTEN {}").format(sql.Identifier(RUNS_CHANNEL))


class _Deadline:
    """How long to wait before looking at the run again, and when to give up."""

    def __init__(self, run_id: int, timeout: float | timedelta | None, *, listening: bool) -> None:
        if timeout is None:
            self.limit: float | None = None
        else:
            limit = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
            if limit < 0:
                msg = f"timeout must not be negative, not {timeout!r}"
                raise InvalidArgumentError(msg)
            self.limit = limit
        self.run_id = run_id
        self.listening = listening
        self.ends = None if self.limit is None else time.monotonic() + self.limit
        self.pause = _FIRST_POLL

    def next_wait(self, status: RunStatus) -> float:
        """Seconds to wait before looking again at a run that is still ``status``.

        Raises:
            WaitTimeoutError: the timeout has passed.

        """
        remaining = None if self.ends is None else self.ends - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise WaitTimeoutError(self.run_id, self.limit or 0.0, status)
        if self.listening:
            window = _RECHECK
        else:
            window, self.pause = self.pause, min(self.pause * 2, _MAX_POLL)
        return window if remaining is None else min(window, remaining)


def wait_for_run(shell: Shell, run_id: int, timeout: float | timedelta | None) -> RunStatus:
    """Block until run ``run_id`` is terminal; its status.

    Raises:
        WaitTimeoutError: ``timeout`` passed first.
        RunNotFoundError: there is no run ``run_id``.

    """
    listening = shell.dialect == "postgresql"
    deadline = _Deadline(run_id, timeout, listening=listening)
    with _listen(shell) as conn:
        while True:
            status = _status(shell, run_id)  # after LISTEN: no ending slips in between
            if status.is_terminal:
                return status
            window = deadline.next_wait(status)
            if conn is None:
                time.sleep(window)
                continue
            for note in conn.notifies(timeout=window):
                if note.payload == str(run_id):
                    break


async def wait_for_run_async(
    shell: Shell,
    run_id: int,
    timeout: float | timedelta | None,  # noqa: ASYNC109 - a deadline, as documented
) -> RunStatus:
    """The asyncio twin of :func:`wait_for_run`; database reads run in a thread."""
    listening = shell.dialect == "postgresql"
    deadline = _Deadline(run_id, timeout, listening=listening)
    async with _listen_async(shell) as conn:
        while True:
            status = await asyncio.to_thread(_status, shell, run_id)
            if status.is_terminal:
                return status
            window = deadline.next_wait(status)
            if conn is None:
                await asyncio.sleep(window)
                continue
            async for note in conn.notifies(timeout=window):
                if note.payload == str(run_id):
                    break


def _status(shell: Shell, run_id: int) -> RunStatus:
    """Only the run's status: polling reads one column, not the whole snapshot."""
    with shell.reading() as session:
        value = session.scalar(select(runs_table.c.status).where(runs_table.c.id == run_id))
    if value is None:
        raise RunNotFoundError(run_id)
    return RunStatus(value)


@contextlib.contextmanager
def _listen(shell: Shell) -> Iterator[psycopg.Connection | None]:
    if shell.dialect != "postgresql":
        yield None
        return
    with psycopg.connect(conninfo_for(shell.sa_engine), autocommit=True) as conn:
        conn.execute(_LISTEN)
        yield conn


@contextlib.asynccontextmanager
async def _listen_async(shell: Shell) -> AsyncIterator[psycopg.AsyncConnection | None]:
    if shell.dialect != "postgresql":
        yield None
        return
    conn = await psycopg.AsyncConnection.connect(conninfo_for(shell.sa_engine), autocommit=True)
    async with conn:
        await conn.execute(_LISTEN)
        yield conn
