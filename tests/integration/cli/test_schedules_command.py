"""``durable-sa schedules``: every schedule with its next fire time, last run and state."""

from __future__ import annotations

import json
from datetime import timedelta

from durable_sa import durable


def test_schedules_lists_next_fire_last_run_and_paused(engine, durable_each_database_url, cli):
    url = ["--database-url", durable_each_database_url]
    assert cli("schedules", *url) == (0, "no schedules\n", "")
    durable("cli-report").step("one", lambda ctx: {})
    engine.schedule("nightly", "cli-report", cron="0 3 * * *", timezone="Europe/Paris")
    engine.schedule("minutely", "cli-report", cron="* * * * *", catchup_window=timedelta(minutes=5))
    engine.backfill("minutely", engine.now - timedelta(minutes=1), engine.now)
    engine.pause_schedule("nightly")
    code, out, err = cli("schedules", *url)
    assert (code, err) == (0, "")
    header, minutely, nightly = out.splitlines()
    assert header.split()[:9] == [
        "name", "workflow", "cron", "timezone", "overlap", "state", "next_fire", "last_fired",
        "last_run",
    ]  # fmt: skip
    assert minutely.startswith("minutely")
    assert "active" in minutely
    assert nightly.startswith("nightly")
    assert "paused" in nightly
    assert "Europe/Paris" in nightly
    code, out, _ = cli("schedules", "--json", *url)
    rows = {row["name"]: row for row in map(json.loads, out.splitlines())}
    assert rows["nightly"]["paused"] is True
    assert rows["minutely"]["catchup_window"] == 300.0
    assert rows["minutely"]["next_fire_at"].endswith("+00:00")
