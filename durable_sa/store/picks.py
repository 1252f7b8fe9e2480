"""Rows an UPDATE takes from a ``LIMIT ... FOR UPDATE SKIP LOCKED`` pick, picked once.

Why: ``UPDATE t SET ... WHERE id IN (SELECT id ... LIMIT n FOR UPDATE SKIP LOCKED)``
lets PostgreSQL's planner run the pick again for each row it joins (a nested-loop semi
join, chosen with some table statistics). Each run skips the rows the statement itself
has just locked and takes the next ones, so the UPDATE takes every matching row, not
``n``: a claim leased every due job and returned one, the rest held by nobody until
their lease ran out. ``id = ANY(ARRAY(pick))`` makes the pick an init plan, run once,
and still probes the primary key. SQLite reads an ``IN`` list once and takes no row
locks, so it keeps the plain form.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import any_, func

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement, Select


def picked_once(column: ColumnElement[Any], pick: Select[Any], dialect: str) -> ColumnElement[bool]:
    """``column`` is one of the values ``pick`` selects, the pick run once per statement."""
    if dialect == "postgresql":
        return column == any_(func.array(pick.scalar_subquery()))
    return column.in_(pick.scalar_subquery())
