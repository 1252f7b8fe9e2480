"""The built-in jobs table passes the backend conformance suite, on both databases."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Final

import pytest
from sqlalchemy import insert

from durable_sa import Durable, registry
from durable_sa.store.models import jobs_table
from durable_sa.testing import scenarios
from durable_sa.testing.conformance import ClaimConformance, DeliveryConformance

if TYPE_CHECKING:
    import sqlalchemy as sa


CLAIM_ATTEMPTS: Final = 2
"""The claim suite's jobs have 2 attempts, not 5: attempts running out costs 2 leases."""
DEFER: Final = timedelta(seconds=1)
"""The engines' ``defer_delay``: a deploy-in-progress test waits 1 s per offer, not 5."""


@pytest.fixture
def conformance_engine(sa_engine: sa.Engine) -> Durable:
    engine = Durable(sa_engine, defer_delay=DEFER)
    engine.create_tables()
    return engine


def put_malformed_job(engine: Durable) -> None:
    """A job row whose payload fits no job kind, for a run that exists."""
    run = engine.start(scenarios.SEQUENTIAL, {"n": 0})
    engine.wait(run.run_id, timeout=30)
    with engine.sa_engine.begin() as conn:
        conn.execute(
            insert(jobs_table).values(
                queue="default",
                kind="advance",
                run_id=run.run_id,
                workflow_name=scenarios.SEQUENTIAL,
                workflow_version=registry.get(scenarios.SEQUENTIAL).version,
                payload={"bogus": True},
            )
        )
    engine.backend.wake_local()  # type: ignore[attr-defined]


class TestJobsTableDelivery(DeliveryConformance):
    @pytest.fixture
    def conformance_engine(self, conformance_engine: Durable) -> Durable:
        return conformance_engine

    @pytest.fixture
    def conformance_malformed(self):
        return put_malformed_job

    @pytest.fixture
    def conformance_defer_delay(self) -> timedelta:
        return DEFER


class TestJobsTableClaims(ClaimConformance):
    @pytest.fixture
    def conformance_engine(self, sa_engine: sa.Engine) -> Durable:
        engine = Durable(sa_engine, max_job_attempts=CLAIM_ATTEMPTS)
        engine.create_tables()
        return engine
