"""The pytest plugin, as a user's test suite sees it: fixtures, the option, the env var.

Each test writes a small user test file and runs it in a fresh pytest process, so the
plugin is found the way a user's pytest finds it: through the ``pytest11`` entry point.
"""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

import sqlalchemy as sa

from durable_sa.testing.pytest_plugin import ENV_VAR

if TYPE_CHECKING:
    import pytest

USER_TESTS = """
from datetime import timedelta

from durable_sa import durable
from durable_sa.testing import Driver, FakeClock, check_workflow

durable("plugin-nap").step("pack", lambda ctx: ctx.input["item"]).sleep(
    "nap", timedelta(hours=1)
).step("ship", lambda ctx: f"shipped {ctx.results['pack']}")


def test_a_sleep_ends_when_the_clock_moves(durable_engine, durable_clock, durable_driver):
    run = durable_engine.start("plugin-nap", {"item": "book"})
    durable_driver.run_due()
    assert durable_engine.status(run.run_id).status == "running"  # asleep

    durable_clock.advance(timedelta(minutes=59))
    durable_driver.run_due()
    assert durable_engine.status(run.run_id).status == "running"  # still asleep

    durable_clock.advance(timedelta(minutes=1))
    durable_driver.run_due()
    status = durable_engine.status(run.run_id)
    assert status.status == "completed"
    assert status.result == {"pack": "book", "ship": "shipped book"}


def test_the_fixtures_fit_together(durable_database_url, durable_engine, durable_clock,
                                   durable_driver):
    assert isinstance(durable_clock, FakeClock)
    assert isinstance(durable_driver, Driver)
    assert durable_driver.engine is durable_engine
    assert durable_engine.now == durable_clock()
    assert durable_engine.sa_engine.url.render_as_string(hide_password=False) == (
        durable_database_url
    )
    assert durable_engine.sa_engine.dialect.name == EXPECTED_DIALECT


def test_check_workflow_takes_the_engine(durable_engine):
    check_workflow(durable_engine, "plugin-nap", max_examples=10, max_events=4)
"""


def write_user_tests(pytester: pytest.Pytester, dialect: str) -> None:
    source = textwrap.dedent(USER_TESTS) + f"\nEXPECTED_DIALECT = {dialect!r}\n"
    pytester.makepyfile(test_user_workflows=source)


def test_fixtures_on_a_fresh_sqlite_file_by_default(pytester, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    write_user_tests(pytester, "sqlite")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_fixtures_on_postgresql_with_the_option(pytester, monkeypatch, durable_postgres_url):
    monkeypatch.delenv(ENV_VAR, raising=False)
    write_user_tests(pytester, "postgresql")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", f"--durable-database-url={durable_postgres_url}"
    )
    result.assert_outcomes(passed=3)
    engine = sa.create_engine(durable_postgres_url)
    try:
        assert "durable_runs" in sa.inspect(engine).get_table_names()  # created if missing
    finally:
        engine.dispose()


def test_the_environment_variable_names_the_database(pytester, monkeypatch, tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    monkeypatch.setenv(ENV_VAR, url)
    write_user_tests(pytester, "sqlite")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    engine = sa.create_engine(url)
    try:
        assert "durable_runs" in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_the_option_is_in_pytest_help(pytester):
    result = pytester.runpytest_subprocess("--help")
    result.stdout.fnmatch_lines(["*--durable-database-url=URL*"])


SERVER_TESTS = """
import sys

import pytest
import redis
import sqlalchemy as sa

from durable_sa import durable, registry


def test_no_server_is_started_unless_a_test_asks():
    assert "durable_sa.testing.servers" not in sys.modules


def test_each_database_is_fresh(durable_each_database_url):
    engine = sa.create_engine(durable_each_database_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE mine (id INTEGER PRIMARY KEY)"))
    finally:
        engine.dispose()


@pytest.mark.parametrize("durable_each_database_url", ["postgresql"], indirect=True)
def test_an_engine_on_one_database(durable_sqlalchemy_engine):
    assert durable_sqlalchemy_engine.dialect.name == "postgresql"


def test_a_workflow_defined_here(durable_clean_registry):
    durable("plugin-leak").step("a", lambda ctx: 1)
    assert "plugin-leak" in registry.names()


def test_is_gone_in_the_next_test():
    assert "plugin-leak" not in registry.names()


def test_redis_writes(durable_redis_url):
    redis.Redis.from_url(durable_redis_url).set("left-over", "1")


def test_redis_is_emptied_for_each_test(durable_redis_url, durable_redis_server):
    assert durable_redis_url == durable_redis_server.url
    assert redis.Redis.from_url(durable_redis_url).get("left-over") is None
"""


def test_server_fixtures_as_a_backends_suite_sees_them(
    pytester, monkeypatch, durable_postgres_server, durable_redis_server
):
    # The user's session uses this session's servers (as a CI job would, by URL).
    monkeypatch.setenv("DURABLE_SA_TEST_POSTGRES_URL", durable_postgres_server.url("postgres"))
    monkeypatch.setenv("DURABLE_SA_TEST_REDIS_URL", durable_redis_server.url)
    pytester.makepyfile(test_backend_suite=SERVER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines(
        [
            "*test_each_database_is_fresh?sqlite? PASSED*",
            "*test_each_database_is_fresh?postgresql? PASSED*",
            "*test_an_engine_on_one_database?postgresql? PASSED*",
        ]
    )
