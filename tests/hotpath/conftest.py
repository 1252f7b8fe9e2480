"""Fast-lane store tests: workflows defined by one test never leak into the next."""

from tests.support.registry import clean_registry  # noqa: F401 - autouse: no workflow leaks
