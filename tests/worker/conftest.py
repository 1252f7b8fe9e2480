"""Worker tests reuse the engine fixtures."""

from tests.integration.conftest import engine  # noqa: F401
from tests.support.registry import clean_registry  # noqa: F401 - autouse: no workflow leaks
