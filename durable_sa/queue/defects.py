"""Job rows that cannot be run as they stand, and why.

A job row carries a copy of its run's workflow name and version, and workers claim only
the versions they define. A row whose copy is missing (an empty ``workflow_name``, a
NULL ``workflow_version``: written by hand, by a script, or by an older release) would
match no worker's filter and wait forever, and its run would look as if it had a job,
so ``recover()`` would pass it by. Such rows are claimed like any other, dead-lettered
with the reason (:func:`row_defect`), and never count as a run's live job, so recovery
gives the run a sound one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import or_

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlalchemy import ColumnElement, Table


def defective(table: Table) -> ColumnElement[bool]:
    """SQL: the rows of ``table`` that :func:`row_defect` refuses."""
    return or_(
        table.c.workflow_name == "",
        table.c.workflow_version.is_(None),
        table.c.max_attempts < 1,
    )


def row_defect(row: Mapping[str, Any]) -> str | None:
    """Why the job ``row`` cannot be run as it stands, or ``None`` when it can."""
    found = []
    if not row["workflow_name"]:
        found.append("its workflow_name is empty")
    if row["workflow_version"] is None:
        found.append("its workflow_version is NULL")
    if row["max_attempts"] < 1:
        found.append(f"its max_attempts is {row['max_attempts']}")
    if not found:
        return None
    return (
        f"job {row['id']} cannot be run: {' and '.join(found)} (the row was not written by "
        "durable-sa, or was edited); `durable-sa recover` gives its run a sound job"
    )
