"""Reading the database URL the user typed: refused in one line, never showing its password."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest

from durable_sa.cli.errors import USAGE, CliError
from durable_sa.cli.urls import masked, password_text, read_url

PASSWORDS = ["Qx7@Lm4:Zr9/Tk2", "Qx7@Lm4@Zr9", "Qx7:Lm4/Zr9@Tk2", "Qx7@@Lm4"]


def _fragments(password):
    return [part for part in re.split(r"[@:/]", password) if part]


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize("port", ["5432", "abc", ""])
def test_an_unencoded_at_sign_in_the_password_is_refused_without_showing_it(password, port):
    host = f"127.0.0.1:{port}" if port else "127.0.0.1"
    text = f"postgresql+psycopg://app:{password}@{host}/db"
    with pytest.raises(CliError) as caught:
        read_url(text)
    message = str(caught.value)
    assert caught.value.code == USAGE
    assert message.startswith(f"bad database URL postgresql+psycopg://app:***@{host}/db: ")
    assert "percent-encode it (@ as %40, : as %3A, / as %2F)" in message
    for fragment in _fragments(password):
        assert fragment not in message


def test_the_brief_example_is_refused_whole():
    text = "postgresql+psycopg://u:p@ss:w/rd@127.0.0.1:5432/db"
    with pytest.raises(CliError) as caught:
        read_url(text)
    message = str(caught.value)
    assert "postgresql+psycopg://u:***@127.0.0.1:5432/db" in message
    for fragment in ("p@ss", "ss:w", "w/rd", "@ss", "rd@"):
        assert fragment not in message


@pytest.mark.parametrize("password", [*PASSWORDS, "plain", "a b%c?d#e&f"])
def test_a_percent_encoded_password_is_read_exactly(password):
    url = read_url(f"postgresql+psycopg://app:{quote(password, safe='')}@127.0.0.1:5432/db")
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "app",
        password,
        "127.0.0.1",
        5432,
        "db",
    )


def test_colons_and_slashes_alone_are_read_as_sqlalchemy_reads_them():
    url = read_url("postgresql+psycopg://app:Qx7:Lm4/Zr9@127.0.0.1/db")
    assert (url.password, url.host, url.database) == ("Qx7:Lm4/Zr9", "127.0.0.1", "db")


def test_an_at_sign_in_the_user_name_alone_is_fine():
    url = read_url("postgresql+psycopg://app@server:Qx7pw@127.0.0.1/db")
    assert (url.username, url.password, url.host) == ("app@server", "Qx7pw", "127.0.0.1")


def test_a_sqlite_path_with_at_signs_is_fine():
    url = read_url("sqlite:////srv/a@b/c@d.db")
    assert url.database == "/srv/a@b/c@d.db"


def test_a_port_that_is_not_a_number_is_one_usage_error():
    with pytest.raises(CliError) as caught:
        read_url("postgresql+psycopg://app:Qx7pw@127.0.0.1:abc/db")
    assert caught.value.code == USAGE
    assert str(caught.value).startswith(
        "bad database URL postgresql+psycopg://app:***@127.0.0.1:abc/db: the port must be a number"
    )
    assert "Qx7pw" not in str(caught.value)


def test_a_forgotten_at_sign_hides_everything_after_the_scheme():
    with pytest.raises(CliError) as caught:  # "Qx7pw" would be read as the port
        read_url("postgresql+psycopg://app:Qx7pw/db")
    assert str(caught.value).startswith("bad database URL postgresql+psycopg://***: the port")
    assert "Qx7pw" not in str(caught.value)


def test_an_unparsable_url_is_not_shown():
    with pytest.raises(CliError) as caught:
        read_url("postgres ql://app:Qx7pw@host/db")
    assert caught.value.code == USAGE
    assert "Qx7pw" not in str(caught.value)
    assert str(caught.value).startswith("bad database URL: expected dialect+driver://")


def test_masked_and_password_text():
    text = "postgresql://app:Qx7@Lm4:Zr9/Tk2@db.example:5432/app?sslmode=require"
    assert masked(text) == "postgresql://app:***@db.example:5432/app?sslmode=require"
    assert password_text(text) == "Qx7@Lm4:Zr9/Tk2"
    assert masked("postgresql://app@db.example/app") == "postgresql://app@db.example/app"
    assert password_text("postgresql://app@db.example/app") is None
    assert masked("sqlite:///app.db") == "sqlite:///app.db"
