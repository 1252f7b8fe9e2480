"""Every ```python block of README.md and docs/**/*.md runs, exactly as a reader would.

Rules:
- A page's python blocks run top to bottom in one fresh module namespace: a later block
  sees the names an earlier one defined, and no page sees another page's names.
- Each page runs in its own temporary working directory, so the SQLite files it creates
  (``sqlite:///orders.db``...) start empty and vanish afterwards.
- Workflows a page registers are unregistered afterwards, and any it replaced are put back,
  so pages never leak definitions into each other or into the rest of the suite.
- Code compiles under the page's own path with its Markdown line numbers, so a failure
  names the page, the block and the exception, and the traceback shows the page's lines.
- Every page sees ``REDIS_URL``, the URL of the test session's Redis server, emptied
  before the page runs; pages about relay backends read it (``os.environ["REDIS_URL"]``).
- Snippets that are not meant to run use another fence language (``text``, ``sh``); a
  fence that merely looks like Python (``py``, ``python3``, ``python-norun``) is refused,
  because it would silently escape this test.
"""

from __future__ import annotations

import re
import sys
import traceback
import types
from pathlib import Path
from typing import NamedTuple

import pytest
import sqlalchemy as sa

from durable_sa import Durable, registry
from tests.support.tracing import reset_global_provider

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
PAGE_IDS = [page.relative_to(ROOT).as_posix() for page in PAGES]

_OPENING = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*?)\s*$")
_MAX_FENCE_INDENT = 3  # CommonMark: a closing fence may be indented up to 3 spaces
_LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")


class Fence(NamedTuple):
    """One fenced block: its language, first code line (1-based), code and closing line."""

    language: str
    line: int
    source: str
    end: int


def fences(text: str) -> list[Fence]:
    """The fenced code blocks of a Markdown text (CommonMark rules, close enough)."""
    found: list[Fence] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = _OPENING.match(lines[i])
        if opening is None:
            i += 1
            continue
        marker, indent = opening["fence"], len(opening["indent"])
        language = opening["info"].split()[0].lower() if opening["info"] else ""
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            stripped = lines[j].lstrip(" ")
            if (
                len(lines[j]) - len(stripped) <= _MAX_FENCE_INDENT
                and stripped.rstrip() == marker[0] * len(stripped.rstrip())
                and len(stripped.rstrip()) >= len(marker)
            ):
                break
            body.append(re.sub(rf"^ {{0,{indent}}}", "", lines[j]))
            j += 1
        source = "\n".join(body) + "\n"
        found.append(Fence(language=language, line=i + 2, source=source, end=j + 1))
        i = j + 1
    return found


def prose(text: str) -> list[str]:
    """The lines of a Markdown text that are not inside a fenced block."""
    inside: set[int] = set()
    for fence in fences(text):
        inside.update(range(fence.line - 1, fence.end + 1))
    return [line for number, line in enumerate(text.splitlines(), 1) if number not in inside]


def anchors(text: str) -> set[str]:
    """The heading anchors a Markdown renderer makes (GitHub's slugs)."""
    seen: dict[str, int] = {}
    for line in prose(text):
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading is None:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading[1].lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        if count:
            seen[f"{slug}-{count}"] = 1
    return set(seen)


def python_blocks(page: Path) -> list[Fence]:
    """The page's ```python blocks, in order."""
    return [f for f in fences(page.read_text(encoding="utf-8")) if f.language == "python"]


def _dispose_engines(namespace: dict[str, object]) -> None:
    for value in namespace.values():
        if isinstance(value, Durable):
            value.sa_engine.dispose()
            close = getattr(value.backend, "close", None)  # a broker's connections
            if callable(close):
                close()
        elif isinstance(value, sa.Engine):
            value.dispose()


