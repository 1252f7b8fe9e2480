"""The stored form computed in memory is what the database really gives back.

A loop's ``until`` and ``feedback`` see an iteration's result in its stored form, so they
see the same value whether the iteration just ran or was read from the journal after a
crash. The in-memory form is held to the real server here, on both databases.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from durable_sa import Durable, JournalEntry, durable
from durable_sa.engine.shell import stored_form_for
from durable_sa.store.types import JSONColumn
from durable_sa.testing import drain

if TYPE_CHECKING:
    from durable_sa.core.codec import JSONValue

_KEYS = st.text(alphabet=st.sampled_from("ab_é€\U0001f600"), max_size=4)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([1e16, -0.0, 1.5e-7, 1e300, 5e-324, 2.5, 100.0])
    | st.text(max_size=5).filter(lambda text: "\x00" not in text)
)
JSON_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=12,
)


_probes = sa.Table(
    "stored_probes",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("value", JSONColumn),
)


def _exact(value: object) -> str:
    """The value with its key order and number types (``1`` is not ``1.0``, nor ``-0.0``)."""
    return json.dumps(value, ensure_ascii=False)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=JSON_VALUES)
def test_the_stored_form_is_what_a_read_gives(sa_engine: sa.Engine, value: JSONValue) -> None:
    stored = stored_form_for(sa_engine)
    with sa_engine.connect() as conn:
        _probes.create(conn, checkfirst=True)
        probe = conn.execute(_probes.insert().values(value=value).returning(_probes.c.id))
        read: Any = conn.execute(
            sa.select(_probes.c.value).where(_probes.c.id == probe.scalar_one())
        ).scalar_one()
    assert _exact(stored(value)) == _exact(read)


def test_a_loop_sees_the_stored_form_of_the_iteration_it_just_ran(engine: Durable) -> None:
    seen: list[object] = []

    def until(result: object, _done: int) -> bool:
        seen.append(result)
        return len(seen) == 2

    durable("shapes").loop(
        "l", lambda _input, _ctx: {"bb": 1, "a": 1e16, "z": -0.0}, max_iterations=3, until=until
    )
    run_id = engine.start("shapes").run_id
    drain(engine)
    with Session(engine.sa_engine) as session:
        journaled = session.scalars(
            sa.select(JournalEntry.result).where(
                JournalEntry.run_id == run_id, JournalEntry.step_id == "l#iter0"
            )
        ).one()
    assert _exact(seen[0]) == _exact(journaled)  # as a reload after a crash would give it
    # kept as written on both databases: no JSONB number or key-order normalisation
    assert _exact(journaled) == '{"bb": 1, "a": 1e+16, "z": -0.0}'
