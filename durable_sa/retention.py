"""Retention: deleting finished runs once they are old enough, a whole tree at a time.

Rules:
- Only *terminal* runs (completed, failed, canceled) go, and only when ``updated_at``, the
  moment they finished, is before the cutoff (``now - older_than`` on the engine's clock).
  Their journal entries, any job still queued for them, their dead letters and the
  signals sent to them that no wait took go too.
- Trees stay whole. A child run is deleted only with its root, and a root only when every
  run below it is terminal and past the cutoff as well. A live run never loses its parent,
  nor a child whose result it may still read.
- Terminal statuses are absorbing (no event leaves them, and only a running parent starts
  children), so a tree found prunable stays prunable. Each batch still re-reads its runs
  under lock before deleting and skips a tree that changed, so a run is never deleted
  from under a concurrent writer.
- Each batch is its own short transaction of at most ``batch_size`` runs (a tree larger
  than that is a batch of its own): a big prune never holds locks for long, and workers
  claim and commit between batches.
- Rows go in foreign-key order, children before parents (the engine's lock order): dead
  letters, jobs (and outbox rows), journal entries, buffered signals, then runs from the
  deepest generation up. Nothing relies on ``ON DELETE CASCADE``, so every count is exact.
- Every query reads an index range, never the whole table: roots are found per terminal
  status by a keyset scan of the ``(status, id)`` index, children through
  ``parent_run_id``, the other tables through their ``run_id`` indexes, at most
  ``_CHUNK`` ids per statement.
"""

from __future__ import annotations

import functools
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Final

import attrs
from sqlalchemy import delete, func, select, update

