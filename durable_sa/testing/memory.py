"""A throwaway database held in memory, for unit tests: no server, and the engine's own code.

Procrastinate ships an in-memory connector that stands in for PostgreSQL. durable-sa needs
no second implementation of its queue to give users the same: :func:`memory_engine`
returns an SQLAlchemy ``Engine`` on a private SQLite database, and the engine runs on it
exactly as it runs in production (the same statements, applier and claims).

Where it lives: a SQLite file in ``/dev/shm`` (memory, on Linux), or in the temporary
directory where the system has no such place. SQLite's own ``:memory:`` databases were
tried and not chosen: a private one is seen by one connection only (no worker thread can
join it), and a shared-cache one locks whole tables and fails readers at once instead of
letting them wait, which turns a test with a worker into a test of lock errors. A file in
memory keeps SQLite's ordinary locking, WAL and busy timeout.

The file is deleted when the ``Engine`` is garbage-collected or :func:`dispose_memory`
is called; two engines never share one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
import weakref
from pathlib import Path
from typing import Final

from sqlalchemy import Engine, create_engine

_SHARED_MEMORY: Final = Path("/dev/shm")  # noqa: S108 - memory-backed, per-user file names
_SUFFIXES: Final = ("", "-wal", "-shm", "-journal")
_FINALIZERS: Final[weakref.WeakKeyDictionary[Engine, weakref.finalize[[Path], Engine]]] = (
    weakref.WeakKeyDictionary()
)


def _directory() -> Path:
    if _SHARED_MEMORY.is_dir() and os.access(_SHARED_MEMORY, os.W_OK):
        return _SHARED_MEMORY
    return Path(tempfile.gettempdir())


def _remove(path: Path) -> None:
    for suffix in _SUFFIXES:
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()


def memory_engine(*, echo: bool = False) -> Engine:
    """An ``Engine`` on a fresh, private SQLite database kept in memory.

    >>> from durable_sa import Durable
    >>> engine = Durable(memory_engine())
    >>> engine.create_tables()
    """
    path = _directory() / f"durable-sa-{os.getpid()}-{uuid.uuid4().hex}.sqlite"
    sa_engine = create_engine(f"sqlite:///{path}", echo=echo)
    _FINALIZERS[sa_engine] = weakref.finalize(sa_engine, _remove, path)
    return sa_engine


def dispose_memory(sa_engine: Engine) -> None:
    """Close ``sa_engine``'s connections and delete its database now."""
    sa_engine.dispose()
    finalizer = _FINALIZERS.pop(sa_engine, None)
    if finalizer is not None:
        finalizer()
