"""Regressions found in review: each test is named after the defect it pins down."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from durable_sa import Durable, DurableContext, DurableError, WorkflowRun, durable
from durable_sa.testing import drain, pending_jobs
from tests.integration.helpers import count, far_future, get_run


class ReviewBase(DeclarativeBase):
    pass


class Voucher(ReviewBase):
    __tablename__ = "review_vouchers"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(unique=True)


# ── 1. transactional step: a write that fails at the engine's flush wedges the run ──


def test_transactional_step_flush_error_fails_the_step_instead_of_wedging_the_run(
    engine: Durable,
) -> None:
    """The handler only ``add``s; the engine's own ``tx.flush()`` hits the constraint.

    Expected: the step fails like any handler exception (max_retries=1 → failed, the
    compensator of the step before runs). Actual: the IntegrityError escapes
    ``_advance_transactional``, ``run_job`` releases the job 5 times and dead-letters
    it, and the run stays ``running`` forever (``recover()`` just loops it).
    """
    ReviewBase.metadata.create_all(engine.sa_engine)
    with Session(engine.sa_engine) as session, session.begin():
        session.add(Voucher(code="SPRING"))
    undone: list[str] = []

    def redeem(ctx: DurableContext) -> str:
        ctx.session.add(Voucher(code="SPRING"))  # violates the unique constraint at flush
        return "redeemed"

    durable("redeem").step(
        "prepare", lambda ctx: 1, compensate=lambda ctx: undone.append("p")
    ).step("redeem", redeem, transactional=True, max_retries=1)
    run_id = engine.start("redeem").run_id
    drain(engine, now=far_future())

    run = get_run(engine, run_id)
    assert run.status == "failed", (run.status, run.error)
    assert undone == ["p"]
    assert pending_jobs(engine) == 0


# ── 2. NUL characters: JSON-serialisable, but PostgreSQL's JSONB refuses them ───────


def test_nul_character_in_step_result_fails_the_step_on_every_database(engine: Durable) -> None:
    """SQLite: the run completes. PostgreSQL: the Phase-B INSERT raises DataError, the job
    is released/dead-lettered and the run stays ``running`` with no job (lost work).
    The codec should refuse ``\\x00`` (as it refuses NaN) so the step fails cleanly."""
    durable("nul-result").step("a", lambda ctx: "a\x00b", max_retries=1)
    run_id = engine.start("nul-result").run_id
    drain(engine, now=far_future())
    run = get_run(engine, run_id)
    assert run.status == "failed"
    assert run.error is not None
    assert "NUL" in run.error
    assert pending_jobs(engine) == 0


def test_nul_character_in_input_raises_a_durable_error(engine: Durable) -> None:
    """'Input that is not a JSON-serialisable mapping → DurableError subclass ... nothing
    written'. On PostgreSQL a raw sqlalchemy DataError used to escape instead."""
    durable("nul-input").step("a", lambda ctx: 1)
    with pytest.raises(DurableError, match="NUL"):
        engine.start("nul-input", {"note": "a\x00b"})
    assert count(engine, WorkflowRun) == 0


# ── 3. errors the package raises on purpose that are not DurableErrors ─────────────


def test_drain_with_a_naive_now_raises_a_durable_error(engine: Durable) -> None:
    """'Every error class derives from DurableError': drain(now=<naive>) raises a bare
    ValueError (so do a naive injected clock in Shell.now and list(status='bogus')).
    """
    with pytest.raises(DurableError):
        drain(engine, now=datetime(2030, 1, 1))  # noqa: DTZ001 - naive on purpose
    with pytest.raises(DurableError, match="unknown run status"):
        engine.list(status="bogus")
