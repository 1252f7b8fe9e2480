"""Password scrubbing: URLs, conninfo strings and log lines never show a password."""

from __future__ import annotations

import logging

import sqlalchemy as sa

from durable_sa.cli.scrubbing import Invocation, ScrubbingFormatter


def test_scrub_hides_url_and_conninfo_passwords():
    inv = Invocation()
    text = "a postgresql://u:pw123@h/db and password=pw123 host=h and pw123 again"
    assert inv.scrub(text) == "a postgresql://u:***@h/db and password=*** host=h and pw123 again"
    inv.remember(sa.make_url("postgresql://u:pw123@h/db"))
    assert "pw123" not in inv.scrub(text)


def test_worker_log_lines_are_scrubbed_too():
    inv = Invocation()
    inv.remember(sa.make_url("postgresql://u:hunter2hunter2@h/db"))
    formatter = ScrubbingFormatter(inv)
    record = logging.LogRecord(
        "durable_sa",
        logging.WARNING,
        "x.py",
        1,
        "lost %s (pw %s)",
        ("postgresql://u:pw@h", "hunter2hunter2"),
        None,
    )
    line = formatter.format(record)
    assert line.endswith("WARNING lost postgresql://u:***@h (pw ***)")
