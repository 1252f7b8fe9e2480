"""Every read of a table that grows with history is bounded: a LIMIT, or a key lookup.

The statements each page sends are captured; a SELECT on runs, journal, jobs or dead
letters without a LIMIT must be a lookup by key (one run, the children of one page of
parents, the jobs or letters of a few runs), the live (or pending) runs' count on the
status index, or the ended runs' count and each workflow's sample over a primary-key range.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from sqlalchemy import event

from durable_sa.testing import drain

if TYPE_CHECKING:
    from starlette.testclient import TestClient

    from durable_sa import Durable

_GROWING = re.compile(r"\bFROM (durable_runs|durable_journal|durable_jobs|durable_dead_letters)\b")
_KEYED = (
    re.compile(r"WHERE durable_runs\.id = "),
    re.compile(r"\b(parent_run_id|run_id|claimed_by) IN \("),
    re.compile(r"WHERE durable_runs\.status IN \(.*GROUP BY", re.DOTALL),
    re.compile(r"WHERE durable_runs\.status = .*GROUP BY", re.DOTALL),  # pending, on its index
    re.compile(r"WHERE durable_runs\.id > "),  # each workflow's sample: a primary-key range
    re.compile(r"\bmax\(durable_runs\.id\)"),
)


def _unbounded(statement: str) -> bool:
    if not _GROWING.search(statement) or not statement.lstrip().upper().startswith("SELECT"):
        return False
    if "LIMIT" in statement.upper():
        return False
    return not any(pattern.search(statement) for pattern in _KEYED)


def test_no_page_reads_a_growing_table_without_a_bound(engine: Durable, client: TestClient) -> None:
    waiting = engine.start("approve").run_id
    failed = engine.start("charge").run_id
    tree = engine.start("tree", {"n": 1}).run_id
    drain(engine)
    job = engine.admin.claim()
    if job is not None:
        engine.backend.dead_letter(job, error="lost")
    seen: list[str] = []

    def grab(*args: Any) -> None:
        seen.append(" ".join(str(args[2]).split()))

    event.listen(engine.sa_engine, "before_cursor_execute", grab)
    try:
        pages = [
            "/",
            "/?all=1&status=completed&since=1h",
            "/?q=1",
            *(f"/runs/{run_id}" for run_id in (waiting, failed, tree)),
            "/workflows?hours=48",
            "/workers",
            "/dead-letters?all=1",
            "/limits",
            "/schedules",
        ]
        for page in pages:
            assert client.get(page).status_code == 200
    finally:
        event.remove(engine.sa_engine, "before_cursor_execute", grab)
    assert len(seen) > 20
    assert [statement for statement in seen if _unbounded(statement)] == []
