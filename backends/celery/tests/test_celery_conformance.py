"""Celery passes the delivery conformance suite, on both databases, with real workers.

Celery's own workers consume the messages, so the claim-level suite does not apply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from conftest import celery_consumers
from durable_sa_celery import TASK_NAME

from durable_sa.testing.conformance import DeliveryConformance

if TYPE_CHECKING:
    from durable_sa import Durable


def send_malformed_task(engine: Durable) -> None:
    """A task message for the durable task whose argument is no job document."""
    engine.backend.app.send_task(TASK_NAME, args=("{not json",))  # type: ignore[attr-defined]


class TestCeleryDelivery(DeliveryConformance):
    @pytest.fixture
    def conformance_engine(self, celery_engine: Durable) -> Durable:
        return celery_engine

    @pytest.fixture
    def conformance_malformed(self):
        return send_malformed_task

    @pytest.fixture
    def conformance_consumers(self):
        return celery_consumers
