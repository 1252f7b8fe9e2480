"""The structured fields of the engine's log records about a run.

A record about a run carries ``run_id``, ``workflow``, ``step`` and ``attempt`` as
``extra`` fields, so a JSON log line (:mod:`~durable_sa.telemetry.json_logs`) can be
filtered by run, workflow or step. Where the record is written knows only a job (a dead
letter, a defer, an error that gives the job back), :func:`job_fields` reads what the
job's payload says (its attempt, the index of its step) and the run the job is being
handled for (:func:`handling`), and names the step only when this process's definition
is the one the run is pinned to: a field is there when it is known, never guessed.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Final

from durable_sa.core.registry import registry
from durable_sa.core.units import FINISH_UNIT, compensate_unit

if TYPE_CHECKING:
    from collections.abc import Iterator

    from durable_sa.core.snapshot import RunSnapshot

_HANDLING: Final[ContextVar[RunSnapshot | None]] = ContextVar("durable_sa_handling", default=None)
"""The run whose job this thread (or task) is handling: what a log record about the job
may name (its workflow, its step) when the call that writes it has only the job."""


@contextmanager
def handling(run: RunSnapshot | None) -> Iterator[None]:
    """Records about jobs of ``run`` written meanwhile name its workflow and step."""
    token = _HANDLING.set(run)
    try:
        yield
    finally:
        _HANDLING.reset(token)


def handled_run(run_id: int) -> RunSnapshot | None:
    """The run being handled (:func:`handling`), if it is run ``run_id``."""
    handled = _HANDLING.get()
    return handled if handled is not None and handled.id == run_id else None


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


def job_fields(
    run_id: int | None, kind: str, payload: object, run: RunSnapshot | None = None
) -> dict[str, object]:
    """The fields of a record about a job of run ``run_id``: what is known of them.

    ``run`` is the run as read with the job, else the one being handled (when it is
    the job's); ``payload`` the job's raw payload (its ``attempt``, its step's index).
    """
    fields: dict[str, object] = {"run_id": run_id, "job_kind": kind}
    if run is None and run_id is not None:
        run = handled_run(run_id)
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
