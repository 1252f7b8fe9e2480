"""The public API: a small top level that keeps its promises, and a home for the rest."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import durable_sa

ROOT = Path(__file__).resolve().parents[2]
PROMISED = [
    *("durable", "Durable", "DurableWorkflow", "ParallelEntry", "DurableContext"),
    *("WorkflowRun", "JournalEntry", "Job", "DeadLetter", "metadata", "registry", "RunStatus"),
    *("DurableError", "DefinitionError", "PayloadError", "RunNotFoundError"),
    "WorkflowNotRegisteredError",
]
"""Names code we will never see imports from the top level: they stay."""
TESTING_PROMISED = "drain pending_jobs clear_jobs check_workflow faults replay Driver FakeClock"


def test_the_top_level_keeps_every_promised_name() -> None:
    for name in PROMISED:
        assert name in durable_sa.__all__
        assert getattr(durable_sa, name) is not None
    testing = importlib.import_module("durable_sa.testing")
    for name in TESTING_PROMISED.split():
        assert getattr(testing, name) is not None


def test_the_top_level_is_small_sorted_and_complete() -> None:
    names = durable_sa.__all__
    assert len(names) <= 25
    assert names == sorted(set(names))
    assert set(names) == set(durable_sa._EXPORTS)
    for name in names:  # each resolves, from the module it says
        value = getattr(durable_sa, name)
        home = importlib.import_module(durable_sa._EXPORTS[name])
        assert getattr(home, name) is value


def test_every_top_level_name_is_documented() -> None:
    pages = [ROOT / "README.md", *(ROOT / "docs").glob("**/*.md")]
    text = "\n".join(page.read_text() for page in pages)
    missing = [name for name in durable_sa.__all__ if not re.search(rf"\b{name}\b", text)]
    assert missing == []


@pytest.mark.parametrize("name", sorted(durable_sa._ELSEWHERE))
def test_a_name_that_lives_elsewhere_says_where(name: str) -> None:
    home = durable_sa._ELSEWHERE[name]
    assert getattr(importlib.import_module(home), name) is not None
    with pytest.raises(AttributeError, match=re.escape(f"import it from {home}")):
        getattr(durable_sa, name)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match=r"no attribute 'Nonsense'$"):
        durable_sa.Nonsense  # noqa: B018 - the access is the test
