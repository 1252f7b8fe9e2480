"""The structured fields of the engine's log records about a run.

A record about a run carries ``run_id``, ``workflow``, ``step`` and ``attempt`` as
``extra`` fields, so a JSON log line (:mod:`~durable_sa.telemetry.json_logs`) can be
filtered by run, workflow or step. Where the record is written knows only a job (a dead
letter, a defer, an error that gives the job back), :func:`job_fields` reads what the
job's payload says (its attempt, the index of its step) and the run it is given, and
names the step only when this process's definition is the one the run is pinned to: a
field is there when it is known, never guessed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from durable_sa.core.registry import registry
from durable_sa.core.units import FINISH_UNIT, compensate_unit

if TYPE_CHECKING:
    from durable_sa.core.snapshot import RunSnapshot


def run_fields(
    run: RunSnapshot, step: str | None = None, attempt: int | None = None
) -> dict[str, object]:
    """``run_id`` and ``workflow`` of ``run``, with ``step`` and ``attempt`` when given."""
    fields: dict[str, object] = {"run_id": run.id, "workflow": run.workflow_name}
    if step is not None:
        fields["step"] = step
    if attempt is not None:
        fields["attempt"] = attempt
    return fields


def job_fields(  # noqa: PLR0913 - what is known of the job, keyword-only past the payload
    run_id: int | None,
    kind: str,
    payload: object,
    run: RunSnapshot | None = None,
    *,
    job_id: int | None = None,
    action: str | None = None,
) -> dict[str, object]:
    """The fields of a record about a job of run ``run_id``: what is known of them.

    ``run`` is the job's run, if known; ``payload`` the job's raw payload (its
    ``attempt``, its step's index); ``job_id`` the job row's id, when it has one;
    ``action`` what the record says was done.
    """
    fields: dict[str, object] = {"run_id": run_id, "job_kind": kind}
    if job_id is not None:
        fields["job_id"] = job_id
    if action is not None:
        fields["action"] = action
    if run is not None:
        fields["workflow"] = run.workflow_name
    if not isinstance(payload, dict):
        return fields
    attempt = payload.get("attempt")
    if isinstance(attempt, int):
        fields["attempt"] = attempt
    if run is not None and (step := _unit(run, kind, payload)) is not None:
        fields["step"] = step
    return fields


def _unit(run: RunSnapshot, kind: str, payload: dict[str, object]) -> str | None:
    """The unit a job of ``run`` runs, if this process defines the run's version."""
    if kind == "finish":
        return FINISH_UNIT
    index = payload.get("index" if kind == "compensate" else "step_index")
    if not isinstance(index, int) or run.workflow_name not in registry:
        return None
    workflow = registry.get(run.workflow_name)
    if run.workflow_version is not None and workflow.version != run.workflow_version:
        return None
    if not 0 <= index < len(workflow.steps) or len(workflow.steps) != run.total_steps:
        return None
    name = workflow.steps[index].name
    return compensate_unit(name) if kind == "compensate" else name
