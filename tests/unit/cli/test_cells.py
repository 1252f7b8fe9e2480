"""Table cells, without a database: one line each, cut at a word boundary, and told so."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from durable_sa.cli.cells import Cells, fit, short, table, when

SENTENCE = "the card was declined by the issuing bank because the holder blocked online payments"


def test_short_keeps_one_line_and_leaves_short_values_whole():
    assert short(None) == "-"
    assert short("a\n  b\tc") == "a b c"
    assert short({"k": [1, 2]}) == '{"k": [1, 2]}'
    assert fit("abc", 3) == ("abc", False)


@pytest.mark.parametrize("width", [12, 20, 33, 47, 60])
def test_a_long_sentence_is_cut_between_words(width):
    text, cut = fit(SENTENCE, width)
    assert cut
    assert len(text) <= width
    assert text.endswith("…")
    kept = text.removesuffix("…")
    assert SENTENCE.startswith(kept)
    assert SENTENCE[len(kept)] == " "  # the next character is a space: no word was split
    assert len(kept) >= width // 2 - 1  # and not much more was dropped than needed


def test_a_cut_that_falls_on_a_space_keeps_every_whole_word():
    assert fit("aaaa bbbb cccc", 10) == ("aaaa bbbb…", True)


def test_one_word_longer_than_the_column_is_cut_inside_it():
    cut = short("y" * 100, width=10)
    assert cut == "y" * 9 + "…"
    assert short("id " + "y" * 100, width=10) == "id " + "y" * 6 + "…"  # a space too early


def test_cells_remember_whether_they_cut_anything():
    cells = Cells()
    assert cells("short") == "short"
    assert not cells.cut
    assert cells(SENTENCE, 20).endswith("…")
    assert cells.cut
    cells("short again")
    assert cells.cut  # stays set: the table's footer must say so


def test_when_is_utc_to_the_second():
    paris = timezone(timedelta(hours=2))
    assert when(datetime(2024, 5, 1, 14, 0, 7, 999, tzinfo=paris)) == "2024-05-01 12:00:07Z"
    assert when(datetime(2024, 5, 1, tzinfo=UTC)) == "2024-05-01 00:00:00Z"
    assert when(None) == "-"


def test_table_aligns_columns_and_does_not_pad_the_last():
    lines = table(("id", "name", "note"), [("1", "a-long-name", ""), ("22", "b", "hi")])
    assert lines == ["id  name         note", "1   a-long-name", "22  b            hi"]
