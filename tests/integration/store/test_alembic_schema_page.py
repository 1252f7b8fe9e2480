"""docs/schema.md lists every table, index, constraint and trigger as they are.

The page's list (under ``<!-- schema:objects -->``) is compared with the metadata: each
primary key, foreign key, unique constraint and index by its name and what it covers
(columns, ``WHERE``, ``ON DELETE``); and with the trigger DDL's names. The tests in
``test_alembic.py`` check those trigger names against a real PostgreSQL.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from durable_sa.schema import TRIGGERS, metadata
from durable_sa.store.notify import FUNCTIONS

PAGE = Path(__file__).resolve().parents[3] / "docs" / "schema.md"


def page_rows() -> list[tuple[str, str, str]]:
    """The list's rows: (table, name, what), the first two without their backticks."""
    text = PAGE.read_text(encoding="utf-8")
    found = re.search(r"<!-- schema:objects -->\n((?:\|.*\|\n)+)", text)
    assert found, "docs/schema.md has no list under <!-- schema:objects -->"
    header, rule, *lines = found[1].splitlines()
    assert header == "| Table | Name | What |"
    assert set(rule) <= {"|", "-"}
    rows = []
    for line in lines:
        table, name, what = (cell.strip() for cell in line.strip("|").split(" | "))
        rows.append((table.strip("`"), name.strip("`"), what))
    return rows


def _columns(columns: sa.ColumnCollection[str, sa.Column[object]]) -> str:
    return ", ".join(column.name for column in columns)


def _where(index: sa.Index) -> str:
    """`` WHERE ...`` of a partial index: the same on PostgreSQL and SQLite, or no row fits."""
    where = {str(index.dialect_options[name]["where"]) for name in ("postgresql", "sqlite")}
    assert len(where) == 1, f"{index.name} is partial differently per database: {where}"
    (clause,) = where
    return "" if clause == "None" else f" WHERE {clause}"


def describe(item: sa.Constraint | sa.Index) -> str:
    """What the page says of a constraint or index, built from the metadata alone."""
    if isinstance(item, sa.Index):
        kind = "unique index" if item.unique else "index"
        return f"{kind} `({_columns(item.columns)}){_where(item)}`"
    if isinstance(item, sa.PrimaryKeyConstraint):
        return f"primary key `({_columns(item.columns)})`"
    if isinstance(item, sa.UniqueConstraint):
        return f"unique constraint `({_columns(item.columns)})`"
    if isinstance(item, sa.ForeignKeyConstraint):
        target = item.elements[0].column.table.name
        referred = ", ".join(element.column.name for element in item.elements)
        on_delete = f", `ON DELETE {item.ondelete}`" if item.ondelete else ""
        return f"foreign key `({_columns(item.columns)})` to `{target} ({referred})`{on_delete}"
    msg = f"the page test cannot describe {item!r} yet: teach describe() and list it"
    raise AssertionError(msg)


def metadata_rows() -> list[tuple[str, str, str]]:
    """Every constraint and index of the metadata, as the page should list it."""
    rows = []
    for table in metadata.sorted_tables:
        for item in [*table.constraints, *table.indexes]:
            assert isinstance(item.name, str), f"{table.name} has an unnamed {item!r}"
            rows.append((table.name, item.name, describe(item)))
    return rows


def test_the_page_lists_every_constraint_and_index_as_the_metadata_has_it() -> None:
    listed = [row for row in page_rows() if not row[2].startswith("trigger")]
    assert len(listed) == len(set(listed))
    assert sorted(listed) == sorted(metadata_rows())


def test_the_page_lists_every_trigger_with_its_table_and_function() -> None:
    triggers = [row for row in page_rows() if row[2].startswith("trigger")]
    expected = {(table, name) for table, names in TRIGGERS.items() for name in names}
    assert sorted((table, name) for table, name, _ in triggers) == sorted(expected)
    for table, name, what in triggers:
        assert what.startswith("trigger (PostgreSQL): "), name
        assert f"`{FUNCTIONS[table]}()`" in what, name


def test_the_page_names_every_table_and_only_those() -> None:
    text = PAGE.read_text(encoding="utf-8")
    tables = set(metadata.tables)
    assert {table for table, _, _ in page_rows()} == tables
    described = set(re.findall(r"^\*\*`(durable_\w+)`\*\*", text, re.MULTILINE))
    assert described == tables


@pytest.mark.parametrize("table", sorted(metadata.tables))
def test_tables_with_an_integer_id_autoincrement_on_sqlite_as_the_page_says(table: str) -> None:
    columns = list(metadata.tables[table].primary_key.columns)
    integer = len(columns) == 1 and columns[0].type._type_affinity is sa.Integer
    assert metadata.tables[table].dialect_options["sqlite"]["autoincrement"] is integer
