"""``make demo``'s program, run as a user runs it: a fresh interpreter, from the checkout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_runs_its_saga_to_the_end(tmp_path: Path) -> None:
    db = tmp_path / "demo.sqlite"
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "examples.demo", "--db", str(db)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert "completed" in done.stdout
    assert "compensated" in done.stdout or "failed" in done.stdout  # the second order rolls back
    assert db.is_file()


def test_the_demo_does_not_load_the_postgresql_driver(tmp_path: Path) -> None:
    code = (
        "import sys, runpy; sys.argv = ['demo', '--db', sys.argv[1]]; "
        "runpy.run_module('examples.demo', run_name='__main__'); "
        "assert 'psycopg' not in sys.modules, 'the SQLite demo imported psycopg'"
    )
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-c", code, str(tmp_path / "demo.sqlite")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
