"""Column types that behave the same on PostgreSQL and SQLite.

- :class:`UTCDateTime` always hands back timezone-aware UTC datetimes. On SQLite, which
  has no time zones, it stores naive UTC text in one fixed format, so comparing stored
  instants (``available_at <= :now``) stays correct.
- :data:`JSONColumn` is JSONB on PostgreSQL and JSON text elsewhere; ``None`` is SQL NULL.
- :class:`StatusType` stores a :class:`RunStatus` as its name and reads it back as one.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, DateTime, Dialect, String, TypeDecorator
from sqlalchemy.dialects.postgresql import JSONB

from durable_sa.core.status import RunStatus

JSONColumn = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python."""

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
    """A run status, stored as its lower-case name."""

    impl = String(16)
    cache_ok = True

    def process_bind_param(self, value: RunStatus | str | None, dialect: Dialect) -> str | None:
        """Store the name, refusing anything that is not a status."""
        del dialect
        return None if value is None else RunStatus(value).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> RunStatus | None:
        """Read the name back as a :class:`RunStatus`."""
        del dialect
        return None if value is None else RunStatus(value)
