"""What an on-call operator needs from the dashboard (TestClient, both databases).

Each case is a problem an operator met in a trial of the first version, numbered as
in that report: false zeros in the hourly counts (1), typed JSON (2),
stuck runs in the list (6), one snapshot per page (11), messages not from the URL (12),
signals sent to a name never waited for (5), limits with their waiters (13), the signal
form and Recover where they apply (14), a holder that is gone (8), "since previous" (9),
a failed compensator traced (7) and a canceled run that says so (15). What only a browser
shows (live buttons, width, confirmations) is in test_browser.py.
"""

from __future__ import annotations

import html as html_lib
import re
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import update

from durable_sa.dashboard import queries
from durable_sa.dashboard.flash import FLASH_COOKIE
from durable_sa.store.models import jobs_table
from durable_sa.testing import drain
from tests.dashboard.conftest import flash_of, post

if TYPE_CHECKING:
    import pytest
    from starlette.testclient import TestClient

    from durable_sa import Durable


def _finished(page: str, workflow: str) -> list[str]:
    row = re.search(rf"<h3>{workflow}</h3>.*?<td>finished</td>(.*?)</tr>", page, re.DOTALL)
    assert row is not None, f"no hourly table for {workflow}"
    return re.findall(r"<td class=\"num[^\"]*\"[^>]*>([^<]*)</td>", row[1])


def _row(page: str, run_id: int) -> str:
    found = re.search(rf'<tr data-run-id="{run_id}">(.*?)</tr>', page, re.DOTALL)
    assert found is not None, f"run {run_id} is not listed"
    return found[1]


def _ids(page: str) -> list[int]:
    return [int(found) for found in re.findall(r'data-run-id="(\d+)"', page)]


def _strand(engine: Durable, workflow: str = "greet") -> tuple[int, int]:
    """A run whose job was dead-lettered: running, no job, an open letter."""
    run_id = engine.start(workflow).run_id
    job = engine.admin.claim()
    assert job is not None
    engine.backend.dead_letter(job, error="crashed its worker 3 times")
    (letter,) = [d for d in engine.admin.dead_letters() if d.run_id == run_id]
    return run_id, letter.id


# ── 1: no false zero ─────────────────────────────────────────────────────────────


