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


def test_a_url_password_is_hidden_up_to_the_last_at_sign():
    inv = Invocation()
    text = "could not connect to postgresql://u:Qx7@Lm4:Zr9/Tk2@h:5432/db (refused)"
    assert inv.scrub(text) == "could not connect to postgresql://u:***@h:5432/db (refused)"


def test_the_password_as_typed_is_scrubbed_too():
    inv = Invocation()
    inv.remember(sa.make_url("postgresql://u:Qx7%40Lm4:Zr9@h/db"), typed="Qx7%40Lm4:Zr9")
    assert inv.secrets >= {"Qx7@Lm4:Zr9", "Qx7%40Lm4%3AZr9", "Qx7%40Lm4:Zr9"}
    assert inv.scrub("a Qx7%40Lm4:Zr9 b Qx7@Lm4:Zr9 c") == "a *** b *** c"


def test_a_password_in_the_query_is_hidden_from_the_url_and_scrubbed():
    inv = Invocation()
    url = sa.make_url("postgresql://u@h/db?sslpassword=Kv8keyfile&password=Zx9pw&sslmode=require")
    inv.remember(url)
    assert inv.url == "postgresql://u@h/db?password=***&sslmode=require&sslpassword=***"
    assert "Zx9pw" not in inv.scrub("server said: Zx9pw rejected")
    assert inv.scrub("sslpassword=Kv8other host=h") == "sslpassword=*** host=h"


def test_a_hidden_query_password_keeps_the_text_around_it():
    inv = Invocation()
    inv.remember(sa.make_url("postgresql://u@h/db?password=Zx9pw"))
    text = f"could not reach the database at {inv.url}: refused"
    assert (
        inv.scrub(text)
        == "could not reach the database at postgresql://u@h/db?password=***: refused"
    )
    assert inv.scrub("password=***secret host=h") == "password=*** host=h"
