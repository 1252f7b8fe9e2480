"""Facts the docs state about the code are checked against the code, so they cannot go stale.

The code blocks of every page already run (``test_docs.py``); this module checks the
prose and the shell examples around them: a count of tables, the ``durable-sa``
commands a page tells you to type, the ``engine.`` and ``engine.admin.`` names it uses
in passing, and the lease defaults, Python version and status fields the quickstart
names. Each check reads the value from the code, never a copy of it.
"""

from __future__ import annotations

import inspect
import re
import tomllib
from datetime import timedelta
from pathlib import Path

import attrs
import pytest
import sqlalchemy as sa

from durable_sa import Durable, RunStatusSnapshot, Worker, metadata
from durable_sa.cli.parser import build_parser

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
PAGE_IDS = [page.relative_to(ROOT).as_posix() for page in PAGES]
QUICKSTART = ROOT / "docs" / "quickstart.md"

_FENCE = re.compile(
    r"^(?P<fence>`{3,}|~{3,})(?P<language>\w*)[^\n]*\n(?P<body>.*?)^(?P=fence)\s*$",
    re.MULTILINE | re.DOTALL,
)
_WORDS = (
    *("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"),
    *("eleven", "twelve", "thirteen", "fourteen", "fifteen"),
)
_NUMBERS = {word: number for number, word in enumerate(_WORDS)}
_NUMBER = r"(?P<count>\d+|" + "|".join(_NUMBERS) + r")"
_TABLE_COUNTS = [
    re.compile(rf"\b{_NUMBER}\s+(?:[\w`*]+\s+){{0,2}}tables\b", re.IGNORECASE),  # "six tables"
    re.compile(
        rf"\btables\b[^.]{{0,60}}\({_NUMBER} in all\b", re.IGNORECASE
    ),  # "tables (six in all"
]
_ENGINE_VERB = re.compile(r"\bengine\.(?P<admin>admin\.)?(?P<verb>\w+)")
_COMMAND = re.compile(r"(?:^|[\s`(]|\$ )durable-sa (?P<command>[a-z][a-z-]*)\b")


def _prose(text: str) -> str:
    """The text outside fenced blocks."""
    return _FENCE.sub("", text)


def _shell_text(text: str) -> list[str]:
    """What a reader would type or see: inline code spans and non-Python fenced blocks."""
    pieces = [m["body"] for m in _FENCE.finditer(text) if m["language"] != "python"]
    pieces += re.findall(r"`([^`\n]+)`", _prose(text))
    return pieces


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_a_count_of_tables_is_the_count_of_the_schema(page: Path) -> None:
    prose = " ".join(_prose(page.read_text(encoding="utf-8")).split())
    stated = [
        (match[0], match["count"]) for pattern in _TABLE_COUNTS for match in pattern.finditer(prose)
    ]
    wrong = [
        phrase
        for phrase, count in stated
        if _NUMBERS.get(count.lower(), int(count) if count.isdigit() else -1)
        != len(metadata.tables)
    ]
    assert not wrong, (
        f"{page.name} counts the tables wrong (there are {len(metadata.tables)}): {wrong}"
    )


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_every_durable_sa_command_a_page_names_exists(page: Path) -> None:
    parser = build_parser()
    [commands] = [set(a.choices or ()) for a in parser._actions if a.dest == "command"]
    named = {
        match["command"]
        for piece in _shell_text(page.read_text(encoding="utf-8"))
        for match in _COMMAND.finditer(piece)
    }
    assert named <= commands, f"{page.name} names no such command: {named - commands}"


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_every_engine_verb_the_prose_names_exists(page: Path) -> None:
    engine = Durable(sa.create_engine("sqlite://"))
    spans = re.findall(r"`([^`\n]+)`", _prose(page.read_text(encoding="utf-8")))
    named = [match for span in spans for match in _ENGINE_VERB.finditer(span)]
    missing = [
        match[0]
        for match in named
        if not hasattr(engine.admin if match["admin"] else engine, match["verb"])
    ]
    engine.sa_engine.dispose()
    assert not missing, f"{page.name} names what the engine does not have: {missing}"


def _default(function: object, parameter: str) -> object:
    return inspect.signature(function).parameters[parameter].default  # type: ignore[arg-type]


def test_the_quickstart_states_both_lease_defaults_as_the_code_has_them() -> None:
    text = " ".join(QUICKSTART.read_text(encoding="utf-8").split())
    job_lease = re.search(r"job_lease=timedelta\((?P<unit>\w+)=(?P<amount>\d+)\)", text)
    assert job_lease is not None, "the quickstart no longer names job_lease's default"
    stated = timedelta(**{job_lease["unit"]: int(job_lease["amount"])})
    assert stated == _default(Durable.__init__, "job_lease")
    worker_lease = re.search(r"`--lease` seconds \((?P<seconds>\d+) by default\)", text)
    assert worker_lease is not None, "the quickstart no longer names the worker's --lease default"
    assert timedelta(seconds=int(worker_lease["seconds"])) == _default(Worker.__init__, "lease")


def test_the_quickstart_names_only_fields_a_status_snapshot_has() -> None:
    text = QUICKSTART.read_text(encoding="utf-8")
    listing = text.split("returns a snapshot of the run:", 1)[1].split("\n\n", 2)[1]
    fields = {
        name
        for line in listing.splitlines()
        if line.startswith("- ")
        for name in re.findall(r"`(\w+)`", line.split(":", 1)[0])
    }
    assert {"status", "current_step", "results", "children"} <= fields  # the list was read
    assert fields <= {field.name for field in attrs.fields(RunStatusSnapshot)}


def test_the_quickstart_asks_for_the_python_the_package_requires() -> None:
    required = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "requires-python"
    ]
    minimum = required.removeprefix(">=")
    assert f"Python {minimum} or later" in QUICKSTART.read_text(encoding="utf-8")
