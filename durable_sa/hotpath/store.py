"""What the fast lane needs from a dialect: five statements and a way to hold a connection.

Each dialect module (:mod:`.pg`, and :mod:`.sqlite` where available) implements
:class:`Store` with module-level functions, over the driver's own connection.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from durable_sa.hotpath.rows import Claim, ClaimQuery, StepWrite, WriteResult


class Store(Protocol):
    """The dialect-specific statements of the fast lane."""

    def hold(self, conn: Any, *, synchronous: bool) -> None:  # noqa: ANN401 - a driver connection
        """Prepare a pooled connection for the lane (autocommit: a statement commits)."""
        ...

    def unhold(self, conn: Any, *, synchronous: bool) -> None:  # noqa: ANN401 - a driver connection
        """Put a held connection back as the pool expects it."""
        ...

    def claim_sql(self, *, queues: bool, workflows: bool, fifo: bool) -> str:
        """The claim statement for a worker with these filters."""
        ...

    def claim(self, conn: Any, query: ClaimQuery, *, now: datetime, limit: int) -> list[Claim]:  # noqa: ANN401
        """Lease up to ``limit`` due jobs and read their runs; committed on return."""
        ...

    def write_row(self, write: StepWrite, *, queue: str, max_attempts: int) -> dict[str, Any]:
        """The representation of ``write`` that :meth:`write_group` takes."""
        ...

    def write_group(
        self,
        conn: Any,  # noqa: ANN401 - a driver connection
        rows: Sequence[Mapping[str, Any]],
        *,
        worker: str,
        now: datetime,
    ) -> list[WriteResult]:
        """Apply writes of distinct runs in one transaction; results in input order."""
        ...

    def start_run(  # noqa: PLR0913 - the run's columns
        self,
        conn: Any,  # noqa: ANN401 - a driver connection
        *,
        name: str,
        version: str,
        input_data: Mapping[str, Any],
        total_steps: int,
        now: datetime,
        queue: str,
        max_attempts: int,
    ) -> int:
        """Insert a running run and its first job in one transaction; the run's id."""
        ...


_MODULES = {"postgresql": "durable_sa.hotpath.pg", "sqlite": "durable_sa.hotpath.sqlite"}


def store_for(dialect: str) -> Store | None:
    """The fast lane's statements for ``dialect``, or ``None`` if it has none."""
    name = _MODULES.get(dialect)
    if name is None:
        return None
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError:
        return None
    return cast("Store", module)


if TYPE_CHECKING:  # mypy proves each dialect module satisfies the protocol
    from durable_sa.hotpath import pg as _pg
    from durable_sa.hotpath import sqlite as _sqlite

    _PG_IS_A_STORE: Store = _pg
    _SQLITE_IS_A_STORE: Store = _sqlite
