"""PostgreSQL objects that follow the tables: the schema they go in, and when they are made.

The NOTIFY triggers (:mod:`durable_sa.store.notify`) and the engine's functions
(:mod:`durable_sa.store.grant_function`, :mod:`durable_sa.store.slot_function`) live in
the schema their tables live in, which a ``schema_translate_map`` may change per
connection (one schema per tenant); a function is made when its table is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import event

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy import Connection, Table


def qualified(schema: str | None, name: str) -> str:
    """``name`` in ``schema`` (quoted already), or as it is for the search path."""
    return name if schema is None else f"{schema}.{name}"


def translated_schema(connection: Connection, table: Table) -> str | None:
    """The schema ``table`` lives in on ``connection`` (its name); ``None``: the search path."""
    schema = table.schema
    translate = connection.get_execution_options().get("schema_translate_map") or {}
    return translate.get(schema, schema)


def schema_of(connection: Connection, table: Table) -> str | None:
    """The schema ``table`` lives in on ``connection``, quoted; ``None`` for the search path."""
    schema = translated_schema(connection, table)
    if schema is None:
        return None
    return connection.dialect.identifier_preparer.quote_schema(schema)


def made_with(table: Table, ddl: Callable[[str | None], str]) -> Callable[[Connection], None]:
    """Run ``ddl`` (for ``table``'s schema) whenever ``table`` is created; the installer.

    The installer creates or replaces the object on a PostgreSQL connection (idempotent;
    nothing elsewhere), for ``create_triggers`` and the like.
    """

    def install(connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(ddl(schema_of(connection, table)))

    def after_create(created: Table, connection: Connection, **_: Any) -> None:  # noqa: ANN401
        del created
        install(connection)

    event.listen(table, "after_create", after_create)
    return install
