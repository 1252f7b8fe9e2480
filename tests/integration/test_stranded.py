"""A run whose job was dead-lettered is shown stranded, and recover or requeue resolves it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from durable_sa import durable
from durable_sa.testing import drain

if TYPE_CHECKING:
    from durable_sa import Durable


def _strand(engine: Durable, reason: str) -> tuple[int, int]:
    durable("strand-wf").step("a", lambda ctx: 1).step("b", lambda ctx: 2)
    run_id = engine.start("strand-wf").run_id
    job = engine.admin.claim()
    assert job is not None
    engine.backend.dead_letter(job, error=reason)
    (letter,) = engine.admin.dead_letters()
    return run_id, letter.id


def test_a_dead_lettered_run_is_stranded_with_the_reason(engine: Durable) -> None:
    run_id, letter_id = _strand(engine, "crashed its worker 5 times")
    snap = engine.status(run_id)
    assert snap.status == "running"
    assert snap.stranded == f"dead letter {letter_id}: crashed its worker 5 times"
    (listed,) = engine.list()
    assert listed.stranded == snap.stranded


def test_recover_gets_it_going_and_resolves_its_dead_letter(engine: Durable) -> None:
    run_id, letter_id = _strand(engine, "lost")
    assert engine.recover() == 1
    assert engine.status(run_id).stranded is None  # it has a job again
    assert engine.admin.dead_letters() == []  # open ones only
    (resolved,) = engine.admin.dead_letters(include_resolved=True)
    assert (resolved.id, resolved.resolved_by) == (letter_id, "recover")
    assert resolved.resolved_at is not None
    drain(engine)
    assert engine.status(run_id).status == "completed"


def test_requeue_resolves_the_dead_letter_and_keeps_it_readable(engine: Durable) -> None:
    run_id, letter_id = _strand(engine, "lost")
    engine.admin.requeue(letter_id)
    assert engine.status(run_id).stranded is None
    (resolved,) = engine.admin.dead_letters(include_resolved=True)
    assert (resolved.resolved_by, resolved.error) == ("requeue", "lost")
    drain(engine)
    assert engine.status(run_id).status == "completed"


def test_a_run_with_a_job_is_not_stranded_by_an_old_dead_letter(engine: Durable) -> None:
    run_id, _ = _strand(engine, "a stale duplicate crashed")
    engine.recover()  # the run has a job; a second letter arrives for a duplicate
    durable_job = engine.admin.claim()
    assert durable_job is not None
    engine.backend.release(durable_job, error="retry", retry_at=engine.now)
    assert engine.status(run_id).stranded is None
