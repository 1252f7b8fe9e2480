"""The built-in jobs table passes the backend conformance suite, on both databases."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from sqlalchemy import insert

from durable_sa import Durable, registry
from durable_sa.store.models import jobs_table
from durable_sa.testing import scenarios
from durable_sa.testing.conformance import ClaimConformance, DeliveryConformance

if TYPE_CHECKING:
    import sqlalchemy as sa


@pytest.fixture
def conformance_engine(sa_engine: sa.Engine) -> Durable:
    engine = Durable(sa_engine)
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


class TestJobsTableClaims(ClaimConformance):
    @pytest.fixture
    def conformance_engine(self, conformance_engine: Durable) -> Durable:
        return conformance_engine