from durable_sa.core.status import TERMINAL_STATUSES, RunStatus
from durable_sa.errors import InvalidArgumentError
from durable_sa.results import PruneResult
from durable_sa.store.models import (
    dead_letters_table,
    jobs_table,
    journal_table,
    outbox_table,
    runs_table,
    signals_table,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence
    from datetime import datetime

    from sqlalchemy import Table
    from sqlalchemy.orm import Session

    from durable_sa.engine.shell import Shell

logger = logging.getLogger(__name__)

runs = runs_table

_CHUNK: Final = 500
"""Ids per ``IN`` list: far below SQLite's and PostgreSQL's bound-parameter limits."""
_TERMINAL: Final = sorted(TERMINAL_STATUSES)
_DEPENDENTS: Final[tuple[tuple[str, Table], ...]] = (
    ("dead_letters", dead_letters_table),  # no foreign key: deleted explicitly, first
    ("jobs", jobs_table),
    ("jobs", outbox_table),  # a relay backend's jobs: counted with the jobs table's
    ("journal_entries", journal_table),
    ("signals", signals_table),  # sent to a run that ended before it waited for them
)


@attrs.frozen(kw_only=True)
class Tree:
    """A root run and all its descendants, one tuple of run ids per generation."""

    generations: tuple[tuple[int, ...], ...]

    @property
    def ids(self) -> list[int]:
        """Every run of the tree, root first."""
        return [run_id for generation in self.generations for run_id in generation]

    @property
    def size(self) -> int:
        """How many runs the tree holds."""
        return sum(len(generation) for generation in self.generations)


def check_arguments(older_than: object, batch_size: object) -> None:
    """Refuse arguments :func:`prune_runs` cannot use.

    Raises:
        InvalidArgumentError: ``older_than`` is not a non-negative ``timedelta``, or
            ``batch_size`` is not a whole number of at least 1.

    """
    if not isinstance(older_than, timedelta):
        msg = (
            "older_than must be a datetime.timedelta, such as timedelta(days=30), "
            f"not {older_than!r}"
        )
        raise InvalidArgumentError(msg)
    if older_than < timedelta(0):
        msg = (
            f"older_than must not be negative, not {older_than!r}: it is how long ago a "
            "run must have finished to be pruned"
        )
        raise InvalidArgumentError(msg)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        msg = f"batch_size must be a whole number of at least 1, not {batch_size!r}"
        raise InvalidArgumentError(msg)


def prune_runs(
    shell: Shell, *, older_than: timedelta, batch_size: int, dry_run: bool
) -> PruneResult:
    """Delete (or with ``dry_run`` only count) runs that finished more than ``older_than`` ago.

    Raises:
        InvalidArgumentError: see :func:`check_arguments`.

    """
    check_arguments(older_than, batch_size)
    try:
        cutoff = shell.now() - older_than
    except OverflowError:  # before the year 1: no run finished that long ago
        return PruneResult(dry_run=dry_run)
    totals = dict.fromkeys(
        ("runs", "journal_entries", "jobs", "dead_letters", "signals", "batches"), 0
    )
    for batch in _batches(_prunable_trees(shell, cutoff, batch_size), batch_size):
        if dry_run:
            with shell.reading() as session:
                counts = _count_batch(session, batch)
        else:
            counts = shell.transaction(functools.partial(_delete_batch, batch=batch, cutoff=cutoff))
        if counts["runs"]:
            totals["batches"] += 1
        for name, value in counts.items():
            totals[name] += value
    result = PruneResult(
        runs=totals["runs"],
        journal_entries=totals["journal_entries"],
        jobs=totals["jobs"],
        dead_letters=totals["dead_letters"],
        signals=totals["signals"],
        batches=totals["batches"],
        dry_run=dry_run,
    )
    logger.info(
        "%s %d finished run(s) older than %s (%d journal entries, %d jobs, %d dead letters) "
        "in %d batch(es)",
        "would prune" if dry_run else "pruned",
        result.runs,
        older_than,
        result.journal_entries,
        result.jobs,
        result.dead_letters,
        result.batches,
        extra={"action": "prune", "dry_run": dry_run},
    )
    return result


# ── finding prunable trees (reads only, no lock) ────────────────────────────────


def _prunable_trees(shell: Shell, cutoff: datetime, page_size: int) -> Iterator[Tree]:
    """Every prunable tree, found page by page; no session stays open across a yield."""
    for status in _TERMINAL:
        after = 0
        while True:
            with shell.reading() as session:
                roots = _root_page(session, status, after, cutoff, page_size)
                trees = _whole_trees(session, roots, cutoff)
            if not roots:
                break
            after = roots[-1]
            yield from trees


def _root_page(
    session: Session, status: RunStatus, after: int, cutoff: datetime, limit: int
) -> list[int]:
    """Up to ``limit`` old top-level runs of ``status`` with ids above ``after``, by id.

    One status at a time so that the scan is an ordered range of the ``(status, id)``
    index, resumed where the last page ended, however many rows the table holds.
    """
    stmt = (
        select(runs.c.id)
        .where(
            runs.c.status == status,
            runs.c.id > after,
            runs.c.parent_run_id.is_(None),
            runs.c.updated_at < cutoff,
        )
        .order_by(runs.c.id)
        .limit(limit)
    )
    return [int(run_id) for run_id in session.execute(stmt).scalars()]


def _whole_trees(session: Session, roots: Sequence[int], cutoff: datetime) -> list[Tree]:
    """The trees under ``roots`` in which every run is terminal and older than ``cutoff``.

    Descendants are read one generation at a time for all roots together; a tree stops
    being explored as soon as one of its runs disqualifies it.
    """
    root_of = {root: root for root in roots}
    generations: dict[int, list[list[int]]] = {root: [[root]] for root in roots}
    depth = dict.fromkeys(roots, 0)
    spoiled: set[int] = set()
    level = list(roots)
    while level:
        found = [
            row
            for chunk in _chunks(level)
            for row in session.execute(
                select(runs.c.id, runs.c.parent_run_id, runs.c.status, runs.c.updated_at)
                .where(runs.c.parent_run_id.in_(chunk))
                .order_by(runs.c.id)
            )
        ]
        level = []
        for row in found:
            child, parent = int(row.id), int(row.parent_run_id)
            if child in root_of:  # a cycle, which only a hand-written UPDATE can make
                spoiled.add(root_of[parent])
                continue
            root = root_of[child] = root_of[parent]
            depth[child] = depth[parent] + 1
            tree = generations[root]
            if len(tree) == depth[child]:
                tree.append([])
            tree[depth[child]].append(child)
            if RunStatus(row.status) not in TERMINAL_STATUSES or row.updated_at >= cutoff:
                spoiled.add(root)
            elif root not in spoiled:
                level.append(child)
    return [
        Tree(generations=tuple(tuple(generation) for generation in generations[root]))
        for root in roots
        if root not in spoiled
    ]


def _batches(trees: Iterable[Tree], batch_size: int) -> Iterator[list[Tree]]:
    """Whole trees grouped into batches of at most ``batch_size`` runs (at least one tree)."""
    batch: list[Tree] = []
    size = 0
    for tree in trees:
        if batch and size + tree.size > batch_size:
            yield batch
            batch, size = [], 0
        batch.append(tree)
        size += tree.size
    if batch:
        yield batch


# ── one batch: counted, or deleted in one transaction ───────────────────────────


def _count_batch(session: Session, batch: Sequence[Tree]) -> dict[str, int]:
    """The rows deleting ``batch`` would delete, per table (the dry run)."""
    ids = [run_id for tree in batch for run_id in tree.ids]
    counts = {"runs": len(ids)}
    for name, table in _DEPENDENTS:
        counts[name] = counts.get(name, 0) + sum(
            int(
                session.execute(
                    select(func.count()).select_from(table).where(table.c.run_id.in_(chunk))
                ).scalar_one()
            )
            for chunk in _chunks(ids)
        )
    return counts


def _delete_batch(tx: Session, batch: Sequence[Tree], cutoff: datetime) -> dict[str, int]:
    """Delete the trees of ``batch`` that are still prunable; rows deleted per table."""
    kept = _lock_unchanged(tx, batch, cutoff)
    ids = [run_id for tree in kept for run_id in tree.ids]
    counts: dict[str, int] = {}
    for name, table in _DEPENDENTS:
        counts[name] = counts.get(name, 0) + sum(
            _rowcount(tx.execute(delete(table).where(table.c.run_id.in_(chunk))))
            for chunk in _chunks(ids)
        )
    counts["runs"] = 0
    deepest = max((len(tree.generations) for tree in kept), default=0)
    for level in reversed(range(deepest)):
        members = [
            run_id
            for tree in kept
            if level < len(tree.generations)
            for run_id in tree.generations[level]
        ]
        for chunk in _chunks(members):
            counts["runs"] += _rowcount(tx.execute(delete(runs).where(runs.c.id.in_(chunk))))
    return counts


def _lock_unchanged(tx: Session, batch: Sequence[Tree], cutoff: datetime) -> list[Tree]:
    """Lock the batch's runs, children first; the trees that are still whole and prunable.

    On PostgreSQL this is ``SELECT ... FOR UPDATE``; on SQLite, which locks the whole
    database, an ``UPDATE ... RETURNING`` that takes the write lock at once, as
    :func:`durable_sa.store.queries.lock_run` does.
    """
    ids = [run_id for tree in batch for run_id in tree.ids]
    members = set(ids)
    still: set[int] = set()
    for chunk in _chunks(sorted(ids, reverse=True)):  # newer ids are children: lock first
        prunable = (
            runs.c.id.in_(chunk),
            runs.c.status.in_(_TERMINAL),
            runs.c.updated_at < cutoff,
        )
        if tx.get_bind().dialect.name == "sqlite":
            locked = tx.execute(
                update(runs)
                .where(*prunable)
                .values(updated_at=runs.c.updated_at)
                .returning(runs.c.id)
            )
        else:
            locked = tx.execute(
                select(runs.c.id).where(*prunable).order_by(runs.c.id.desc()).with_for_update()
            )
        still.update(int(run_id) for run_id in locked.scalars())
    grown: set[int] = set()  # runs that gained a child since the trees were read
    for chunk in _chunks(ids):
        rows = tx.execute(
            select(runs.c.id, runs.c.parent_run_id).where(runs.c.parent_run_id.in_(chunk))
        )
        grown.update(int(row.parent_run_id) for row in rows if int(row.id) not in members)
    return [tree for tree in batch if still.issuperset(tree.ids) and grown.isdisjoint(tree.ids)]


def _chunks(ids: Sequence[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield list(ids[start : start + _CHUNK])


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
