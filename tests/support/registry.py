"""An autouse fixture that keeps the workflow registry as each test found it.

Import it into a conftest (``from tests.support.registry import clean_registry``) to make
it apply to every test below that folder: workflows a test defines never leak into the
next.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from durable_sa import registry

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    """Unregister every workflow the test defined."""
    before = set(registry.names())
    yield
    for name in set(registry.names()) - before:
        registry.unregister(name)
