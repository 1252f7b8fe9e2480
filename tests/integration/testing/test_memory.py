"""``memory_engine``: a private database in memory that the engine runs on unchanged."""

from __future__ import annotations

import gc
from datetime import timedelta
from pathlib import Path

from durable_sa import Durable, durable
from durable_sa.testing import drain
from durable_sa.testing.memory import dispose_memory, memory_engine

FAST = {"heartbeat": timedelta(seconds=0.2), "lease": timedelta(seconds=2)}


def _define() -> None:
    durable("mem-wf").step("a", lambda ctx: 1).parallel(
        "p", [("x", lambda ctx: 1), ("y", lambda ctx: 2)]
    ).step("b", lambda ctx: ctx.results["a"] + ctx.results["y"])


def _database_file(engine: Durable) -> Path:
    database = engine.sa_engine.url.database
    assert database is not None
    return Path(database)


def test_drain_and_a_worker_both_run_on_it() -> None:
    _define()
    engine = Durable(memory_engine())
    engine.create_tables()
    drained = engine.start("mem-wf").run_id
    drain(engine)
    final = engine.status(drained)
    assert final.results.get("b") == 3, final
    with engine.worker(concurrency=2, **FAST):
        runs = [engine.start("mem-wf").run_id for _ in range(50)]
        finals = {engine.wait(run, timeout=30).status for run in runs}
    assert finals == {"completed"}
    dispose_memory(engine.sa_engine)


def test_each_engine_has_its_own_database_and_it_goes_with_the_engine() -> None:
    _define()
    first, second = Durable(memory_engine()), Durable(memory_engine())
    first.create_tables()
    second.create_tables()
    first.start("mem-wf")
    assert (len(first.list()), len(second.list())) == (1, 0)
    path = _database_file(second)
    assert path.exists()
    del second
    gc.collect()
    assert not path.exists()
    kept = _database_file(first)
    dispose_memory(first.sa_engine)
    assert not kept.exists()
