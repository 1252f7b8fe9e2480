"""The command line's own checks: ``--since``, ``--json`` and arguments that are not UTF-8."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from durable_sa.cli.errors import USAGE, CliError
from durable_sa.cli.parser import _since, check_utf8, parse


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", timedelta(hours=2)),
        ("30d", timedelta(days=30)),
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
        ("2024-05-01T12:30:00Z", datetime(2024, 5, 1, 12, 30, tzinfo=UTC)),
        (
            "2024-05-01T12:30:00+02:00",
            datetime(2024, 5, 1, 12, 30, tzinfo=timezone(timedelta(hours=2))),
        ),
    ],
)
def test_since_is_an_age_or_an_iso_time_in_utc_unless_it_says(text, expected):
    value = _since(text)
    assert value == expected
    if isinstance(value, datetime):
        assert value.utcoffset() == expected.utcoffset()


def test_a_time_without_an_offset_is_utc_whatever_the_machines_zone(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert _since("2024-05-01T12:00:00") == datetime(2024, 5, 1, 12, tzinfo=UTC)
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize("text", ["", "2", "yesterday", "2024-02-30", "-2h"])
def test_since_refuses_anything_else(text):
    with pytest.raises(argparse.ArgumentTypeError, match="an ISO 8601 time"):
        _since(text)


def test_read_commands_take_json_and_list_takes_its_filters():
    args = parse(["list", "--json", "--top-level", "--since", "2h", "--workflow", "w"])
    assert (args.json, args.top_level, args.since, args.workflow, args.limit) == (
        True,
        True,
        timedelta(hours=2),
        "w",
        50,
    )
    assert not parse(["list"]).json
    assert not parse(["list"]).top_level
    for argv in (["status", "1"], ["dead-letters"], ["dead-letters", "show", "3"], ["workers"]):
        assert parse([*argv, "--json"]).json


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["list", "\udcff"], "argument 2 is not valid UTF-8"),
        (["list", "--workflow", "a\udcffb"], "argument 3 (the value of --workflow) is not"),
        (["list", "--workflow=a\udcffb"], "argument 2 (the value of --workflow) is not"),
        (["--x\udcff=1"], "argument 1 is not valid UTF-8"),  # an option name it cannot show
    ],
)
def test_an_argument_that_is_not_utf8_is_named_never_shown(argv, says):
    with pytest.raises(CliError) as caught:
        check_utf8(argv)
    assert caught.value.code == USAGE
    assert says in str(caught.value)
    assert "\udcff" not in str(caught.value)
    str(caught.value).encode("utf-8")  # printable anywhere


@pytest.mark.parametrize("command", ["worker", "relay"])
@pytest.mark.parametrize("before", [True, False])
def test_a_database_url_for_a_command_that_runs_app_is_refused_not_ignored(command, before):
    """worker and relay use APP's engine: a --database-url would be silently ignored."""
    url = ["--database-url", "sqlite:///other.db"]
    argv = [*url, command, "app:engine"] if before else [command, "app:engine", *url]
    with pytest.raises(CliError) as refused:
        parse(argv)
    assert refused.value.code == USAGE
    message = str(refused.value)
    assert f"{command} runs on the database of APP's engine" in message
    assert "\n" not in message
