"""User mistakes end in one line on stderr, a non-zero exit and no password (in-process).

The errors of :mod:`durable_sa.cli.errors`, as ``main`` prints them; no database is reached.
"""

from __future__ import annotations

import pytest

from durable_sa.cli import CliError, Invocation, load_app

UNREACHABLE = "postgresql+psycopg://user:s3cret@127.0.0.1:1/db"


def _one_line(code, out, err, expected_code):
    assert code == expected_code
    assert out == ""
    assert err.startswith("durable-sa: ")
    assert err.endswith("\n")
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert "s3cret" not in err


@pytest.mark.parametrize(
    ("argv", "code", "says"),
    [
        (
            ["list", "--database-url", UNREACHABLE],
            1,
            "could not reach the database at postgresql+psycopg://user:***@127.0.0.1:1/db",
        ),
        (["status", "1", "--database-url", UNREACHABLE], 1, "could not reach the database"),
        (
            ["list", "--database-url", "nosuchdb://user:s3cret@host/db"],
            2,
            "bad database URL nosuchdb://user:***@host/db",
        ),
        (["list", "--database-url", "not a url s3cret"], 2, "bad database URL"),
        (["list", "--database-url", "sqlite:////no/such/dir/missing.db"], 1, "no SQLite database"),
        (
            ["resume", "1", "go", "--data", "{nope", "--database-url", UNREACHABLE],
            2,
            "--data is not valid JSON",
        ),
        (["list", "--status", "sleeping"], 2, "invalid choice: 'sleeping'"),
        (["list", "--limit", "0"], 2, "expected a whole number of at least 1"),
        (["status", "one"], 2, "invalid int value: 'one'"),
        (["prune"], 2, "the following arguments are required: --older-than"),
        (
            ["prune", "--older-than", "30"],
            2,
            (
                "argument --older-than: expected an age as a whole number and a unit (s, m, h, d "
                "or w), such as 90s, 15m, 12h, 30d or 2w, not '30' (see `durable-sa prune --help`)"
            ),
        ),
        (["prune", "--older-than=-3d"], 2, "not '-3d'"),
        (["prune", "--older-than", "1.5h"], 2, "not '1.5h'"),
        (["prune", "--older-than", "3 months"], 2, "not '3 months'"),
        (["prune", "--older-than", "99999999999w"], 2, "the age '99999999999w' is too large"),
        (["prune", "--older-than", "30d", "--batch-size", "0"], 2, "at least 1, not '0'"),
        (["prune", "--older-than", "30d", "--database-url", UNREACHABLE], 1, "could not reach"),
        (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
        (["list", "--since", "yesterday"], 2, "an ISO 8601 time such as 2024-05-01"),
        (["list", "--since", "2024-13-01"], 2, "not '2024-13-01'"),
        (
            ["list", "--workflow", "\udcff"],
            2,
            "argument 3 (the value of --workflow) is not valid UTF-8",
        ),
        (["status", "\udcff"], 2, "argument 2 is not valid UTF-8"),
        (
            ["list", "--database-url=postgresql://u:Qx7\udcffpw@h/db"],
            2,
            "argument 2 (the value of --database-url) is not valid UTF-8",
        ),
        (
            ["list", "--database-url", "postgresql+psycopg://user:s3cret@127.0.0.1:abc/db"],
            2,
            "bad database URL postgresql+psycopg://user:***@127.0.0.1:abc/db: the port must be",
        ),
        (
            ["list", "--database-url", "postgresql+psycopg://user:s3@cr:e/t@127.0.0.1:1/db"],
            2,
            "bad database URL postgresql+psycopg://user:***@127.0.0.1:1/db: it has more than one",
        ),
        ([], 2, "the following arguments are required: COMMAND"),
        (
            ["worker", "tests.support.cli_app:engine", "--lease", "1", "--heartbeat", "1"],
            2,
            "must be at least twice the heartbeat",
        ),
        (
            ["worker", "tests.support.cli_app:engine", "--grace", "-1"],
            2,
            "expected a number of seconds above 0",
        ),
    ],
)
def test_a_mistake_is_one_line(cli, argv, code, says, tmp_path):
    _one_line(*cli(*argv), code)
    _, _, err = cli(*argv)
    assert says in err


def test_a_password_never_appears_even_when_it_is_short_or_odd(cli):
    for password in ("s3cret", "p%40ss", "hunter2hunter2"):
        url = f"postgresql+psycopg://user:{password}@127.0.0.1:1/db"
        code, out, err = cli("workers", "--database-url", url)
        assert code == 1
        assert password not in out + err
        assert "user:***@127.0.0.1:1/db" in err


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("tests.support.cli_app", "APP must look like package.module:attribute"),
        (":engine", "APP must look like package.module:attribute"),
        ("no_such_package.workflows:engine", "cannot import APP module 'no_such_package"),
        ("tests.support.cli_app:missing", "module 'tests.support.cli_app' has no attribute"),
        (
            "tests.support.cli_app:not_an_engine",
            "is not a durable_sa.Durable (nor a function that returns one): got int",
        ),
        (  # a step, not the engine: refused before it is called
            "tests.support.cli_app:fetch",
            "APP 'tests.support.cli_app:fetch' is a function that needs arguments (ctx)",
        ),
    ],
)
def test_a_bad_app_is_a_usage_error(cli, spec, says):
    with pytest.raises(CliError) as raised:
        load_app(spec)
    assert raised.value.code == 2
    assert says in str(raised.value)
    code, out, err = cli("worker", spec)
    _one_line(code, out, err, 2)
    assert says in err


@pytest.mark.parametrize("command", ["worker", "metrics", "dashboard"])
def test_an_app_that_needs_arguments_is_one_line_for_every_command(cli, command):
    code, out, err = cli(command, "tests.support.cli_app:fetch")
    _one_line(code, out, err, 2)
    assert "needs arguments (ctx)" in err


def test_app_may_be_an_engine_or_a_factory():
    from tests.support import cli_app  # noqa: PLC0415

    assert load_app("tests.support.cli_app:engine") is cli_app.engine
    assert load_app("tests.support.cli_app:make_engine") is cli_app.engine


def test_a_common_password_does_not_mangle_the_scheme(cli):
    url = "postgresql+psycopg://app:postgres@127.0.0.1:1/db"
    code, _, err = cli("list", "--database-url", url)
    assert code == 1
    assert "postgresql+psycopg://app:***@127.0.0.1:1/db" in err
    assert "postgres@" not in err
    assert Invocation(secrets={"postgres"}).scrub("postgres, postgresql, x postgres") == (
        "***, postgresql, x ***"
    )


def test_a_database_url_from_the_environment_that_is_not_utf8_is_one_line(cli, monkeypatch):
    monkeypatch.setenv("DURABLE_SA_DATABASE_URL", "postgresql://u:Qx7\udcffpw@h/db")
    code, out, err = cli("list")
    _one_line(code, out, err, 2)
    assert err == (
        "durable-sa: DURABLE_SA_DATABASE_URL is not valid UTF-8; set it to the URL as UTF-8 text\n"
    )


def test_a_query_option_the_dialect_refuses_is_one_line(cli, tmp_path):
    database = tmp_path / "app.db"
    database.touch()
    code, out, err = cli("list", "--database-url", f"sqlite:///{database}?timeout=abc")
    _one_line(code, out, err, 2)
    assert err == (
        f"durable-sa: bad database URL sqlite:///{database}?timeout=abc: "
        "could not convert string to float: 'abc'\n"
    )
