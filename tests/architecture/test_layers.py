"""The architecture holds: the import-linter contracts, a pure core, an honest diagram.

The contracts live in ``pyproject.toml`` (``[tool.importlinter]``); these tests run the
real ``lint-imports`` on the package, import the core in a fresh interpreter, and compare
the layer list of ``docs/architecture.md`` with the contract.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _python(program: str) -> str:
    """What ``program`` prints, run by a fresh interpreter of this environment."""
    done = subprocess.run(  # noqa: S603 - our own interpreter and package
        [sys.executable, "-c", program],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def _contracts() -> list[dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts: list[dict[str, object]] = config["tool"]["importlinter"]["contracts"]
    return contracts


def test_every_import_linter_contract_is_kept() -> None:
    done = subprocess.run(  # noqa: S603 - the environment's own lint-imports
        [str(LINT_IMPORTS), "--no-logo", "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    kept = re.search(r"Contracts: (\d+) kept, (\d+) broken", done.stdout)
    assert kept is not None, done.stdout
    assert (int(kept[1]), int(kept[2])) == (len(_contracts()), 0)


def test_the_core_loads_without_sqlalchemy_psycopg_or_asyncio() -> None:
    core = sorted(p.stem for p in (ROOT / "durable_sa" / "core").glob("*.py"))
    program = (
        "import importlib, sys\n"
        f"for name in {core!r}:\n"
        "    importlib.import_module('durable_sa.core.' + name)\n"
        "heavy = sorted(m for m in ('sqlalchemy', 'psycopg', 'asyncio') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    assert "decide" in core
    assert _python(program).strip() == ""


def test_the_architecture_page_lists_the_contracts_layers() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(
        r"<!-- layers:start -->\s*```text\n(.*?)```\s*<!-- layers:end -->", page, re.DOTALL
    )
    assert block is not None, "docs/architecture.md has no layers block"
    (layers,) = [c["layers"] for c in _contracts() if c["id"] == "layers"]
    assert block[1].splitlines() == layers


def test_the_top_level_names_load_on_first_use() -> None:
    program = (
        "import sys, durable_sa\n"
        "before = 'sqlalchemy' in sys.modules\n"
        "durable_sa.Durable\n"
        "ordered = sorted(durable_sa.__all__) == durable_sa.__all__\n"
        "print(before, 'sqlalchemy' in sys.modules, ordered)\n"
    )
    assert _python(program).split() == ["False", "True", "True"]
