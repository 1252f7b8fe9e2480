"""Tests that start real processes: workers, relays and the CLI, on real databases.

The crash tests (kill -9, blast radius, worker processes) are marked ``reliability``;
``make test`` runs them with everything else. Select them alone with ``-m reliability``,
or leave them out with ``-m "not reliability"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from durable_sa import Durable
from durable_sa.testing.workload import define_workload

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def rel_engine(durable_workload_url: str) -> Iterator[Durable]:
    """The test's own engine on the workload's database, the workload's workflows defined."""
    sa_engine = sa.create_engine(durable_workload_url, pool_pre_ping=True)
    define_workload(sa_engine)
    yield Durable(sa_engine)
    sa_engine.dispose()
