"""Choosing a queue backend by name or URL, through the ``durable_sa.backends`` entry points.

The third-party backend here is discovered for real: a ``*.dist-info`` folder with an
``entry_points.txt`` on ``sys.path``, which is what installing a package writes.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

import pytest

from durable_sa import Durable, InvalidArgumentError, durable
from durable_sa.backends import JobsTableBackend
from durable_sa.errors import BackendNotFound
from durable_sa.queue.backends import backend_name, installed_backends
from durable_sa.testing import drain

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    import sqlalchemy as sa

PLUGIN = '''
from durable_sa.queue.jobs_table import JobsTableBackend


class CountingBackend(JobsTableBackend):
    """A third party's backend: the jobs table, counting what it enqueues."""

    name = "counting"

    def __init__(self, sa_engine, *, queue, max_attempts, url=None, label="none"):
        super().__init__(sa_engine, queue=queue, max_attempts=max_attempts)
        self.url = url
        self.label = label
        self.enqueued = 0

    def enqueue(self, session, jobs_to_add):
        self.enqueued += len(jobs_to_add)
        super().enqueue(session, jobs_to_add)


def not_a_backend(sa_engine, *, queue, max_attempts):
    return object()
'''


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Install a backend package ``durable-sa-counting`` the way pip would lay it out."""
    (tmp_path / "counting_backend.py").write_text(PLUGIN)
    info = tmp_path / "durable_sa_counting-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: durable-sa-counting\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(
        "[durable_sa.backends]\n"
        "counting = counting_backend:CountingBackend\n"
        "broken = counting_backend:not_a_backend\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield
    sys.modules.pop("counting_backend", None)


def test_the_jobs_table_is_an_installed_backend_like_any_other(sa_engine: sa.Engine) -> None:
    assert "jobs_table" in installed_backends()
    engine = Durable(sa_engine, backend="jobs_table", queue="billing", max_job_attempts=3)
    assert isinstance(engine.backend, JobsTableBackend)
    assert engine.backend.queue == "billing"
    assert engine.backend.max_attempts == 3


def test_a_third_party_backend_is_found_by_name_and_runs_workflows(
    sa_engine: sa.Engine, plugin: None
) -> None:
    engine = Durable(sa_engine, backend="counting", backend_options={"label": "x"})
    engine.create_tables()
    assert type(engine.backend).__name__ == "CountingBackend"
    durable("bk-two").step("a", lambda ctx: 1).step("b", lambda ctx: 2)
    run_id = engine.start("bk-two").run_id
    drain(engine)
    assert engine.status(run_id).status == "completed"
    assert engine.backend.enqueued >= 1  # type: ignore[attr-defined]
    assert engine.backend.label == "x"  # type: ignore[attr-defined]


def test_a_url_names_the_backend_by_its_scheme_and_is_passed_along(
    sa_engine: sa.Engine, plugin: None
) -> None:
    engine = Durable(sa_engine, backend="counting+streams://127.0.0.1:6379/0")
    assert engine.backend.url == "counting+streams://127.0.0.1:6379/0"  # type: ignore[attr-defined]
    assert backend_name("REDIS://h/0") == ("redis", {"url": "REDIS://h/0"})
    assert backend_name("jobs_table") == ("jobs_table", {})


def test_an_unknown_backend_says_what_is_installed(sa_engine: sa.Engine) -> None:
    with pytest.raises(BackendNotFound, match=r"'nope'.*installed: .*jobs_table"):
        Durable(sa_engine, backend="nope")
    with pytest.raises(BackendNotFound, match="'kafka'"):
        Durable(sa_engine, backend="kafka://127.0.0.1:9092")


def test_bad_options_and_bad_factories_are_clear_errors(sa_engine: sa.Engine, plugin: None) -> None:
    with pytest.raises(InvalidArgumentError, match=r"'counting' refused its options \['colour'\]"):
        Durable(sa_engine, backend="counting", backend_options={"colour": "red"})
    with pytest.raises(InvalidArgumentError, match="did not build a QueueBackend"):
        Durable(sa_engine, backend="broken")
    with pytest.raises(InvalidArgumentError, match="backend name or a URL"):
        Durable(sa_engine, backend="   ")
    with pytest.raises(InvalidArgumentError, match="not a backend object"):
        Durable(sa_engine, backend=JobsTableBackend(sa_engine), backend_options={"a": 1})
