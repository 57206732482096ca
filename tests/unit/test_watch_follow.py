"""kube.follow: each watch starts after the last event passed on, also when the previous
stream ended by an error after some events (a read timeout on a quiet collection), so no
event is passed on twice; a 410 Gone lists again."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from certsmith.kube import ApiError, FailureStreak, Listing, follow

TIMED_OUT = ApiError(0, "Unreachable", "Read timed out. (read timeout=15)")


class Recorded:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def listed(self, listing: Listing) -> None:
        self.seen.append(("LISTED", listing.resource_version))

    def event(self, kind: str, metadata: Mapping[str, Any]) -> None:
        self.seen.append((kind, str(metadata.get("name"))))


def _event(kind: str, name: str, version: str) -> dict[str, Any]:
    return {"type": kind, "object": {"metadata": {"name": name, "resourceVersion": version}}}


GONE_EVENT = {"type": "ERROR", "object": {"code": 410, "message": "too old resource version"}}


def _follow(
    streams: Sequence[tuple[Sequence[dict[str, Any]], ApiError | None]],
) -> tuple[list[str], list[tuple[str, str]]]:
    """Runs follow over `streams` (each its events, then the error it ends with, if any)
    from a first list at version 3; returns the versions watched from and what was passed
    on."""
    recorded = Recorded()
    watched_from: list[str] = []
    left = list(streams)

    def watch(version: str) -> Iterator[dict[str, Any]]:
        watched_from.append(version)
        events, error = left.pop(0)
        yield from events
        if error is not None:
            raise error

    follow(
        recorded,
        first=Listing(items=[], resource_version="3"),
        relist=lambda: Listing(items=[], resource_version="20"),
        watch=watch,
        going=lambda: bool(left),
        retry_seconds=0,
        what="test objects",
    )
    return watched_from, recorded.seen


@pytest.mark.parametrize(
    ("streams", "watched_from", "seen"),
    [
        # A stream ending by a read timeout after an event: the next starts after it.
        ([([_event("ADDED", "a", "5")], TIMED_OUT), ([], None)], ["3", "5"], [("ADDED", "a")]),
        (
            [
                ([_event("ADDED", "a", "5"), _event("MODIFIED", "a", "8")], TIMED_OUT),
                ([_event("DELETED", "a", "9")], TIMED_OUT),
                ([], None),
            ],
            ["3", "8", "9"],
            [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")],
        ),
        # A bookmark moves the version on, passing nothing on.
        ([([_event("BOOKMARK", "", "12")], TIMED_OUT), ([], None)], ["3", "12"], []),
        # The stream's own end (the apiserver's timeoutSeconds).
        ([([_event("MODIFIED", "b", "7")], None), ([], None)], ["3", "7"], [("MODIFIED", "b")]),
        # Silence, then a timeout: the same version again.
        ([([], TIMED_OUT), ([], None)], ["3", "3"], []),
        # 410 Gone: a list, then a watch from its version.
        ([([GONE_EVENT], None), ([], None)], ["3", "20"], [("LISTED", "20")]),
        ([([], ApiError(410, "Gone", "too old")), ([], None)], ["3", "20"], [("LISTED", "20")]),
    ],
)
def test_a_watch_starts_after_the_last_event_passed_on(
    streams: Sequence[tuple[Sequence[dict[str, Any]], ApiError | None]],
    watched_from: list[str],
    seen: list[tuple[str, str]],
) -> None:
    assert _follow(streams) == (watched_from, seen)


def test_a_streak_of_failures_backs_off_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    """An apiserver down for a while: the watch is retried at 1, 2, 4, 8, 8 s (not every
    second), with one WARNING for the streak and one INFO when it resumes."""
    streak = FailureStreak("watch of Secrets in certsmith", 1.0)
    down = ApiError(0, "Unreachable", "connection refused")
    with caplog.at_level(logging.DEBUG, logger="certsmith.kube"):
        waits = [streak.failed(down) for _ in range(5)]
        streak.succeeded()
        again = streak.failed(down)
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert again == 1.0  # a new streak starts over
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "watch of Secrets in certsmith ended: 0 Unreachable: connection refused",
        "watch of Secrets in certsmith ended: 0 Unreachable: connection refused",
    ]
    assert "watch of Secrets in certsmith resumed after 5 failed attempts" in caplog.messages
