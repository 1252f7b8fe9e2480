"""CLI tests reuse the engine fixtures and run ``durable_sa.cli.main`` in-process."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest

from durable_sa.cli import main
from tests.cli import app_module
from tests.integration.conftest import engine  # noqa: F401
from tests.support.registry import clean_registry  # noqa: F401 - autouse: no workflow leaks

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


@pytest.fixture
def app() -> None:
    """The test application's workflows, registered for this test."""
    app_module.define()


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Callable[..., tuple[int, str, str]]]:
    """``cli("status", "1")``: run the command in-process; (exit code, stdout, stderr)."""
    level = logging.getLogger().level

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    logging.getLogger().setLevel(level)  # the worker command sets the root level
