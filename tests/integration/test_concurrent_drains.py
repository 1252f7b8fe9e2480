"""Several threads draining one queue: every job runs once, every run finishes."""

from __future__ import annotations

import threading
from collections import Counter
from typing import TYPE_CHECKING

from durable_sa import Durable, DurableContext, JournalEntry, durable
from durable_sa.testing import drain, pending_jobs
from tests.integration.helpers import count, get_run

if TYPE_CHECKING:
    from collections.abc import Callable

RUNS = 12
THREADS = 4


def test_threads_share_the_queue_without_double_execution(engine: Durable) -> None:
    executions: Counter[tuple[int, str]] = Counter()
    lock = threading.Lock()

    def unit(name: str) -> Callable[[DurableContext], str]:
        def handler(ctx: DurableContext) -> str:
            with lock:
                executions[ctx.run_id, name] += 1
            return name

        return handler

    durable("busy").step("a", unit("a")).parallel("p", [("x", unit("x")), ("y", unit("y"))]).step(
        "b", unit("b")
    )
    run_ids = [engine.start("busy", {"i": i}).run_id for i in range(RUNS)]

    errors: list[BaseException] = []

    def worker() -> None:
        try:
            while drain(engine, max=1):
                pass
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    drain(engine)  # a job enqueued after every thread saw an empty queue

    assert errors == []
    assert all(get_run(engine, run_id).status == "completed" for run_id in run_ids)
    assert set(executions.values()) == {1}  # jobs are claimed by exactly one thread
    assert len(executions) == RUNS * 4
    assert count(engine, JournalEntry) == RUNS * 5
    assert pending_jobs(engine) == 0