def _run_block(page: Path, block: Fence, namespace: dict[str, object]) -> str | None:
    """Run one block in ``namespace``; the exception and its traceback, or ``None``."""
    # Pad so that line numbers in tracebacks are the page's own line numbers.
    code = compile("\n" * (block.line - 1) + block.source, str(page), "exec")
    try:
        exec(code, namespace)  # noqa: S102 - running the docs is the point
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - any escape fails the page
        # Drop this function's own frame: the traceback starts in the page.
        trace = "".join(traceback.format_exception(exc.with_traceback(exc.__traceback__.tb_next)))
        return f"{type(exc).__name__}: {exc}\n\n{trace}"
    return None


def run_page(page: Path, page_id: str) -> None:
    """Run the page's python blocks in order in one fresh module; fail with the block."""
    blocks = python_blocks(page)
    name = re.sub(r"\W", "_", page_id.removesuffix(".md"))
    module = types.ModuleType(f"docs_page_{name}")
    module.__file__ = str(page)
    sys.modules[module.__name__] = module  # dataclasses look their module up here
    try:
        for number, block in enumerate(blocks, start=1):
            failure = _run_block(page, block, module.__dict__)
            if failure is not None:
                pytest.fail(
                    f"{page_id}: python block {number} of {len(blocks)} (line {block.line}) "
                    f"raised {failure}",
                    pytrace=False,
                )
    finally:
        _dispose_engines(module.__dict__)
        sys.modules.pop(module.__name__, None)


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_page_runs(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durable_redis_url: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(
        "REDIS_URL", durable_redis_url
    )  # the session's server, emptied for this page
    before = {name: registry.get(name) for name in registry.names()}
    try:
        run_page(page, page.relative_to(ROOT).as_posix())
    finally:
        for name in set(registry.names()) - set(before):
            registry.unregister(name)
        for workflow in before.values():
            registry.register(workflow)
        reset_global_provider()  # a page that sets a tracer provider keeps it to itself


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_page_has_a_python_block(page: Path) -> None:
    assert python_blocks(page), f"{page.name} has no ```python block to run"


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_no_fence_pretends_to_be_python(page: Path) -> None:
    bad = [
        f"line {f.line - 1}: ```{f.language}"
        for f in fences(page.read_text(encoding="utf-8"))
        if f.language.startswith("py") and f.language != "python"
    ]
    assert not bad, f"{page.name}: use ```python (run) or ```text (not run): {bad}"


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for line in prose(page.read_text(encoding="utf-8")):
        for match in _LINK.finditer(line):
            target, _, anchor = match["target"].partition("#")
            if "://" in target or target.startswith("mailto:"):
                continue
            linked = (page.parent / target) if target else page
            if not linked.is_file():
                broken.append(f"{match['target']} (no such file)")
            elif anchor and anchor not in anchors(linked.read_text(encoding="utf-8")):
                broken.append(f"{match['target']} (no such heading)")
    assert not broken, f"{page.name} has broken links: {broken}"


def test_the_expected_pages_exist() -> None:
    expected = {
        "README.md",
        "docs/quickstart.md",
        "docs/step-kinds.md",
        "docs/delivery.md",
        "docs/sagas.md",
        "docs/signals-and-agents.md",
        "docs/sessions.md",
        "docs/schema.md",
        "docs/workers.md",
        "docs/testing.md",
        "docs/retention.md",
        "docs/observability.md",
        "docs/backends/index.md",
        "docs/backends/redis.md",
        "docs/backends/writing-your-own.md",
    }
    assert expected <= set(PAGE_IDS)


def test_fence_parser_keeps_blocks_and_languages_apart() -> None:
    text = "intro\n```python\na = 1\n```\n\n~~~text\n```python\nnot code\n~~~\n````sh\nls\n````\n"
    assert fences(text) == [
        Fence("python", 3, "a = 1\n", 4),
        Fence("text", 7, "```python\nnot code\n", 9),
        Fence("sh", 11, "ls\n", 12),
    ]
    assert prose(text) == ["intro", ""]


def test_anchors_follow_githubs_slugs() -> None:
    text = "# Top\n## `parallel`: run at once\n```python\n# not a heading\n```\n## Top\n"
    assert anchors(text) == {"top", "parallel-run-at-once", "top-1"}
