"""The command as a process, against a real PostgreSQL: no password fragment, no traceback.

A password holding ``@``, ``:`` or ``/`` (unencoded, percent-encoded, or in the query),
a port that is not a number, a run id no column can hold, and an argument or
environment value that is not UTF-8 each end in one ``durable-sa: ...`` line on stderr
and a non-zero exit; what works prints no piece of the password either.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from durable_sa import Durable, durable
from durable_sa.testing import drain

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "Qx7@Lm4:Zr9/Tk2"  # noqa: S105 - a fake password with every separator in it
FRAGMENTS = [part for part in re.split(r"[@:/]", PASSWORD) if part]


def _run(argv, env):
    """Start ``python -m durable_sa.cli *argv`` (argv may hold bytes: not UTF-8)."""
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "durable_sa.cli", *argv],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _url(base: sa.URL, password: str, *, database: str | None = None, port: str = "") -> str:
    where = f"{base.host}:{port or base.port}/{database or base.database}"
    return f"postgresql+psycopg://{base.username}:{password}@{where}"


@pytest.fixture
def seeded(durable_postgres_url: str) -> tuple[sa.URL, int]:
    """The database, with one run in it (the server trusts loopback: any password works)."""
    engine = Durable(sa.create_engine(durable_postgres_url))
    engine.create_tables()
    durable("pw-check").step("only", lambda ctx: {"ok": True})
    run_id = engine.start("pw-check", {"n": 1}).run_id
    drain(engine)
    engine.sa_engine.dispose()
    return sa.make_url(durable_postgres_url), run_id


def test_no_piece_of_a_password_and_no_traceback_whatever_the_mistake(seeded):
    base, run_id = seeded
    encoded = quote(PASSWORD, safe="")
    typed = _url(base, PASSWORD)
    good = _url(base, encoded)
    env = {key: value for key, value in os.environ.items() if key != "DURABLE_SA_DATABASE_URL"}
    mistakes = {  # name: (argv, expected exit code, what stderr says)
        "unencoded, list": (["list", "--database-url", typed], 2, "has more than one '@'"),
        "unencoded, status": (
            ["status", str(run_id), "--database-url", typed],
            2,
            "percent-encode",
        ),
        "unencoded, json": (["list", "--json", "--database-url", typed], 2, "percent-encode"),
        "the brief's url": (
            ["list", "--database-url", "postgresql+psycopg://u:p@ss:w/rd@127.0.0.1:5432/db"],
            2,
            "bad database URL postgresql+psycopg://u:***@127.0.0.1:5432/db",
        ),
        "port abc": (
            ["list", "--database-url", _url(base, encoded, port="abc")],
            2,
            "the port must be a number",
        ),
        "port abc, unencoded": (
            ["list", "--database-url", _url(base, PASSWORD, port="abc")],
            2,
            "has more than one '@'",
        ),
        "huge run id": (
            ["status", "99999999999999999999", "--database-url", good],
            1,
            "No durable run with id 99999999999999999999 exists.",
        ),
        "negative run id": (
            ["status", "-1", "--database-url", good],
            1,
            "No durable run with id -1 exists.",
        ),
        "huge dead letter id": (
            ["dead-letters", "show", "99999999999999999999", "--json", "--database-url", good],
            1,
            "No dead letter with id 99999999999999999999",
        ),
        "no such database": (
            ["list", "--database-url", _url(base, encoded, database="nope")],
            1,
            'database "nope" does not exist',
        ),
        "workflow not utf-8": (
            ["list", "--workflow", b"\xff", "--database-url", good],
            2,
            "argument 3 (the value of --workflow) is not valid UTF-8",
        ),
        "run id not utf-8": (
            ["status", b"\xff", "--database-url", good],
            2,
            "argument 2 is not valid UTF-8",
        ),
        "url not utf-8": (
            ["list", "--database-url", _url(base, encoded).encode() + b"\xff"],
            2,
            "argument 3 (the value of --database-url) is not valid UTF-8",
        ),
    }
    procs = {name: _run(argv, env) for name, (argv, _, _) in mistakes.items()}
    environment = _run(
        ["list"], {**env, "DURABLE_SA_DATABASE_URL": typed.encode().replace(b"Zr9", b"Zr9\xff")}
    )
    procs["environment not utf-8"] = environment
    mistakes["environment not utf-8"] = ([], 2, "DURABLE_SA_DATABASE_URL is not valid UTF-8")
    for name, proc in procs.items():
        raw_out, raw_err = proc.communicate(timeout=60)
        out = raw_out.decode("utf-8", "backslashreplace")
        err = raw_err.decode("utf-8", "backslashreplace")
        _, code, says = mistakes[name]
        assert (proc.returncode, out) == (code, ""), (name, err)
        assert err.startswith("durable-sa: "), (name, err)
        assert err.count("\n") == 1, (name, err)
        assert "Traceback" not in err, (name, err)
        assert says in err, (name, err)
        for fragment in FRAGMENTS:
            assert fragment not in err, (name, fragment, err)
        if name == "the brief's url":  # its pieces are common letters: check them joined
            for piece in ("p@ss", "ss:w", "w/rd", ":p@", "rd@"):
                assert piece not in err, (name, piece, err)


def test_an_encoded_password_works_and_is_never_printed(seeded):
    base, run_id = seeded
    good = _url(base, quote(PASSWORD, safe=""))
    query = f"{base.render_as_string(hide_password=False)}?password={quote(PASSWORD, safe='')}"
    env = {key: value for key, value in os.environ.items() if key != "DURABLE_SA_DATABASE_URL"}
    runs = {
        "list": _run(["list", "--database-url", good], env),
        "list --json": _run(["list", "--json", "--database-url", good], env),
        "status --json": _run(["status", str(run_id), "--json", "--database-url", good], env),
        "recover, password in the query": _run(["recover", "--database-url", query], env),
        "from the environment": _run(["workers"], {**env, "DURABLE_SA_DATABASE_URL": good}),
    }
    outputs = {}
    for name, proc in runs.items():
        raw_out, raw_err = proc.communicate(timeout=60)
        out, err = raw_out.decode(), raw_err.decode()
        assert (proc.returncode, err) == (0, ""), (name, err)
        assert "Traceback" not in out
        for fragment in FRAGMENTS:
            assert fragment not in out, (name, fragment, out)
        outputs[name] = out
    assert outputs["list"].splitlines()[1].split()[:2] == [str(run_id), "pw-check"]
    (listed,) = [json.loads(line) for line in outputs["list --json"].splitlines()]
    assert (listed["run_id"], listed["status"]) == (run_id, "completed")
    shown = json.loads(outputs["status --json"])
    assert shown["journal"][0]["result"] == {"ok": True}
    assert "?password=***:" in outputs["recover, password in the query"]
    assert outputs["from the environment"] == "no live workers\n"
