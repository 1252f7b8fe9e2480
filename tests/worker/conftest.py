"""Worker tests reuse the engine fixtures."""

from tests.integration.conftest import _clean_registry, engine  # noqa: F401
