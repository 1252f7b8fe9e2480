"""Column types that behave the same on PostgreSQL and SQLite.

- :class:`UTCDateTime` always hands back timezone-aware UTC datetimes. On SQLite, which
  has no time zones, it stores naive UTC text in one fixed format, so comparing stored
  instants (``available_at <= :now``) stays correct.
- :class:`JSONColumn` is ``JSON`` on PostgreSQL and JSON text elsewhere; ``None`` is SQL
  NULL. Not ``JSONB``: JSONB keeps no text, so ``1e16`` would read back as an integer,
  ``-0.0`` as ``0.0`` and object keys in another order, while ``json`` keeps the
  serializer's text exactly, as SQLite does. Nothing queries these columns with JSONB
  operators or indexes them; a column created as JSONB by an earlier release keeps
  working (PostgreSQL casts between the two on assignment) but keeps normalising numbers
  until it is migrated (docs/schema.md).
- :class:`StatusType` stores a :class:`RunStatus` as its name and reads it back as one.

Their public home is :mod:`durable_sa.schema`, and each says so in its ``__module__``:
Alembic's autogenerate writes a custom type into a migration as
``<type's module>.<repr of the type>``, and a migration must name a module whose place
does not change, not this one inside the package. For the same reason each is one
class (a variant type renders PostgreSQL's type in a migration generated against
SQLite with a bare ``Text()`` that does not run), and each ``repr`` is a call that
rebuilds it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, DateTime, Dialect, String, TypeDecorator
from sqlalchemy.dialects import postgresql

from durable_sa.core.status import RunStatus

if TYPE_CHECKING:
    from sqlalchemy.types import TypeEngine

PUBLIC_HOME = "durable_sa.schema"
"""The module that exports these types, and that migrations name."""


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python."""

    __module__ = PUBLIC_HOME
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Normalise to UTC; SQLite gets naive UTC."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            msg = f"durable-sa stores aware datetimes only; got naive {value!r}"
            raise ValueError(msg)
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Attach UTC to what the driver returns."""
        del dialect
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class StatusType(TypeDecorator[RunStatus]):
    """A run status, stored as its lower-case name (``StatusType(length=16)``)."""

    __module__ = PUBLIC_HOME
    impl = String
    cache_ok = True

    def __init__(self, length: int = 16) -> None:
        super().__init__(length=length)

    def process_bind_param(self, value: RunStatus | str | None, dialect: Dialect) -> str | None:
        """Store the name, refusing anything that is not a status."""
        del dialect
        return None if value is None else RunStatus(value).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> RunStatus | None:
        """Read the name back as a :class:`RunStatus`."""
        del dialect
        return None if value is None else RunStatus(value)


class JSONColumn(TypeDecorator[Any]):
    """A JSON value, kept as its text: ``JSON`` on PostgreSQL and SQLite; ``None`` is SQL NULL."""

    __module__ = PUBLIC_HOME
    impl = JSON
    cache_ok = True
    hashable = False  # as JSON: dicts and lists cannot be hashed (the ORM asks)

    def __init__(self) -> None:
        super().__init__(none_as_null=True)

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """PostgreSQL's ``json`` (not ``jsonb``); the generic JSON type elsewhere."""
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.JSON(none_as_null=True))
        return dialect.type_descriptor(JSON(none_as_null=True))

    def __repr__(self) -> str:
        return "JSONColumn()"
