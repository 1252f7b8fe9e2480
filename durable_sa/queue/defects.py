"""Job rows that cannot be run as they stand, and why.

A job row carries a copy of its run's workflow name and version, and workers claim only
the versions they define. A row whose copy is missing or wrong (an empty
``workflow_name``, a NULL ``workflow_version`` where its run has one; written by hand,
by a script, or by an older release) would match no worker's filter and wait forever,
and its run would look as if it had a job, so ``recover()`` would pass it by. Such rows
are claimed by every worker, dead-lettered with the reason (:func:`job_defect`), and
never count as a run's live job, so recovery gives the run a sound one.

A NULL version on both the row and its run is no defect: the run was started before
definitions had versions and runs on any version of its workflow. Every worker claims
such a row; one that does not define the workflow defers it (``DEFER_DELAY``, no attempt
used) until one that does takes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, or_

from durable_sa.store.models import runs_table

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlalchemy import ColumnElement, Table

    from durable_sa.core.snapshot import RunSnapshot


def taken_by_any_worker(table: Table) -> ColumnElement[bool]:
    """SQL: rows a worker claims whatever workflows it defines (to run or dead-letter)."""
    return or_(
        table.c.workflow_name == "",
        table.c.workflow_version.is_(None),
        table.c.max_attempts < 1,
    )


def defective(table: Table) -> ColumnElement[bool]:
    """SQL: the rows of ``table`` that :func:`job_defect` refuses (their runs joined)."""
    runs = runs_table
    return or_(
        table.c.workflow_name == "",
        table.c.max_attempts < 1,
        and_(table.c.workflow_version.is_(None), runs.c.workflow_version.is_not(None)),
    )


def job_defect(row: Mapping[str, Any], run: RunSnapshot | None) -> str | None:
    """Why the job ``row`` of ``run`` cannot be run as it stands, or ``None`` when it can."""
    found = []
    if not row["workflow_name"]:
        found.append("its workflow_name is empty")
    if row["workflow_version"] is None and run is not None and run.workflow_version is not None:
        found.append(f"its workflow_version is NULL where its run's is {run.workflow_version!r}")
    if row["max_attempts"] < 1:
        found.append(f"its max_attempts is {row['max_attempts']}")
    if not found:
        return None
    return (
        f"job {row['id']} cannot be run: {' and '.join(found)} (the row was not written by "
        "durable-sa, or was edited); `durable-sa recover` gives its run a sound job"
    )
