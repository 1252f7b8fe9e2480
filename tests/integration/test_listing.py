"""``Durable.list``'s filters: top-level runs, runs created since, a bounded query."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from durable_sa import Durable, durable
from durable_sa.errors import InvalidArgumentError
from durable_sa.store.models import runs_table
from durable_sa.testing import drain


def _tree(engine: Durable) -> tuple[int, int, int]:
    durable("kid").wait_for_signal("gate", "go")
    durable("parent").child_workflow("sub", "kid")
    durable("alone").step("a", lambda ctx: 1)
    parent = engine.start("parent").run_id
    alone = engine.start("alone").run_id
    drain(engine)
    return parent, engine.status(parent).children[0].run_id, alone


def _created(engine: Durable, run_id: int, when: datetime) -> None:
    with engine.sa_engine.begin() as conn:
        conn.execute(sa.update(runs_table).where(runs_table.c.id == run_id).values(created_at=when))


def test_top_level_leaves_out_child_runs_but_keeps_them_under_their_parent(engine: Durable):
    parent, child, alone = _tree(engine)
    assert [s.run_id for s in engine.list()] == [child, alone, parent]  # started by a worker
    top = engine.list(top_level=True)
    assert [s.run_id for s in top] == [alone, parent]
    assert [c.run_id for c in top[1].children] == [child]
    assert engine.list(top_level=True, status="suspended")[0].run_id == parent
    assert engine.list(top_level=True, workflow="kid") == []


def test_since_keeps_runs_created_at_or_after_a_time_or_within_an_age(engine: Durable):
    parent, child, alone = _tree(engine)
    now = engine.now
    _created(engine, parent, now - timedelta(days=3))
    _created(engine, child, now - timedelta(days=1))
    assert [s.run_id for s in engine.list(since=timedelta(days=2))] == [child, alone]
    assert [s.run_id for s in engine.list(since=timedelta(hours=1))] == [alone]
    assert [s.run_id for s in engine.list(since=now - timedelta(days=4))] == [child, alone, parent]
    in_tokyo = (now - timedelta(days=2)).astimezone(timezone(timedelta(hours=9)))
    assert [s.run_id for s in engine.list(since=in_tokyo)] == [child, alone]
    assert engine.list(since=now + timedelta(minutes=5)) == []
    assert len(engine.list(since=timedelta.max)) == 3  # before datetime's range: every run
    assert len(engine.list(since=datetime.min.replace(tzinfo=UTC))) == 3
    assert engine.list(since=datetime.max.replace(tzinfo=timezone(-timedelta(hours=5)))) == []
    exact = engine.list(since=now - timedelta(days=3))  # at the cutoff itself: kept
    assert parent in {s.run_id for s in exact}


def test_limit_bounds_the_query(engine: Durable):
    durable("alone").step("a", lambda ctx: 1)
    run_ids = [engine.start("alone").run_id for _ in range(5)]
    assert [s.run_id for s in engine.list(limit=2)] == run_ids[:-3:-1]
    assert len(engine.list()) == 5


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"since": datetime(2024, 5, 1)}, "since is a naive datetime (2024-05-01T00:00:00)"),  # noqa: DTZ001
        ({"since": timedelta(hours=-1)}, "since is an age and cannot be negative"),
        ({"since": "2h"}, "since is a datetime or a timedelta, not str '2h'"),
        ({"limit": 0}, "limit is a whole number of at least 1"),
        ({"limit": -3}, "limit is a whole number of at least 1"),
        ({"limit": 2.5}, "limit is a whole number of at least 1"),
        ({"limit": True}, "limit is a whole number of at least 1"),
    ],
)
def test_bad_filters_are_refused_before_any_query(engine: Durable, options, says):
    with pytest.raises(InvalidArgumentError) as caught:
        engine.list(**options)
    assert says in str(caught.value)
