"""Fast-lane store tests: workflows defined by one test never leak into the next."""

from tests.integration.conftest import _clean_registry  # noqa: F401
