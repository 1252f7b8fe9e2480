"""Every page renders the right runs, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import event

from durable_sa.dashboard import pages, queries
from durable_sa.testing import drain

if TYPE_CHECKING:
    import pytest
    from starlette.testclient import TestClient

    from durable_sa import Durable


def _ids(html: str) -> list[int]:
    return [int(found) for found in re.findall(r'data-run-id="(\d+)"', html)]


def test_runs_lists_top_level_runs_newest_first_with_children_folded(
    engine: Durable, client: TestClient
) -> None:
    greet = engine.start("greet", {"who": "ann"}).run_id
    tree = engine.start("tree", {"n": 4}).run_id
    drain(engine)
    (child,) = engine.status(tree).children
    page = client.get("/")
    assert page.status_code == 200
    assert _ids(page.text) == [tree, greet]  # the child is folded under its parent
    assert "<summary>1</summary>" in page.text
    everything = client.get("/?all=1")
    assert _ids(everything.text) == [child.run_id, tree, greet]


def test_runs_filter_by_workflow_status_time_and_key(engine: Durable, client: TestClient) -> None:
    greet = engine.start("greet", idempotency_key="order-7").run_id
    charge = engine.start("charge", {"who": "bob"}).run_id
    waiting = engine.start("approve").run_id
    drain(engine)
    assert _ids(client.get("/?workflow=greet").text) == [greet]
    assert _ids(client.get("/?status=failed").text) == [charge]
    assert _ids(client.get("/?status=suspended").text) == [waiting]
    assert _ids(client.get("/?key=order-7").text) == [greet]
    assert _ids(client.get("/?key=order-8").text) == []
    assert _ids(client.get("/?since=1h").text) == [waiting, charge, greet]
    later = (engine.now + timedelta(hours=1)).isoformat()
    assert _ids(client.get("/", params={"since": later}).text) == []
    refused = client.get("/?since=yesterday&status=bogus")
    assert "since is an age" in refused.text
    assert "unknown status" in refused.text
    too_far = client.get("/?since=99999999999d&before=99999999999999999999999")
    assert too_far.status_code == 200
    assert "since is an age" in too_far.text


def test_search_finds_a_run_by_id_or_idempotency_key(engine: Durable, client: TestClient) -> None:
    first = engine.start("greet", idempotency_key="invoice-42").run_id
    second = engine.start("greet").run_id
    assert _ids(client.get(f"/?q={second}").text) == [second]
    assert _ids(client.get("/?q=invoice-42").text) == [first]
    assert _ids(client.get("/?q=nothing-like-it").text) == []
    assert "no runs match" in client.get("/?q=nothing-like-it").text
    assert _ids(client.get("/?q=invoice-42%00&workflow=greet%00").text) == [first]


def test_runs_are_paginated_by_keyset(engine: Durable, client: TestClient) -> None:
    started = [engine.start("greet").run_id for _ in range(queries.PAGE_SIZE + 3)]
    first = client.get("/?workflow=greet")
    assert _ids(first.text) == started[::-1][: queries.PAGE_SIZE]
    older = re.search(r'href="/\?([^"]*before=\d+[^"]*)"', first.text)
    assert older is not None
    second = client.get("/?" + older[1].replace("&amp;", "&"))
    assert _ids(second.text) == started[::-1][queries.PAGE_SIZE :]
    assert "older runs" not in second.text


def test_a_page_fragment_is_only_its_live_part(engine: Durable, client: TestClient) -> None:
    run_id = engine.start("greet").run_id
    whole = client.get("/")
    assert 'hx-trigger="every 3s"' in whole.text
    filtered = client.get("/?workflow=greet")
    assert 'hx-get="/?workflow=greet&amp;fragment=1"' in filtered.text  # polls what it shows
    fragment = client.get("/?fragment=1")
    assert "<html" not in fragment.text
    assert _ids(fragment.text) == [run_id]
    assert 'hx-trigger="every 3s"' in client.get(f"/runs/{run_id}").text  # not ended yet
    drain(engine)
    assert "hx-trigger" not in client.get(f"/runs/{run_id}").text  # ended: nothing to poll
    run_fragment = client.get(f"/runs/{run_id}?fragment=1")
    assert "<html" not in run_fragment.text
    assert 'id="run-status"' in run_fragment.text


def test_a_run_shows_its_timeline_errors_tracebacks_and_compensations(
    engine: Durable, client: TestClient
) -> None:
    run_id = engine.start("charge", {"who": "bob"}).run_id
    drain(engine)
    page = client.get(f"/runs/{run_id}")
    assert page.status_code == 200
    html = page.text
    timeline = html[html.index('id="timeline"') : html.index('id="compensations"')]
    assert ">reserve<" in timeline
    assert ">pay<" in timeline
    assert "ValueError: card declined for bob" in timeline
    assert "Traceback (most recent call last)" in timeline
    assert "_boom" in timeline
    trail = html[html.index('id="compensations"') :]
    assert "reserve#compensate" in trail
    assert "&#34;ran&#34;: [&#34;reserve&#34;]" in trail or '"ran": ["reserve"]' in trail
    assert 'status-failed">failed' in html


def test_a_run_says_what_it_waits_for(engine: Durable, client: TestClient) -> None:
    run_id = engine.start("approve").run_id
    drain(engine)
    html = client.get(f"/runs/{run_id}").text
    waits = html[html.index('id="waits"') :]
    assert "awaiting signal &#39;approve&#39;" in waits
    engine.pause("approve")
    reads: list[str] = []

    def grab(*args: Any) -> None:
        reads.append(str(args[2]))

    event.listen(engine.sa_engine, "before_cursor_execute", grab)
    try:
        paused = client.get(f"/runs/{run_id}").text
    finally:
        event.remove(engine.sa_engine, "before_cursor_execute", grab)
    waits = paused[paused.index('id="waits"') : paused.index("</ul>", paused.index('id="waits"'))]
    assert "<li>waiting: workflow paused</li>" in waits
    assert paused.count("paused") == 1  # said once, where it says why the run waits
    assert len([sql for sql in reads if "FROM durable_paused_workflows" in sql]) == 1


def test_a_run_shows_its_children_tree(engine: Durable, client: TestClient) -> None:
    run_id = engine.start("tree", {"n": 1}).run_id
    drain(engine)
    (child,) = engine.status(run_id).children
    html = client.get(f"/runs/{run_id}").text
    tree = html[html.index('id="children"') :]
    assert f'href="/runs/{child.run_id}"' in tree
    assert "leaf" in tree
    child_page = client.get(f"/runs/{child.run_id}").text
    assert f'href="/runs/{run_id}"' in child_page  # its parent


def test_a_run_tree_is_bounded(
    engine: Durable, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = engine.start("fan", {"n": 1}).run_id
    drain(engine)
    children = [child.run_id for child in engine.status(run_id).children]
    assert len(children) == 3
    monkeypatch.setattr(pages, "TREE_CAP", 2)
    html = client.get(f"/runs/{run_id}").text
    tree = html[html.index('id="children"') :]
    assert "The first 2 descendants" in tree
    shown = [int(found) for found in re.findall(r'<li class="depth-1"><a href="/runs/(\d+)"', tree)]
    assert shown == children[:2]
    assert 'status-completed">completed</span> 3' in tree  # the count is of them all


def test_an_unknown_run_is_a_404_page(engine: Durable, client: TestClient) -> None:
    page = client.get("/runs/987654")
    assert page.status_code == 404
    assert "987654" in page.text
    assert client.get("/runs/99999999999999999999999").status_code == 404


def test_workflows_counts_runs_by_status_and_hourly_durations(
    engine: Durable, client: TestClient
) -> None:
    for _ in range(3):
        engine.start("greet")
    engine.start("charge")
    engine.start("approve")
    drain(engine)
    html = client.get("/workflows").text
    row = re.search(r'<tr data-workflow="greet">(.*?)</tr>', html, re.DOTALL)
    assert row is not None
    assert 'status=completed&amp;all=1">3</a>' in row[1]
    charge = re.search(r'<tr data-workflow="charge">(.*?)</tr>', html, re.DOTALL)
    assert charge is not None
    assert 'status=failed&amp;all=1">1</a>' in charge[1]
    assert "<h3>greet</h3>" in html
    finished = re.search(r"<h3>greet</h3>.*?<td>finished</td>(.*?)</tr>", html, re.DOTALL)
    assert finished is not None
    assert re.findall(r">(\d+)</td>", finished[1])[-1] == "3"  # this hour
    day = client.get("/workflows?hours=24").text
    assert "The last 24 hours" in day
    day_row = re.search(r"<h3>greet</h3>.*?<td>finished</td>(.*?)</tr>", day, re.DOTALL)
    assert day_row is not None
    assert len(re.findall(r"<td class=\"num\">", day_row[1])) == 24


def test_the_workflows_statistics_poll_less_often_than_the_other_pages(
    client: TestClient,
) -> None:
    stats = client.get("/workflows?hours=12").text
    assert 'hx-get="/workflows?fragment=1&amp;hours=12" hx-trigger="every 30s"' in stats
    assert pages.STATS_POLL == 30
    assert 'hx-trigger="every 3s"' in client.get("/limits").text


def test_ended_runs_are_counted_among_the_newest_ids_live_ones_all(
    engine: Durable, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.start("approve")  # the oldest id, and live: always counted
    for _ in range(3):
        engine.start("greet")
    drain(engine)
    monkeypatch.setattr(queries, "COUNT_WINDOW", 2)
    html = client.get("/workflows").text
    greet = re.search(r'<tr data-workflow="greet">(.*?)</tr>', html, re.DOTALL)
    approve = re.search(r'<tr data-workflow="approve">(.*?)</tr>', html, re.DOTALL)
    assert greet is not None
    assert approve is not None
    assert 'status=completed&amp;all=1">2</a>' in greet[1]
    assert 'status=suspended&amp;all=1">1</a>' in approve[1]
    assert "among the newest 2" in html


def test_the_workflow_filter_offers_registered_workflows_and_recent_ones(
    engine: Durable, client: TestClient
) -> None:
    html = client.get("/").text  # no runs yet: the registered workflows
    assert '<option value="leaf">leaf</option>' in html
    assert '<option value="charge">charge</option>' in html


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert queries.percentile(values, 0.5) == 50.0
    assert queries.percentile(values, 0.95) == 95.0
    assert queries.percentile(values, 0.99) == 99.0
    assert queries.percentile([], 0.5) is None
    assert queries.percentile([7.0], 0.99) == 7.0


def test_workers_lists_live_workers_and_what_they_hold(engine: Durable, client: TestClient) -> None:
    assert "no live worker" in client.get("/workers").text
    run_id = engine.start("greet").run_id
    # A worker on another queue claims nothing itself; the job it holds is claimed for it.
    worker = engine.worker(queues=["elsewhere"], name="dash-worker", poll_interval=0.05).start()
    try:
        for _ in range(200):
            if engine.admin.workers():
                break
            worker.join(0.05)
        job = engine.admin.claim(worker="dash-worker")
        assert job is not None
        html = client.get("/workers").text
    finally:
        worker.stop(wait=True)
    row = re.search(r"<td>dash-worker</td>(.*?)</tr>", html, re.DOTALL)
    assert row is not None
    assert f'href="/runs/{run_id}">run {run_id}</a>' in row[1]
    assert "elsewhere" in row[1]


def test_dead_letters_lists_open_letters_and_resolved_on_request(
    engine: Durable, client: TestClient
) -> None:
    run_id = engine.start("greet").run_id
    job = engine.admin.claim()
    assert job is not None
    engine.backend.dead_letter(job, error="crashed its worker 5 times")
    (letter,) = engine.admin.dead_letters()
    html = client.get("/dead-letters").text
    assert f'data-letter-id="{letter.id}"' in html
    assert "crashed its worker 5 times" in html
    assert f'href="/runs/{run_id}"' in html
    assert (
        f'dead letter <a href="/dead-letters">{letter.id}</a>' in client.get(f"/runs/{run_id}").text
    )
    engine.recover()
    assert f'data-letter-id="{letter.id}"' not in client.get("/dead-letters").text
    assert f'data-letter-id="{letter.id}"' in client.get("/dead-letters?all=1").text


def test_limits_shows_paused_workflows_rate_limits_and_slots(
    engine: Durable, client: TestClient
) -> None:
    engine.set_rate_limit("stripe", limit=10, per=timedelta(seconds=1))
    engine.pause("greet")
    html = client.get("/limits").text
    paused = html[html.index('id="paused"') : html.index('id="rate-limits"')]
    assert "greet" in paused
    limits = html[html.index('id="rate-limits"') : html.index('id="slots"')]
    assert "stripe" in limits
    assert ">10<" in limits


def test_schedules_lists_each_schedule(engine: Durable, client: TestClient) -> None:
    assert "no schedules" in client.get("/schedules").text
    engine.schedule("nightly-greet", "greet", cron="0 3 * * *", input={"who": "night"})
    html = client.get("/schedules").text
    assert "nightly-greet" in html
    assert "0 3 * * *" in html
    (tick,) = engine.backfill(
        "nightly-greet", engine.now - timedelta(days=1, hours=1), engine.now - timedelta(hours=1)
    )
    fired = client.get(f"/runs/{tick.run_id}").text
    when = tick.fire_time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    assert f'id="fired-by"><a href="/schedules">nightly-greet</a>, tick {when}</dd>' in fired
