"""The plugin's table and duration formatting: what a person reads in a terminal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from certsmith.api import times
from certsmith.cli import output

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def test_table_aligns_columns_with_kubectl_spacing_and_no_trailing_blanks():
    text = output.table(("NAME", "READY", "MESSAGE"), [("web", "True", ""), ("a", "False", "x")])
    assert text.splitlines() == [
        "NAME   READY   MESSAGE",
        "web    True",
        "a      False   x",
    ]


def test_table_keeps_rows_on_one_line():
    text = output.table(("NAME", "MESSAGE"), [("web", "first line\nsecond   line")])
    assert text.splitlines()[1] == "web    first line second line"


def test_styling_does_not_disturb_alignment():
    plain = output.table(("READY", "NAME"), [("True", "a"), ("False", "b")])
    styled = output.table(
        ("READY", "NAME"),
        [("True", "a"), ("False", "b")],
        style=lambda column, text: output.color_status(text, column == 0),
    )
    assert "\x1b[" in styled
    assert styled.replace("\x1b[32m", "").replace("\x1b[31m", "").replace("\x1b[0m", "") == plain


def test_color_is_off_when_not_a_terminal(tmp_path):
    with (tmp_path / "out").open("w") as stream:
        assert not output.use_color(stream)
    assert output.color_status("False", False) == "False"


@pytest.mark.parametrize(
    ("delta", "shown"),
    [
        (timedelta(seconds=45), "45s"),
        (timedelta(minutes=3, seconds=20), "3m20s"),
        (timedelta(minutes=119), "119m"),
        (timedelta(hours=5, minutes=30), "5h30m"),
        (timedelta(hours=30), "30h"),
        (timedelta(days=5, hours=4), "5d4h"),
        (timedelta(days=89, hours=23), "89d"),
        (timedelta(days=3650), "10y"),
        (timedelta(days=365 * 9 + 364), "9y364d"),
    ],
)
def test_short_durations_read_like_kubectl_ages(delta, shown):
    assert output.short_duration(delta) == shown


def test_until_says_expired_once_the_moment_has_passed():
    assert output.until(NOW + timedelta(days=89, hours=23), NOW) == "89d"
    assert output.until(NOW - timedelta(hours=3), NOW) == "expired 3h ago"
    assert output.until(None, NOW) == "<none>"


def test_api_timestamps_round_trip():
    moment = times.parse_time("2026-06-01T12:00:00Z")
    assert moment == NOW
    assert output.format_time(moment) == "2026-06-01T12:00:00Z"
    assert times.parse_time("not a time") is None
    assert times.parse_time(None) is None
