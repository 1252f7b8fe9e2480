"""Every engine log record about a run carries its fields: ``run_id``, ``workflow``, and
``step`` and ``attempt`` where they are known.

One run is walked through a dead letter (its first job claimed too often), a recovery, a
defer (its workflow paused), a retry, a last failed attempt and a failing compensator;
every record that names the run is checked, on both databases.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from durable_sa import Durable, DurableContext, RunStatus, durable
from durable_sa.core.registry import registry
from durable_sa.models import Job
from durable_sa.testing import drain
from tests.integration.helpers import far_future

if TYPE_CHECKING:
    from collections.abc import Iterator


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def kept() -> Iterator[list[logging.LogRecord]]:
    """Every record of the engine's loggers, DEBUG included, as written."""
    handler = _Keep()
    logger = logging.getLogger("durable_sa")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(level)


def _decline(ctx: DurableContext) -> None:
    msg = "card declined"
    raise RuntimeError(msg)


def _release_fails(ctx: DurableContext) -> None:
    msg = "stock service down"
    raise ConnectionError(msg)


def test_every_record_about_a_run_names_it(engine: Durable, kept: list[logging.LogRecord]) -> None:
    walked = (
        durable("walked")
        .step("reserve", lambda ctx: 1, compensate=_release_fails)
        .step("charge", _decline, max_retries=2)
    )
    run_id = engine.start("walked").run_id
    with engine.sa_engine.begin() as conn:  # its first job crashed its consumers each time
        conn.execute(sa.update(Job.__table__).values(attempts=Job.__table__.c.max_attempts))
    drain(engine)
    assert engine.recover() == 1
    registry.unregister("walked")  # a deploy in progress: this process lacks the workflow
    drain(engine)
    registry.register(walked)
    drain(engine, now=far_future())
    assert engine.status(run_id).status is RunStatus.FAILED

    about = [r for r in kept if getattr(r, "run_id", None) == run_id]
    by_action: dict[str, list[logging.LogRecord]] = {}
    for record in about:
        by_action.setdefault(getattr(record, "action", ""), []).append(record)
    for record in about:  # every one names the workflow
        assert getattr(record, "workflow", None) == "walked", record.getMessage()

    def fields(action: str) -> list[tuple[object, object]]:
        return [(getattr(r, "step", None), getattr(r, "attempt", None)) for r in by_action[action]]

    assert fields("dead_letter") == [("reserve", 1)]
    assert fields("recover") == [(None, 1)]
    assert fields("defer") == [(None, 1)]  # no step named: this process had no definition
    outcomes = [getattr(r, "outcome", None) for r in by_action["step"]]
    steps = [(*f, o) for f, o in zip(fields("step"), outcomes, strict=True)]
    assert steps == [
        ("reserve", 1, "advance"),
        ("charge", 1, "retry"),
        ("charge", 2, "compensate"),
    ]
    assert fields("compensate_failed") == [("reserve", 1)]
    # the applier's records as the run moves are about it too
    assert {"progress", "rollback", "fail"} <= set(by_action)
