"""Limits on active runs, applied: places taken and given back, pending runs admitted.

Only runs of workflows with limits come here; other starts keep their one statement.

- A limited start inserts its run ``pending``, locks its workflow's count (and its
  key's), then admits: the same routine that runs when a place is given back. So a run
  begins by one path, in priority then arrival order, whoever frees the place.
- A run that ends holding a place (:attr:`WritePlan.release`) gives it back in the
  transaction that writes its end, and the pending runs that may begin now are admitted
  there: their status moves ``pending`` → ``running`` and their first job is queued.
  A pending run is never left behind while a place is free.
- Such ends join a worker's group commit (:mod:`durable_sa.worker.pipeline`): a group
  gives back all its places at once, workflow by workflow in name order (each
  workflow's row once, then its keys' rows), and admits only when a run waits. On
  PostgreSQL the group's own statement gives them back
  (:mod:`durable_sa.store.slot_function`) and names the workflows to admit runs of
  (:func:`admit_given_back`); a statement that is its own transaction raises
  :class:`AdmissionNeededError` instead, and is applied again in a transaction. On
  SQLite :func:`release` gives them back, two statements per workflow.

The decisions (room under a count) are :mod:`durable_sa.core.admission`'s; the locks and
the statements are :mod:`durable_sa.store.slots`'.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Final

import attrs
from sqlalchemy import bindparam, update

from durable_sa.core.admission import WORKFLOW_KEY, Count
from durable_sa.core.jobs import AdvanceJob, JobSpec
from durable_sa.core.status import RunEvent, RunStatus, next_status
from durable_sa.store import slots
from durable_sa.store.models import runs_table

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from sqlalchemy.orm import Session

    from durable_sa.core.plan import NewRun, Release
    from durable_sa.queue.protocol import QueueBackend

runs = runs_table

_BEGIN: Final = (
    update(runs)
    .where(runs.c.id == bindparam("run_id"), runs.c.status == RunStatus.PENDING)
    .values(
        status=next_status(RunStatus.PENDING, RunEvent.BEGIN),
        revision=runs.c.revision + 1,
        updated_at=bindparam("now", type_=runs.c.updated_at.type),
    )
    .returning(runs.c.workflow_name, runs.c.workflow_version, runs.c.priority)
)


def start_limited(
    session: Session, new: NewRun, run_id: int, *, backend: QueueBackend, now: datetime
) -> RunStatus:
    """Count the new pending run ``run_id`` and admit what may begin; its status after."""
    limits = new.limits
    if limits is None:  # pragma: no cover - the caller checked
        return RunStatus.RUNNING
    conn = session.connection()
    workflow = slots.lock_count(conn, new.workflow_name, WORKFLOW_KEY, limits.max_active)
    if limits.keyed(new.concurrency_key) and new.concurrency_key is not None:
        slots.lock_count(conn, new.workflow_name, new.concurrency_key, limits.max_active_per_key)
    begun = admit(session, new.workflow_name, workflow, backend=backend, now=now)
    return RunStatus.RUNNING if run_id in begun else RunStatus.PENDING


class AdmissionNeededError(Exception):
    """A strict group statement gave back a place a pending run may take: nothing applied.

    The statement was its own transaction, which cannot also hold the admission's
    statements; the caller applies the group again in a transaction.
    """


@attrs.frozen
class GivenBack:
    """A workflow whose places a group gave back while a pending run may begin now."""

    workflow: str
    count: Count
    """Its count after the give-back, still locked by the transaction."""


def given_back(text: str | None) -> list[GivenBack]:
    """The workflows the give-back function names (JSON, in name order)."""
    return [
        GivenBack(item["workflow"], Count(active=int(item["active"]), limit=item["limit"]))
        for item in json.loads(text or "[]")
    ]


def admit_given_back(
    session: Session, given: Iterable[GivenBack], *, backend: QueueBackend, now: datetime
) -> None:
    """Admit the pending runs that may begin under the places a group gave back."""
    for workflow in given:
        admit(session, workflow.workflow, workflow.count, backend=backend, now=now)


def release(
    session: Session, freed: Iterable[Release], *, backend: QueueBackend, now: datetime
) -> None:
    """Give back the places of the runs that ended, and admit the runs that may begin now.

    SQLite's way (PostgreSQL gives them back in the group's statement). Workflows are
    taken in name order (see :mod:`durable_sa.store.slots` for why).
    """
    conn = session.connection()
    by_workflow: dict[str, Counter[str | None]] = defaultdict(Counter)
    for place in freed:
        by_workflow[place.workflow_name][place.concurrency_key] += 1
    for name in sorted(by_workflow):
        ended = by_workflow[name]
        workflow = slots.give_back(conn, name, ended.total())
        if workflow is None:  # pragma: no cover - a limited run's start created the row
            continue
        keyed = {key: n for key, n in ended.items() if key is not None}
        if slots.give_back_keys(conn, name, keyed, now) and workflow.has_room:
            admit(session, name, workflow, backend=backend, now=now)


def admit_waiting(
    session: Session, workflow_name: str, *, backend: QueueBackend, now: datetime
) -> None:
    """Admit the pending runs of ``workflow_name`` that may begin now (a debounce ended)."""
    workflow = slots.lock_as_is(session.connection(), workflow_name, WORKFLOW_KEY)
    if workflow is not None:
        admit(session, workflow_name, workflow, backend=backend, now=now)


def admit(
    session: Session, workflow_name: str, workflow: Count, *, backend: QueueBackend, now: datetime
) -> list[int]:
    """Begin pending runs of ``workflow_name`` while its locked count has room.

    Each pick is the pending run with the lowest (priority, id) whose key has room;
    returns the ids begun.
    """
    conn = session.connection()
    begun: list[int] = []
    active = workflow.active
    while Count(active=active, limit=workflow.limit).has_room:
        picked = slots.next_pending(conn, workflow_name, now)
        if picked is None:
            break
        run_id, key = picked
        row = conn.execute(_BEGIN, {"run_id": run_id, "now": now}).first()
        if row is None:  # pragma: no cover - the row is locked and was pending
            break
        slots.take(conn, workflow_name, key)
        backend.enqueue(
            session,
            [
                JobSpec(
                    payload=AdvanceJob(run_id=run_id, step_index=0),
                    available_at=now,
                    workflow=row.workflow_name,
                    version=row.workflow_version,
                    priority=int(row.priority),
                )
            ],
        )
        begun.append(run_id)
        active += 1
    return begun
