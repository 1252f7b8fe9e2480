"""Buffered signals: kept by ``send`` for a run not yet waiting, taken by its next wait.

Rules:
- Every statement here runs with the run row held: ``send`` locks it before it buffers,
  and a run that suspends on a signal has just written its row (the compare-and-set is
  an ``UPDATE``, which holds the row on PostgreSQL; SQLite locks the whole database).
  So a signal sent while a worker reaches the wait is either seen by the worker's read
  of the buffer or finds the run suspended and is delivered at once, never both and
  never neither, at READ COMMITTED.
- Signals of one name are taken first in, first out (by ``id``), one per wait.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from sqlalchemy import bindparam, delete, insert, select

from durable_sa.core.snapshot import BufferedSignal
from durable_sa.store.models import signals_table

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.orm import Session

    from durable_sa.core.codec import JSONValue

signals = signals_table

_INSERT: Final = insert(signals).returning(signals.c.id)
_OLDEST: Final = (
    select(signals.c.id, signals.c.signal, signals.c.data)
    .where(signals.c.run_id == bindparam("run_id"), signals.c.signal == bindparam("signal"))
    .order_by(signals.c.id)
    .limit(1)
)
_DELETE: Final = delete(signals).where(signals.c.id == bindparam("signal_id"))


def buffer_signal(
    session: Session, run_id: int, signal: str, data: JSONValue, *, now: datetime
) -> int:
    """Keep ``signal`` for run ``run_id`` (whose row the caller holds); the row's id."""
    row = session.connection().execute(
        _INSERT, {"run_id": run_id, "signal": signal, "data": data, "created_at": now}
    )
    return int(row.scalar_one())


def oldest_signal(session: Session, run_id: int, signal: str) -> BufferedSignal | None:
    """The first signal buffered for the run under ``signal``, if any."""
    row = session.connection().execute(_OLDEST, {"run_id": run_id, "signal": signal}).first()
    if row is None:
        return None
    return BufferedSignal(id=int(row.id), signal=row.signal, data=row.data)


def consume_signal(session: Session, signal_id: int) -> None:
    """Delete a buffered signal that a wait has taken."""
    session.connection().execute(_DELETE, {"signal_id": signal_id})
