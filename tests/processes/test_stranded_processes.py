"""A run whose job killed its worker every time: stranded, told, then recovered.

Real worker processes dead-letter the job (it crashes each one that takes it); the
command, run as operators run it, shows the run stranded with the dead letter's reason
in ``list`` and ``status`` (text and JSON); ``recover`` gives it a job again and resolves
the dead letter, and the run is no longer stranded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from durable_sa.testing.processes import restart_until

if TYPE_CHECKING:
    from durable_sa import Durable

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parents[2]


def _cli(url: str, *argv: str) -> str:
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "durable_sa.cli", *argv, "--database-url", url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    return done.stdout


def test_a_dead_lettered_run_is_shown_stranded_until_recovered(
    durable_workload_url: str, rel_engine: Durable
) -> None:
    run_id = rel_engine.start("rel-crash").run_id
    args = ("--concurrency", "1", "--lease", "1", "--heartbeat", "0.2", "--poll-interval", "0.2")
    _, code, output = restart_until(
        durable_workload_url, args, lambda: bool(rel_engine.admin.dead_letters())
    )
    assert code == 0, output
    (letter,) = rel_engine.admin.dead_letters()
    assert "crashed" in letter.error or "claimed" in letter.error, letter.error
    told = f"dead letter {letter.id}: {letter.error}"

    snap = rel_engine.status(run_id)
    assert (snap.status, snap.stranded) == ("running", told)
    listed = _cli(durable_workload_url, "list")
    (line,) = [row for row in listed.splitlines() if row.split()[:1] == [str(run_id)]]
    assert "stranded" in line
    assert f"dead letter {letter.id}" in line
    status = _cli(durable_workload_url, "status", str(run_id))
    assert f"stranded:        {told}" in status
    as_json = json.loads(_cli(durable_workload_url, "status", str(run_id), "--json"))
    assert as_json["stranded"] == told

    assert "re-enqueued 1 run(s)" in _cli(durable_workload_url, "recover")
    assert rel_engine.admin.dead_letters() == []
    (resolved,) = rel_engine.admin.dead_letters(include_resolved=True)
    assert resolved.resolved_by == "recover"
    assert rel_engine.status(run_id).stranded is None
    assert (
        json.loads(_cli(durable_workload_url, "status", str(run_id), "--json"))["stranded"] is None
    )
