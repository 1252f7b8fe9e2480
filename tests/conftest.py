"""Fixtures the whole main suite shares: engines on fresh databases, the CLI in-process.

The databases and servers come from the fixtures the repository's root ``conftest.py``
loads; here they become SQLAlchemy engines, a ``Durable`` engine and the CLI. Every test
also gets a clean workflow registry: workflows a test defines never leak into the next.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest

from durable_sa import Durable
from durable_sa.cli import main
from tests.support import cli_app
from tests.support.registry import clean_registry  # noqa: F401 - autouse: no workflow leaks

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import sqlalchemy as sa


@pytest.fixture
def engine(sa_engine: sa.Engine) -> Durable:
    """A durable engine with fresh tables on each database."""
    durable_engine = Durable(sa_engine)
    durable_engine.create_tables()
    return durable_engine


@pytest.fixture
def app() -> None:
    """The CLI test application's workflows, registered for this test."""
    cli_app.define()


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
