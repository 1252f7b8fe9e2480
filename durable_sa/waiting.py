"""Waiting for a run to end, from the caller's side.

On PostgreSQL (through psycopg 3) a connection of the application's engine, detached
from its pool, LISTENs for the ``durable_sa_runs`` notification that the runs trigger
sends when a run reaches a terminal status; the status is re-read on each one, and every
second in case one was missed. Elsewhere (SQLite, other drivers) the status is polled,
starting at 20 ms and backing off to half a second.

One logic, two shells: :class:`_Deadline` decides how long to wait next (or that time
is up); :func:`wait_for_run` and :func:`wait_for_run_async` only do the waiting.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from sqlalchemy import select

from durable_sa.core.status import RunStatus
from durable_sa.errors import InvalidArgumentError, RunNotFoundError, WaitTimeoutError
from durable_sa.runtime.listen import ListeningConnection, can_listen, listening
from durable_sa.store.models import runs_table
from durable_sa.store.notify import RUNS_CHANNEL

if TYPE_CHECKING:
    from durable_sa.engine.shell import Shell

_FIRST_POLL: Final = 0.02
_MAX_POLL: Final = 0.5
_RECHECK: Final = 1.0


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
    deadline = _Deadline(run_id, timeout, listening=can_listen(shell.sa_engine))
    with listening(shell.sa_engine, [RUNS_CHANNEL]) as conn:
        while True:
            status = _status(shell, run_id)  # after LISTEN: no ending slips in between
            if status.is_terminal:
                return status
            window = deadline.next_wait(status)
            if conn is None:
                time.sleep(window)
            else:
                conn.wait_for(str(run_id), window)


async def wait_for_run_async(
    shell: Shell,
    run_id: int,
    timeout: float | timedelta | None,  # noqa: ASYNC109 - a deadline, as documented
) -> RunStatus:
    """The asyncio twin of :func:`wait_for_run`; each blocking call runs in a thread.

    The same connection and the same slices, so the event loop keeps running. A canceled
    wait closes its connection once the slice in flight (at most a second)
    has ended.
    """
    deadline = _Deadline(run_id, timeout, listening=can_listen(shell.sa_engine))
    conn = (
        await asyncio.to_thread(ListeningConnection, shell.sa_engine, [RUNS_CHANNEL])
        if deadline.listening
        else None
    )
    try:
        while True:
            status = await asyncio.to_thread(_status, shell, run_id)
            if status.is_terminal:
                return status
            window = deadline.next_wait(status)
            if conn is None:
                await asyncio.sleep(window)
            else:
                await asyncio.to_thread(conn.wait_for, str(run_id), window)
    finally:
        if conn is not None:
            threading.Thread(target=conn.close, name="durable-sa-unlisten", daemon=True).start()


def _status(shell: Shell, run_id: int) -> RunStatus:
    """Only the run's status: polling reads one column, not the whole snapshot."""
    with shell.reading() as session:
        value = session.scalar(select(runs_table.c.status).where(runs_table.c.id == run_id))
    if value is None:
        raise RunNotFoundError(run_id)
    return RunStatus(value)
