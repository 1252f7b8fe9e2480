"""``make demo``'s program, run as a user runs it: a fresh interpreter, from the checkout.

The demo runs once for the module (it takes several seconds), on a SQLite file it keeps,
with a stand-in ``psycopg`` first on the path of every process it starts: the stand-in
leaves a mark when something imports it, so the demo, its workers and its CLI calls are
all seen never to load the PostgreSQL driver.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from durable_sa import Durable, JournalEntry

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 120  # seconds; the demo takes about ten

_STAND_IN = """\
import os, pathlib
pathlib.Path(os.environ["DEMO_PSYCOPG_MARK"]).write_text("imported")
raise ImportError("the SQLite demo must not import psycopg")
"""


class DemoRun(NamedTuple):
    done: subprocess.CompletedProcess[str]
    database: Path
    psycopg_mark: Path
    env: dict[str, str]


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "examples.demo", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    tmp = tmp_path_factory.mktemp("demo")
    (tmp / "shadow" / "psycopg").mkdir(parents=True)
    (tmp / "shadow" / "psycopg" / "__init__.py").write_text(_STAND_IN)
    path = [str(tmp / "shadow"), str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, path)),
        "DEMO_PSYCOPG_MARK": str(tmp / "psycopg-imported"),
    }
    env.pop("DURABLE_SA_DATABASE_URL", None)
    database = tmp / "demo.sqlite"
    done = _run(["--db", str(database)], env)
    return DemoRun(done, database, tmp / "psycopg-imported", env)


def test_the_demo_ends_well_and_quietly(demo: DemoRun) -> None:
    assert (demo.done.returncode, demo.done.stderr) == (0, ""), demo.done.stdout


def test_the_demo_kills_a_worker_inside_a_step_then_a_new_worker_resumes(demo: DemoRun) -> None:
    out = demo.done.stdout
    pids = re.findall(r"Worker (\d) has pid (\d+)", out)
    assert [number for number, _ in pids] == ["1", "2"]
    first, second = (pid for _, pid in pids)
    assert first != second
    kill = out.index(f"kill -9 {first}: worker 1 dies in the middle of 'charge'")
    assert "killed by signal 9" in out[kill:]
    # durable-sa status after the kill: the run is stuck at 'charge', 'reserve' journaled
    stuck = out.index("$ durable-sa status 1", kill)
    assert re.search(r"status: +running\n.*step: +1/3", out[stuck:], re.DOTALL)
    resume = out.index("Start worker 2", stuck)
    assert "status:          running" not in out[resume:]
    assert re.search(r"step 'charge' attempt 1: advance", out[resume:])
    assert "step 'reserve'" not in out[resume:]  # worker 2 never ran it


def test_the_cli_shows_the_run_completed(demo: DemoRun) -> None:
    out = demo.done.stdout
    listing = out.index("$ durable-sa list")
    assert re.search(r"^  \| 1 +demo-order +\S+ +completed +3/3 ", out[listing:], re.MULTILINE)
    final = out.index("$ durable-sa status 1", listing)
    assert re.search(r"status: +completed\n.*step: +3/3", out[final:], re.DOTALL)


def test_each_step_that_finished_ran_once_and_the_one_cut_off_ran_again(demo: DemoRun) -> None:
    tally = dict(
        re.findall(r"^ +(reserve|charge|ship) +(\d+ +\d+) +\S", demo.done.stdout, re.MULTILINE)
    )
    began_finished = {step: counts.split() for step, counts in tally.items()}
    assert began_finished == {
        "reserve": ["1", "1"],
        "charge": ["2", "1"],  # began in the killed worker, again in the new one
        "ship": ["1", "1"],
    }


def test_the_database_holds_one_completed_run_each_step_journaled_once(demo: DemoRun) -> None:
    sa_engine = sa.create_engine(f"sqlite:///{demo.database}")
    try:
        assert Durable(sa_engine).status(1).status == "completed"
        with Session(sa_engine) as session:
            steps = session.scalars(
                sa.select(JournalEntry.step_id).where(JournalEntry.run_id == 1)
            ).all()
    finally:
        sa_engine.dispose()
    assert sorted(steps) == ["charge", "reserve", "ship"]


def test_the_demo_leaves_no_process_behind(demo: DemoRun) -> None:
    for pid in re.findall(r"Worker \d has pid (\d+)", demo.done.stdout):
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)


def test_no_process_of_the_demo_imports_psycopg(demo: DemoRun, tmp_path: Path) -> None:
    assert demo.done.returncode == 0
    assert not demo.psycopg_mark.exists(), (
        "the SQLite demo (or a worker, or the CLI) imported psycopg"
    )
    # The stand-in is what these processes would import: a process that does import
    # psycopg with the same environment leaves the mark.
    control = {**demo.env, "DEMO_PSYCOPG_MARK": str(tmp_path / "control")}
    subprocess.run(
        [sys.executable, "-c", "import psycopg"], cwd=ROOT, env=control, check=False, timeout=60
    )
    assert (tmp_path / "control").exists()


def test_help_is_plain_text() -> None:
    done = _run(["--help"], dict(os.environ))
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith("usage: python -m examples.demo")
    assert "SIGKILL" in done.stdout  # the description says what the demo does
    for markup in ("Traceback", "`", "**", ":mod:", ":func:", ":data:"):
        assert markup not in done.stdout, f"{markup!r} in --help"


def test_start_only_starts_orders_for_a_worker_of_ones_own(tmp_path: Path) -> None:
    database = tmp_path / "orders.sqlite"
    done = _run(["--start", "2", "--db", str(database)], dict(os.environ))
    assert (done.returncode, done.stderr) == (0, "")
    assert "durable-sa worker examples.orders:app" in done.stdout
    sa_engine = sa.create_engine(f"sqlite:///{database}")
    try:
        runs = Durable(sa_engine).list(workflow="demo-order")
    finally:
        sa_engine.dispose()
    assert sorted((run.run_id, run.status, run.current_step) for run in runs) == [
        (1, "running", 0),
        (2, "running", 0),
    ]


def test_an_interrupted_demo_stops_the_worker_it_started(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])),
    }
    demo = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-u", "-m", "examples.demo", "--db", str(tmp_path / "demo.sqlite")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert demo.stdout is not None
        worker = None
        for line in demo.stdout:
            found = re.search(r"Worker 1 has pid (\d+)", line)
            if found:
                worker = int(found[1])
                break
        assert worker is not None, "the demo never started its first worker"
        os.kill(worker, 0)  # it runs now
        demo.send_signal(signal.SIGINT)  # Ctrl-C
        _, err = demo.communicate(timeout=TIMEOUT)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == 130
    assert err.strip() == "python -m examples.demo: interrupted; its processes are stopped"
    with pytest.raises(ProcessLookupError):
        os.kill(worker, 0)


def test_a_bad_start_count_is_one_usage_line_not_a_traceback(tmp_path: Path) -> None:
    done = _run(["--start", "0", "--db", str(tmp_path / "orders.sqlite")], dict(os.environ))
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "python -m examples.demo: error: argument --start: "
        "expected a whole number of at least 1, not '0'"
    )
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "orders.sqlite").exists()
