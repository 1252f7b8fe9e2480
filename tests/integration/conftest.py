"""Fixtures for engine tests: a ``Durable`` engine with its tables, on both databases."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from durable_sa import Durable
from tests.support.registry import clean_registry  # noqa: F401 - autouse: no workflow leaks

if TYPE_CHECKING:
    from collections.abc import Iterator

    import sqlalchemy as sa


@pytest.fixture
def engine(sa_engine: sa.Engine) -> Iterator[Durable]:
    """A durable engine with fresh tables on each database."""
    durable_engine = Durable(sa_engine)
    durable_engine.create_tables()
    return durable_engine
