"""Where kube.follow watches from after a stream ends: every change is passed on once.

A quiet stream (the CA Secrets' namespace) ends by the client's read timeout, not by the
apiserver's: follow watched again from where the stream had begun, so each CA Secret's
creation was reported again every ~16 s, and every report had every authority step.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from certsmith.kube import GONE, ApiError, Listing, follow


class Recorder:
    """What follow passed on, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def listed(self, listing: Listing) -> None:
        self.seen.append(("LISTED", listing.resource_version))

    def event(self, kind: str, metadata: Mapping[str, Any]) -> None:
        self.seen.append((kind, str(metadata["name"])))


def added(name: str, version: str) -> dict[str, Any]:
    return {"type": "ADDED", "object": {"metadata": {"name": name, "resourceVersion": version}}}


def run(streams: list[list[dict[str, Any] | ApiError]]) -> tuple[Recorder, list[str]]:
    """follow over `streams` (one per watch call; an ApiError in one ends it there), from a
    first list at version "10"; the versions each watch was asked from."""
    recorder, asked, done = Recorder(), [], []

    def watch(version: str) -> Iterator[dict[str, Any]]:
        asked.append(version)
        for item in streams[len(asked) - 1]:
            if isinstance(item, ApiError):
                raise item
            yield item
        if len(asked) == len(streams):
            done.append(True)

    follow(
        recorder,
        first=Listing(items=[], resource_version="10"),
        relist=lambda: Listing(items=[], resource_version="50"),
        watch=watch,
        going=lambda: not done,
        retry_seconds=0,
        what="test",
    )
    return recorder, asked


def test_a_stream_broken_off_by_a_read_timeout_resumes_after_its_last_event() -> None:
    timed_out = ApiError(0, "Unreachable", "Read timed out. (read timeout=15.0)")
    recorder, asked = run(
        [
            [added("root", "11"), added("intermediate", "12"), timed_out],
            [timed_out],
            [added("crl-signers", "13")],
        ]
    )
    assert asked == ["10", "12", "12"]
    assert recorder.seen == [("ADDED", "root"), ("ADDED", "intermediate"), ("ADDED", "crl-signers")]


def test_bookmarks_move_the_position_without_being_passed_on() -> None:
    bookmark = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "40"}}}
    recorder, asked = run([[added("root", "11"), bookmark], []])
    assert asked == ["10", "40"]
    assert recorder.seen == [("ADDED", "root")]


def test_a_version_too_old_lists_again_and_watches_from_the_list() -> None:
    gone = {"type": "ERROR", "object": {"code": GONE, "message": "too old resource version"}}
    recorder, asked = run([[added("root", "11"), gone], [], []])
    assert asked == ["10", "50", "50"]
    assert recorder.seen == [("ADDED", "root"), ("LISTED", "50")]


def test_a_410_answer_lists_again() -> None:
    recorder, asked = run([[ApiError(GONE, "Expired", "too old")], []])
    assert asked == ["10", "50"]
    assert recorder.seen == [("LISTED", "50")]
