"""What ``durable-sa metrics`` reads before it serves: one cheap statement, one line if it fails."""

from __future__ import annotations

import re
import socket
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import Engine, event
from sqlalchemy.exc import DBAPIError

from durable_sa.metrics import DurableCollector
from durable_sa.store.models import metadata, paused_table

if TYPE_CHECKING:
    from collections.abc import Iterator

    import sqlalchemy as sa

    from durable_sa import Durable


class _Statements:
    """The SQL ``sa_engine`` runs while listening (the class: every engine's)."""

    def __init__(self, sa_engine: sa.Engine | type[sa.Engine]) -> None:
        self.sa_engine = sa_engine
        self.seen: list[str] = []

    def _record(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.seen.append(statement)

    def __enter__(self) -> list[str]:
        event.listen(self.sa_engine, "before_cursor_execute", self._record)
        return self.seen

    def __exit__(self, *exc: object) -> None:
        event.remove(self.sa_engine, "before_cursor_execute", self._record)


def _tables_named(statements: list[str]) -> set[str]:
    return {
        table.name
        for table in metadata.sorted_tables
        if any(re.search(rf"\b{table.name}\b", sql) for sql in statements)
    }


@pytest.fixture
def collector(engine: Durable) -> DurableCollector:
    return DurableCollector(engine, cache_seconds=0)


@pytest.fixture
def taken_port() -> Iterator[str]:
    """A port another socket holds: should the check pass, serving fails, never hangs."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield str(taken.getsockname()[1])


def test_the_check_is_one_statement_naming_every_table_a_read_reads(
    engine: Durable, collector: DurableCollector
) -> None:
    with _Statements(engine.sa_engine) as checked:
        collector.check()
    with _Statements(engine.sa_engine) as read:
        collector.readings()
    assert len(checked) == 1  # a full read is several
    assert len(read) > 1
    assert _tables_named(read) <= _tables_named(checked)


def test_a_missing_table_fails_the_check_as_it_fails_a_read(
    engine: Durable, collector: DurableCollector
) -> None:
    paused_table.drop(engine.sa_engine)
    with pytest.raises(DBAPIError):
        collector.readings()
    with pytest.raises(DBAPIError):
        collector.check()


def test_metrics_on_a_database_without_tables_is_one_line(
    sa_engine: sa.Engine, durable_each_database_url, cli, app, taken_port
):
    with sa_engine.begin() as conn:  # make the SQLite file exist, empty
        conn.exec_driver_sql("CREATE TABLE unrelated (id INTEGER)")
    url = ["--database-url", durable_each_database_url]
    code, out, err = cli("metrics", *url, "--port", taken_port)
    assert (code, out) == (1, "")
    assert err.startswith("durable-sa: ")
    assert "has no durable-sa tables" in err
    assert err.count("\n") == 1


def test_metrics_on_a_database_missing_one_table_is_one_line(
    engine: Durable, durable_each_database_url, cli, app, taken_port
):
    paused_table.drop(engine.sa_engine)
    url = ["--database-url", durable_each_database_url]
    code, out, err = cli("metrics", *url, "--port", taken_port)
    assert (code, out) == (1, "")
    assert "has no durable-sa tables" in err
    assert err.count("\n") == 1


def test_metrics_starts_with_the_check_alone(
    engine: Durable, durable_each_database_url, cli, app, taken_port
):
    url = ["--database-url", durable_each_database_url]
    with _Statements(Engine) as seen:  # the engine the command makes of the URL
        code, _, err = cli("metrics", *url, "--port", taken_port)
    assert (code, err) == (
        1,
        f"durable-sa: cannot serve metrics on 127.0.0.1:{taken_port}: Address already in use\n",
    )
    (checked,) = seen
    assert "UNION ALL" in checked


def test_metrics_on_a_database_nobody_serves_is_one_line(cli, app, taken_port):
    with socket.socket() as closed:  # a port nothing listens on once this closes
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    url = f"postgresql+psycopg://nobody@127.0.0.1:{port}/nothing"
    code, out, err = cli("metrics", "--database-url", url, "--port", taken_port)
    assert (code, out) == (1, "")
    assert err.startswith("durable-sa: could not reach the database at ")
    assert err.count("\n") == 1
