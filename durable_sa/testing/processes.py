"""Child processes for tests that kill, stop and restart real workers, relays, consumers.

A :class:`ChildProcess` is a process the test started, its output in a file: the test
kills it (SIGKILL), stops it (SIGTERM, then waits for its exit code) and reads what it
printed. Everything acts on the PID the test started, and only on it.

- :class:`WorkerProcess` runs a ``durable-sa`` command (``worker`` by default, or
  ``relay``) on an APP, the crash-test workload (:mod:`durable_sa.testing.workload`)
  unless told otherwise;
- :func:`restart_until` plays a supervisor: it starts a worker again each time it dies.

A subclass runs anything else (a broker's own consumers) by saying what to run
(:meth:`ChildProcess.argv`). Children import the same ``durable_sa`` as the test: when
it comes from a source folder (a checkout, not an installed package), that folder goes
first on the child's ``PYTHONPATH``, with the folders given as ``pythonpath``.
"""

from __future__ import annotations

import os
import signal
import site
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final, Self

import durable_sa
from durable_sa.testing.workload import BACKEND_ENV, DATABASE_URL_ENV, STEP_SECONDS_ENV

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

APP: Final = "durable_sa.testing.workload:app"
"""The APP a :class:`WorkerProcess` runs by default: the crash-test workload."""


def child_pythonpath(extra: Sequence[str | Path] = (), inherited: str | None = None) -> str:
    """``PYTHONPATH`` for a child: ``extra``, this ``durable_sa``'s source folder, ``inherited``.

    The source folder is left out when ``durable_sa`` is installed (in site-packages).
    """
    entries = [str(path) for path in extra]
    source = Path(durable_sa.__file__).resolve().parents[1]
    folders = [*site.getsitepackages(), *([site.USER_SITE] if site.USER_SITE else [])]
    installed = {Path(folder).resolve() for folder in folders}
    if source not in installed:
        entries.append(str(source))
    entries += [entry for entry in (inherited or "").split(os.pathsep) if entry]
    return os.pathsep.join(dict.fromkeys(entries))


class ChildProcess:
    """A process the test started, its output in a file: kill it, stop it, read it.

    Subclasses say what to run (:meth:`argv`); ``env`` is added to this process's
    environment, ``cwd`` is where it runs (default: the current folder) and
    ``pythonpath`` goes first on its ``PYTHONPATH``.
    """

    log_prefix = "durable-sa-process-"

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        cwd: Path | None = None,
        pythonpath: Sequence[str | Path] = (),
    ) -> None:
        """Prepare (but do not start) the process."""
        self.env = {**os.environ, **(env or {})}
        self.env["PYTHONPATH"] = child_pythonpath(pythonpath, self.env.get("PYTHONPATH"))
        self.cwd = cwd or Path.cwd()
        self.proc: subprocess.Popen[bytes] | None = None
        handle, name = tempfile.mkstemp(prefix=self.log_prefix, suffix=".log")
        os.close(handle)
        self.log = Path(name)

    def argv(self) -> list[str]:
        """The command line to run."""
        raise NotImplementedError

    def start(self) -> Self:
        """Start the process, its output (stdout and stderr) going to :attr:`log`."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(  # noqa: S603 - the argv the test chose, no shell
                self.argv(), cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        return self

    def kill(self) -> None:
        """SIGKILL the process and wait for it: a crash."""
        proc = self._started()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM the process (if it still runs) and return its exit code."""
        proc = self._started()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=timeout)

    def running(self) -> bool:
        """Whether the process has started and not exited yet."""
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        """What the process printed so far."""
        return self.log.read_text(errors="replace")

    def close(self) -> None:
        """Kill the process if it still runs, and delete its log."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.log.unlink(missing_ok=True)

    def _started(self) -> subprocess.Popen[bytes]:
        if self.proc is None:
            msg = f"{type(self).__name__} was not started"
            raise RuntimeError(msg)
        return self.proc

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.terminate()
        finally:
            self.close()


class WorkerProcess(ChildProcess):
    """One ``durable-sa worker`` process (or another command), its output in a file.

    ``url`` is the database, ``args`` the command's options. ``command`` is the CLI
    command and its APP (``("relay", APP)`` for a relay); ``step_seconds`` how long the
    workload's handlers work; ``backend`` a queue backend URL the workload uses instead
    of the jobs table; ``env`` more environment (it wins over the defaults).
    """

    log_prefix = "durable-sa-worker-"

    def __init__(  # noqa: PLR0913 - the command and its environment, keyword-only
        self,
        url: str,
        *args: str,
        step_seconds: float = 0.01,
        command: Sequence[str] = ("worker", APP),
        backend: str | None = None,
        env: Mapping[str, str] | None = None,
        pythonpath: Sequence[str | Path] = (),
    ) -> None:
        """Prepare (but do not start) the process."""
        super().__init__(
            {
                DATABASE_URL_ENV: url,
                STEP_SECONDS_ENV: str(step_seconds),
                **({BACKEND_ENV: backend} if backend else {}),
                **(env or {}),
            },
            pythonpath=pythonpath,
        )
        self.command = tuple(command)
        self.args = args

    def argv(self) -> list[str]:
        """``python -m durable_sa.cli <command> <APP> <args>``, on this interpreter."""
        return [sys.executable, "-m", "durable_sa.cli", *self.command, *self.args]


def restart_until(
    url: str, args: Sequence[str], done: Callable[[], bool], timeout: float = 120
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
            if not worker.running():  # it died: start it again, as a supervisor would
                worker.close()
                restarts += 1
                worker = WorkerProcess(url, *args).start()
            time.sleep(0.1)
        code = worker.terminate()
        output = worker.output()
    finally:
        worker.close()
    return restarts, code, output
