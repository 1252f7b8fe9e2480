"""Write plans as the parameters of the applier's statements.

The applier's statements are built once and take every value as a bound parameter: on
PostgreSQL a group's rows travel as JSON record sets (``json_to_recordset``), on SQLite
as executemany rows. This turns a plan's run, journal and job values into those rows,
in the form the columns' own types would store them.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from durable_sa.core.plan import RUN_WRITE_FIELDS

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from durable_sa.core.plan import WritePlan
    from durable_sa.core.snapshot import JournalWrite


def columns(
    prefix: str, rows: Sequence[Mapping[str, Any]], names: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """Rows as the JSON records a ``json_to_recordset`` parameter takes.

    Instants become ISO text in UTC and statuses their names, as the columns' own
    types would store them; JSON values are embedded as they are.
    """
    return {prefix: [{name: json_safe(row[name]) for name in names} for row in rows]}


def json_safe(value: Any) -> Any:  # noqa: ANN401 - any column value
    """A column value as JSON holds it: aware instants as UTC ISO text, enums by value."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            msg = f"durable-sa stores aware datetimes only; got naive {value!r}"
            raise ValueError(msg)
        return value.astimezone(UTC).isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    return value


def run_row(plan: WritePlan) -> dict[str, Any]:
    """The run columns a plan writes, with the run's id and the revision it was decided at."""
    run = plan.run
    if run is None or plan.run_id is None:  # pragma: no cover - callers check writes_run
        msg = "a plan without a run has no run row to write"
        raise ValueError(msg)
    row: dict[str, Any] = {name: getattr(run, name) for name in RUN_WRITE_FIELDS}
    row["id"] = plan.run_id
    row["revision"] = plan.revision
    return row


def journal_row(run_id: int | None, write: JournalWrite) -> dict[str, Any]:
    """The journal row of ``write`` for run ``run_id``."""
    return {
        "run_id": run_id,
        "step_id": write.step_id,
        "status": str(write.status),
        "result": write.result,
        "error": write.error,
        "attempt": write.attempt,
        "error_type": write.error_type,
        "traceback": write.traceback,
    }
