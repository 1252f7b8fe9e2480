"""What an Alembic migration of durable-sa's tables needs, from one public home.

An application that manages its schema with Alembic points ``target_metadata`` at
:data:`metadata`, lets autogenerate write the migration, and adds the PostgreSQL
triggers autogenerate cannot see (docs/schema.md, "Migrations with Alembic")::

    import durable_sa.schema                    # at the top of the migration

    def upgrade() -> None:
        ...                                     # what autogenerate wrote
        durable_sa.schema.create_triggers(op)

    def downgrade() -> None:
        durable_sa.schema.drop_triggers(op)
        ...                                     # what autogenerate wrote

Rules:
- A migration names this module only, never ``durable_sa.store``: the column types'
  ``__module__`` is this module, so autogenerate writes ``durable_sa.schema.UTCDateTime``
  and the like, and the package may rearrange its insides without breaking migrations.
- The trigger helpers follow the migration's database: on PostgreSQL they create (or
  drop) the NOTIFY triggers and their functions, anywhere else they do nothing, so one
  migration serves both. ``schema`` names the PostgreSQL schema the tables live in
  (``None``: the search path), quoted as needed.
- The DDL itself is exported too (:func:`trigger_ddl`, :func:`drop_trigger_ddl`), to
  print and paste into a migration that keeps the SQL as it was on the day it was
  written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from durable_sa.store.models import metadata
from durable_sa.store.notify import TRIGGERS, drop_trigger_ddl, trigger_ddl
from durable_sa.store.types import JSONColumn, StatusType, UTCDateTime

if TYPE_CHECKING:
    from sqlalchemy import Dialect

__all__ = [
    "TRIGGERS",
    "JSONColumn",
    "MigrationOperations",
    "StatusType",
    "UTCDateTime",
    "create_triggers",
    "drop_trigger_ddl",
    "drop_triggers",
    "metadata",
    "trigger_ddl",
]


class _MigrationContext(Protocol):
    """The part of Alembic's ``MigrationContext`` the helpers read."""

    @property
    def dialect(self) -> Dialect:
        """The dialect the migration is for (offline ``--sql`` runs have one too)."""


class MigrationOperations(Protocol):
    """Alembic's ``op`` (or an ``Operations`` object): durable-sa does not import Alembic."""

    def get_context(self) -> _MigrationContext:
        """The running migration's context."""

    def execute(self, sqltext: str, /) -> None:
        """Run ``sqltext`` (or write it out, in offline mode)."""


def create_triggers(op: MigrationOperations, schema: str | None = None) -> None:
    """Create the NOTIFY triggers and their functions; nothing on a database but PostgreSQL.

    Call it last in ``upgrade()``, once the tables exist. Re-running it replaces them.
    """
    if op.get_context().dialect.name == "postgresql":
        op.execute(trigger_ddl(schema))


def drop_triggers(op: MigrationOperations, schema: str | None = None) -> None:
    """Drop the NOTIFY triggers and their functions; nothing on a database but PostgreSQL.

    Call it first in ``downgrade()``, while the tables still exist.
    """
    if op.get_context().dialect.name == "postgresql":
        op.execute(drop_trigger_ddl(schema))
