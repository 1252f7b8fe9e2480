"""Giving a failed job back reads its run once at most, and not at all when the database failed.

The run only names the log record's fields: a job whose database connection failed must
not wait on that database again before it is released or dead-lettered, and a job that
is dead-lettered after an error must not read its run twice.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from durable_sa import Durable, durable
from durable_sa.engine.delivery import job_failed
from durable_sa.results import JobOutcome

LEASE = timedelta(seconds=30)


def _run_reads(sa_engine: sa.Engine) -> list[str]:
    reads: list[str] = []

    def count(conn, cursor, statement: str, *args: object) -> None:
        del conn, cursor, args
        if statement.lstrip().upper().startswith("SELECT") and "durable_runs" in statement:
            reads.append(statement)

    sa.event.listen(sa_engine, "before_cursor_execute", count)
    return reads


@pytest.mark.parametrize(
    ("error", "expected_reads"),
    [
        (RuntimeError("a bug in the step's plumbing"), 1),
        (OperationalError("SELECT 1", {}, Exception("server closed the connection")), 0),
    ],
    ids=["bug", "database"],
)
def test_a_job_dead_lettered_after_an_error_reads_its_run_at_most_once(
    sa_engine: sa.Engine, error: Exception, expected_reads: int
) -> None:
    engine = Durable(sa_engine, max_job_attempts=1)
    engine.create_tables()
    durable("delivered").step("one", lambda ctx: 1)
    engine.start("delivered")
    claimed = engine.admin.claim(lease=LEASE)
    assert claimed is not None
    reads = _run_reads(sa_engine)
    assert job_failed(engine.shell, claimed, error) is JobOutcome.DEAD_LETTERED
    assert len(reads) == expected_reads
