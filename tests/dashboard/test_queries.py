"""The dashboard's read models, read directly (both databases)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from durable_sa.dashboard import queries

if TYPE_CHECKING:
    import pytest

    from durable_sa import Durable


def test_a_busy_worker_does_not_hide_what_another_holds(
    engine: Durable, flows: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries, "HELD_CAP", 2)
    runs = [engine.start("greet").run_id for _ in range(6)]
    busy = [engine.admin.claim(worker="busy") for _ in range(5)]  # the oldest jobs
    quiet = engine.admin.claim(worker="quiet")
    assert None not in busy
    assert quiet is not None
    with engine.shell.reading() as session:
        held = queries.held_jobs(session, ["busy", "quiet"], engine.now)
    assert sorted(held) == ["busy", "quiet"]
    assert [job.run_id for job in held["busy"]] == runs[:2]  # its oldest, capped
    assert [job.run_id for job in held["quiet"]] == [quiet.run_id] == runs[5:]
    with engine.shell.reading() as session:
        assert queries.held_jobs(session, ["idle"], engine.now) == {}
        assert queries.held_jobs(session, [], engine.now) == {}