def test_a_burst_of_one_workflow_does_not_zero_the_others(
    engine: Durable, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.start("charge")  # the oldest: a shared window of the newest runs left it out
    for _ in range(3):
        engine.start("greet")
    drain(engine)
    monkeypatch.setattr(queries, "STATS_SAMPLE", 2)
    page = client.get("/workflows").text
    assert _finished(page, "charge")[-1] == "1"  # its own window: not a false 0
    greet = _finished(page, "greet")
    assert greet[-1] == "≥2"  # 3 ended; its sample of 2 begins within this hour
    assert set(greet[:-1]) == {"\u2013"}  # an en dash before the sample: unknown, not 0
    assert "outside the sample" in page


# ── 2: typed JSON ────────────────────────────────────────────────────────────────


def test_inputs_and_results_show_as_typed_and_escaped(engine: Durable, client: TestClient) -> None:
    given = {"name": "Zoë Müller", "city": "東京", "note": "a & b < c"}
    run_id = engine.start("greet", given).run_id
    page = client.get(f"/runs/{run_id}").text
    assert "Zoë Müller" in page
    assert "東京" in page
    assert "a &amp; b &lt; c" in page
    assert "\\u00eb" not in page
    assert "\\u6771" not in page
    assert "\\u0026" not in page


def test_a_long_input_is_folded(engine: Durable, client: TestClient) -> None:
    run_id = engine.start("greet", {"blob": "x" * 5000}).run_id
    page = client.get(f"/runs/{run_id}").text
    folded = re.search(r'<details class="fold"><summary>(.*?)</summary>', page, re.DOTALL)
    assert folded is not None
    assert "x" * 5000 not in folded[1]  # the summary is short; the whole value is inside
    assert "x" * 5000 in page


# ── 6: stuck runs look stuck ─────────────────────────────────────────────────────


def test_the_runs_list_marks_stranded_pending_and_failed_compensation(
    engine: Durable, client: TestClient
) -> None:
    stranded, letter = _strand(engine)
    drain(engine)
    active = engine.start("export").run_id
    waiting = engine.start("export").run_id
    refund = engine.start("refund").run_id
    fine = engine.start("greet").run_id
    drain(engine)
    page = client.get("/").text
    assert "stranded" in _row(page, stranded)
    assert f"dead letter {letter}: crashed its worker 3 times" in _row(page, stranded)
    assert "limit of workflow &#39;export&#39; (1/1 active)" in _row(page, waiting)
    assert "compensation failed" in _row(page, refund)
    assert "stranded" not in _row(page, fine)
    assert "compensation failed" not in _row(page, fine)
    assert "limit of" not in _row(page, active)
    assert _ids(client.get("/?problem=dead-lettered").text) == [stranded]
    assert _ids(client.get("/?problem=compensation-failed").text) == [refund]
    assert _ids(client.get("/?status=pending").text) == [waiting]
    assert "unknown problem" in client.get("/?problem=bogus").text


# ── 11: one snapshot per page ────────────────────────────────────────────────────


def test_a_run_page_is_read_in_one_snapshot(
    engine: Durable, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = engine.start("greet").run_id
    real_journal = queries.journal

    def journal_after_a_worker(*args: object, **kwargs: object) -> object:
        drain(engine)  # a worker commits the whole run between the page's reads
        return real_journal(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(queries, "journal", journal_after_a_worker)
    page = client.get(f"/runs/{run_id}").text
    assert engine.status(run_id).status == "completed"  # it did finish meanwhile
    status = re.search(r'id="run-status">(.*?)</dd>', page, re.DOTALL)
    assert status is not None
    assert "completed" not in status[1]  # as of the page's snapshot...
    assert "no step has finished yet" in page  # ...and so is its timeline


# ── 12: messages not from the URL ────────────────────────────────────────────────


def test_a_message_comes_from_the_action_not_the_url_and_shows_once(
    engine: Durable, client: TestClient
) -> None:
    run_id = engine.start("approve").run_id
    drain(engine)
    spoofed = client.get(f"/runs/{run_id}?error=call+support+at+555&done=refund+sent").text
    assert "call support" not in spoofed
    assert "refund sent" not in spoofed
    sent = post(client, f"/runs/{run_id}/signal", f"/runs/{run_id}", signal="approve")
    assert sent.headers["location"] == f"/runs/{run_id}"  # no message in the URL
    shown = client.get(f"/runs/{run_id}").text
    assert 'id="flash"' in shown
    assert "signal &#39;approve&#39; delivered" in shown
    again = client.get(f"/runs/{run_id}").text
    assert 'id="flash"' not in again  # a reload does not repeat it
    client.cookies.set(FLASH_COOKIE, "eyJrIjoiZXJyb3IiLCJ0IjoiaGkifQ.0000")  # not signed by us
    assert 'id="flash"' not in client.get(f"/runs/{run_id}").text


# ── 5: a signal to a name never waited for; refusals in words; typed data kept ──


def test_a_signal_the_workflow_never_waits_for_is_warned_of_and_shown(
    engine: Durable, client: TestClient
) -> None:
    run_id = engine.start("approve").run_id
    drain(engine)
    sent = post(client, f"/runs/{run_id}/signal", f"/runs/{run_id}", signal="aprove")
    message = flash_of(client, sent)["error"]
    assert "kept for the run's next wait" in message
    assert "never waits for 'aprove'" in message
    assert "'approve'" in message
    page = client.get(f"/runs/{run_id}").text
    kept = page[page.index('id="kept-signals"') :]
    assert "aprove" in kept
    assert "never waited for" in kept


def test_a_resume_refusal_says_what_the_run_waits_for(engine: Durable, client: TestClient) -> None:
    run_id = engine.start("approve").run_id
    drain(engine)
    refused = post(
        client, f"/runs/{run_id}/signal", f"/runs/{run_id}", signal="other", mode="resume"
    )
    message = flash_of(client, refused)["error"]
    assert "not_waiting" not in message
    assert "it waits for signal 'approve', not 'other'" in message


def test_the_typed_data_comes_back_after_bad_json(engine: Durable, client: TestClient) -> None:
    run_id = engine.start("approve").run_id
    drain(engine)
    typed = '{"by": "Zoë", oops'
    bad = post(client, f"/runs/{run_id}/signal", f"/runs/{run_id}", signal="approve", data=typed)
    assert flash_of(client, bad)["error"].startswith("the data is not valid JSON")
    page = client.get(f"/runs/{run_id}").text
    field = re.search(r'<input type="text" name="data"[^>]*value="([^"]*)"', page)
    assert field is not None
    assert html_lib.unescape(field[1]) == typed


# ── 13: limits with their limit and waiters ──────────────────────────────────────


def test_limits_show_each_slot_with_its_limit_and_pending_runs(
    engine: Durable, client: TestClient
) -> None:
    engine.start("export")
    engine.start("export")
    engine.start("export")
    drain(engine)
    page = client.get("/limits").text
    row = re.search(r'<tr data-slot="export/">(.*?)</tr>', page, re.DOTALL)
    assert row is not None
    numbers = re.findall(r'<td class="num">(?:<a [^>]*>)?(\w+)', row[1])
    assert numbers == ["1", "1", "2"]  # active, limit, pending
    assert "status=pending" in row[1]


# ── 14: the signal form where it applies; Recover on a stranded run ──────────────


def test_the_signal_form_shows_only_for_a_workflow_with_a_signal_step(
    engine: Durable, client: TestClient
) -> None:
    greet = engine.start("greet").run_id
    approve = engine.start("approve").run_id
    assert 'id="signal-form"' not in client.get(f"/runs/{greet}").text
    assert 'id="cancel"' in client.get(f"/runs/{greet}").text
    with_form = client.get(f"/runs/{approve}").text
    assert 'id="signal-form"' in with_form
    assert '<option value="approve">' in with_form  # the names it waits for, offered


def test_a_stranded_run_offers_recover(engine: Durable, client: TestClient) -> None:
    run_id, _ = _strand(engine)
    page = client.get(f"/runs/{run_id}").text
    assert 'id="recover-run"' in page
    recovered = post(client, "/recover", f"/runs/{run_id}", back=f"/runs/{run_id}")
    assert recovered.headers["location"] == f"/runs/{run_id}"
    assert flash_of(client, recovered) == {"done": "re-enqueued 1 run(s)"}
    assert 'id="recover-run"' not in client.get(f"/runs/{run_id}").text
    drain(engine)
    assert engine.status(run_id).status == "completed"


# ── 8: a holder that is gone, and the lease ──────────────────────────────────────


def test_a_job_held_by_a_worker_no_longer_live_says_so(engine: Durable, client: TestClient) -> None:
    run_id = engine.start("greet").run_id
    job = engine.admin.claim(worker="w1")  # w1 never beats: as after a SIGKILL
    assert job is not None
    page = client.get(f"/runs/{run_id}").text
    lease = re.search(r'<td class="lease">(.*?)</td>', page, re.DOTALL)
    assert lease is not None
    assert "w1, lease until " in lease[1]
    assert "worker not live" in lease[1]


def test_an_expired_lease_says_so(engine: Durable, client: TestClient) -> None:
    run_id = engine.start("greet").run_id
    job = engine.admin.claim(worker="w1")
    assert job is not None
    with engine.sa_engine.begin() as conn:  # w1's lease ran out a minute ago
        conn.execute(
            update(jobs_table)
            .where(jobs_table.c.run_id == run_id)
            .values(claimed_until=engine.now - timedelta(minutes=1))
        )
    page = client.get(f"/runs/{run_id}").text
    lease = re.search(r'<td class="lease">(.*?)</td>', page, re.DOTALL)
    assert lease is not None
    assert "lease expired" in lease[1]


# ── 9: "since previous", not "took" ──────────────────────────────────────────────


def test_the_timeline_column_says_what_it_measures(engine: Durable, client: TestClient) -> None:
    run_id = engine.start("greet").run_id
    drain(engine)
    page = client.get(f"/runs/{run_id}").text
    timeline = page[page.index('id="timeline"') :]
    assert ">since previous</th>" in timeline
    assert ">took<" not in timeline


# ── 7 and 15: a failed compensator's trace; a canceled run says so ───────────────


def test_a_failed_compensator_shows_its_type_and_traceback(
    engine: Durable, client: TestClient
) -> None:
    run_id = engine.start("refund").run_id
    drain(engine)
    page = client.get(f"/runs/{run_id}").text
    trail = page[page.index('id="compensations"') :]
    assert "hold#compensate" in trail
    assert "RuntimeError: the bank is down" in trail
    assert 'class="error-type">RuntimeError<' in trail
    assert "Traceback (most recent call last)" in trail
    assert "_undo_fails" in trail


def test_a_canceled_run_says_it_was_canceled_and_what_was_not_undone(
    engine: Durable, client: TestClient
) -> None:
    run_id = engine.start("approve").run_id
    drain(engine)
    post(client, f"/runs/{run_id}/cancel", f"/runs/{run_id}", compensate="1")
    drain(engine)
    page = client.get(f"/runs/{run_id}").text
    ended = re.search(r'id="ended-by">(.*?)<', page)
    assert ended is not None
    assert "canceled after rolling back" in ended[1]
    assert "cancel call" in ended[1]
    trail = page[page.index('id="compensations"') :]
    assert "approval#compensate" in trail  # the engine's row (docs/sagas.md): kept
    assert "nothing to undo: it has no compensator" in trail
