"""The traces tests record spans through a global SDK provider set for each test alone."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.support.tracing import recording

if TYPE_CHECKING:
    from collections.abc import Iterator

    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The spans the test records (the global provider is taken back after it)."""
    yield from recording()
