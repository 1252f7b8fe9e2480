"""The metrics extra is optional: nothing else imports it, and its absence is one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_the_package_a_worker_and_the_cli_never_import_prometheus_client():
    done = _python(
        "import sys, durable_sa, durable_sa.worker, durable_sa.cli, durable_sa.testing\n"
        "from durable_sa import Durable, durable\n"
        "import sqlalchemy as sa\n"
        "from durable_sa.testing import drain\n"
        "e = Durable(sa.create_engine('sqlite://')); e.create_tables()\n"
        "durable('w').step('a', lambda ctx: 1)\n"
        "e.start('w', {}); drain(e)\n"
        "assert 'prometheus_client' not in sys.modules, 'imported'\n"
        "assert 'durable_sa.metrics' not in sys.modules, 'imported'\n"
    )
    assert done.returncode == 0, done.stderr


def test_without_prometheus_client_the_error_says_what_to_install():
    blocked = "import sys; sys.modules['prometheus_client'] = None\n"
    done = _python(
        blocked + "from durable_sa.errors import MetricsNotInstalledError\n"
        "try:\n    import durable_sa.metrics\n"
        "except MetricsNotInstalledError as exc:\n    print(exc)\n"
    )
    assert done.stdout.strip() == (
        "Prometheus metrics need prometheus-client: pip install 'durable-sa[metrics]'."
    )
    done = _python(
        blocked + "from durable_sa.cli import main\n"
        "sys.exit(main(['metrics', 'tests.support.cli_app:engine', '--port', '9100']))\n"
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "durable-sa: Prometheus metrics need prometheus-client: pip install 'durable-sa[metrics]'."
    )
