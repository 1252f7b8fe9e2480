"""Worker processes for the reliability tests: start, SIGKILL, SIGTERM, collect output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Self

import sqlalchemy as sa
from sqlalchemy.orm import Session

from durable_sa import DeadLetter, Durable, Job, JournalEntry, WorkflowRun
from durable_sa.store.models import outbox_table
from tests.reliability.app import EXPECTED, UNITS, effects, effects_metadata

if TYPE_CHECKING:
    from collections.abc import Callable

ROOT = Path(__file__).resolve().parents[2]


APP = "tests.reliability.app:engine"


class ChildProcess:
    """A process the test started, its output in a file: kill it, stop it, read it.

    Subclasses say what to run (:meth:`argv`), in which folder and with which
    environment; everything here acts on the PID we started, and only on it.
    """

    log_prefix = "durable-sa-process-"

    def __init__(self, env: dict[str, str], cwd: Path = ROOT) -> None:
        self.env = {**os.environ, **env}
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.mkstemp(prefix=self.log_prefix, suffix=".log")[1])

    def argv(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> Self:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
                self.argv(), cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.log.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.terminate()
        finally:
            self.close()


class WorkerProcess(ChildProcess):
    """One ``durable-sa worker`` process (or another CLI command), its output in a file.

    ``command`` is the CLI command and its APP (``("relay", APP)`` for a relay);
    ``backend`` a queue backend URL the app uses instead of the jobs table; ``env``
    more environment (it wins over the defaults, e.g. a longer ``PYTHONPATH``).
    """

    log_prefix = "durable-sa-worker-"

    def __init__(
        self,
        url: str,
        *args: str,
        step_seconds: float = 0.01,
        command: tuple[str, ...] = ("worker", APP),
        backend: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            {
                "DURABLE_SA_DATABASE_URL": url,
                "REL_STEP_SECONDS": str(step_seconds),
                "PYTHONPATH": str(ROOT),
                **({"DURABLE_SA_BACKEND": backend} if backend else {}),
                **(env or {}),
            }
        )
        self.command = command
        self.args = args

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "durable_sa.cli", *self.command, *self.args]


def restart_until(
    url: str, args: tuple[str, ...], done: Callable[[], bool], timeout: float = 120
) -> tuple[int, int, str]:
    """Run one worker, starting it again each time it dies, until ``done()`` holds.

    Returns how many times it was restarted, the exit code of the last one (stopped
    gracefully) and its output.
    """
    restarts = 0
    deadline = time.monotonic() + timeout
    worker = WorkerProcess(url, *args).start()
    try:
        while not done() and time.monotonic() < deadline:
            assert worker.proc is not None
            if worker.proc.poll() is not None:  # it died: start it again, as a supervisor would
                worker.close()
                restarts += 1
                worker = WorkerProcess(url, *args).start()
            time.sleep(0.1)
        code = worker.terminate()
        output = worker.output()
    finally:
        worker.close()
    return restarts, code, output


def prepare_database(url: str) -> str:
    """Create the engine's tables and the effects table in the database at ``url``."""
    sa_engine = sa.create_engine(url)
    Durable(sa_engine).create_tables()
    effects_metadata.create_all(sa_engine)
    sa_engine.dispose()
    return url


def unpublished_outbox_rows(sa_engine: sa.Engine) -> int:
    """Outbox rows no relay has published: stranded, once every run has ended."""
    with Session(sa_engine) as session:
        return int(
            session.scalar(
                sa.select(sa.func.count())
                .select_from(outbox_table)
                .where(outbox_table.c.published_at.is_(None))
            )
            or 0
        )


def assert_runs_ended_as_expected(sa_engine: sa.Engine, run_ids: dict[str, list[int]]) -> None:
    """Each run of each workflow has its expected status and every unit journaled once."""
    with Session(sa_engine) as session:
        statuses = dict(session.execute(sa.select(WorkflowRun.id, WorkflowRun.status)).all())
        journal: dict[int, list[str]] = {}
        for run_id, step_id in session.execute(
            sa.select(JournalEntry.run_id, JournalEntry.step_id)
        ):
            journal.setdefault(run_id, []).append(step_id)
    for name, ids in run_ids.items():
        for run_id in ids:
            assert statuses[run_id] == EXPECTED[name], (name, run_id)
            assert sorted(journal[run_id]) == sorted(UNITS[name]), (name, run_id)


def wait_until_all_terminal(sa_engine: sa.Engine, run_ids: list[int], timeout: float) -> int:
    """Wait until every run is terminal; how many are not when time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        with Session(sa_engine) as session:
            open_runs = session.scalar(
                sa.select(sa.func.count())
                .select_from(WorkflowRun)
                .where(
                    WorkflowRun.id.in_(run_ids),
                    WorkflowRun.status.notin_(["completed", "failed", "canceled"]),
                )
            )
        if not open_runs or time.monotonic() > deadline:
            return int(open_runs or 0)
        time.sleep(0.5)


def summary(sa_engine: sa.Engine) -> dict[str, int]:
    """Counts every reliability test reports and checks."""
    with Session(sa_engine) as session:
        executions = session.execute(
            sa.select(effects.c.run_id, effects.c.unit, sa.func.count()).group_by(
                effects.c.run_id, effects.c.unit
            )
        ).all()
        duplicate_journal = session.scalar(
            sa.select(sa.func.count()).select_from(
                sa.select(JournalEntry.run_id, JournalEntry.step_id)
                .group_by(JournalEntry.run_id, JournalEntry.step_id)
                .having(sa.func.count() > 1)
                .subquery()
            )
        )
        return {
            "units_executed": len(executions),
            "duplicate_executions": sum(n - 1 for *_, n in executions if n > 1),
            "duplicate_journal_rows": int(duplicate_journal or 0),
            "jobs_left": int(session.scalar(sa.select(sa.func.count()).select_from(Job)) or 0),
            "dead_letters": int(
                session.scalar(sa.select(sa.func.count()).select_from(DeadLetter)) or 0
            ),
            "non_terminal_runs": int(
                session.scalar(
                    sa.select(sa.func.count())
                    .select_from(WorkflowRun)
                    .where(WorkflowRun.status.notin_(["completed", "failed", "canceled"]))
                )
                or 0
            ),
        }


def overlaps(sa_engine: sa.Engine) -> int:
    """Pairs of executions of the same unit of the same run that ran at the same time."""
    with Session(sa_engine) as session:
        rows = session.execute(
            sa.select(
                effects.c.run_id, effects.c.unit, effects.c.started_at, effects.c.finished_at
            ).order_by(effects.c.run_id, effects.c.unit, effects.c.started_at)
        ).all()
    count = 0
    previous: tuple[int, str, float] | None = None
    for run_id, unit, started, finished in rows:
        end = finished if finished is not None else float("inf")
        if previous is not None and previous[:2] == (run_id, unit) and started < previous[2]:
            count += 1
        if previous is None or previous[:2] != (run_id, unit):
            previous = (run_id, unit, end)
        else:
            previous = (run_id, unit, max(previous[2], end))
    return count
