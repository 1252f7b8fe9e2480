"""Without OpenTelemetry installed: no import error, no span, nothing stored, runs run."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = textwrap.dedent(
    """
    import sys

    sys.modules["opentelemetry"] = None  # as if the extra were not installed

    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from durable_sa import Durable, WorkflowRun, durable
    from durable_sa.cli.scrubbing import Invocation, configure_logging
    from durable_sa.telemetry.spans import Tracing
    from durable_sa.telemetry.tracing import tracing
    from durable_sa.testing import drain

    assert type(tracing) is Tracing, tracing
    configure_logging("INFO", Invocation(), "json")
    engine = Durable(sa.create_engine(sys.argv[1]))
    engine.create_tables()
    durable("plain").step("one", lambda ctx: 1)
    run_id = engine.start("plain").run_id
    assert drain(engine) == 1
    with Session(engine.sa_engine) as session:
        run = session.get(WorkflowRun, run_id)
        assert run.status == "completed" and run.trace_context is None
    assert not [name for name in sys.modules if name.startswith("opentelemetry.")]
    print("ok")
    """
)


def test_durable_sa_runs_without_opentelemetry(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    done = subprocess.run(  # noqa: S603 - this interpreter, our script
        [sys.executable, "-c", SCRIPT, url],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "ok"
    assert '"workflow": "plain"' in done.stderr  # the JSON log lines need no OpenTelemetry
