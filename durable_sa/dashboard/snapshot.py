"""``one_snapshot``: every read of one page in one read transaction, so it never contradicts itself.

A page reads a run, then its journal, then its children; read in separate transactions a
worker's commit can land in between, and the page shows ``running 4/6`` above a timeline
where ``ship`` has completed. Here a page's reads share one session whose transaction
sees one snapshot of the database: REPEATABLE READ (and READ ONLY) on PostgreSQL; on
SQLite an explicit ``BEGIN``, so the first read starts a read transaction that the
following ones share (Python's sqlite3 opens none for a ``SELECT`` by itself). A read
transaction takes no lock on either database: workers go on while a page renders.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.orm import Session

    from durable_sa.engine.shell import Shell


@contextmanager
def one_snapshot(shell: Shell) -> Iterator[Session]:
    """A session whose reads all see the database as of its first read; rolled back at exit."""
    with shell.sessions() as session:
        if shell.dialect == "postgresql":
            session.connection(
                execution_options={
                    "isolation_level": "REPEATABLE READ",
                    "postgresql_readonly": True,
                }
            )
        else:
            conn = session.connection()
            # Unless the application's engine begins SQLite transactions itself already.
            if not getattr(conn.connection.dbapi_connection, "in_transaction", False):
                conn.exec_driver_sql("BEGIN")
        try:
            yield session
        finally:
            session.rollback()
