"""The Lease canary: a renewal read by the campaign but not delivered by the watch in time
means watch streams died silently; readiness reports it until kopf's streams have recovered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from certsmith.replicas.watch_health import RECOVERY_SECONDS, STALL_GRACE_SECONDS, WatchHealth

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def renewal(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_renewals_delivered_in_time_are_healthy() -> None:
    clock = Clock()
    health = WatchHealth(clock=clock)
    for second in range(0, 20, 2):
        health.delivered(renewal(second))
        clock.now += 1
        health.read(renewal(second))
        clock.now += 1
        assert health.problem() is None


def test_a_renewal_never_delivered_is_reported_after_the_grace() -> None:
    clock = Clock()
    health = WatchHealth(clock=clock)
    health.delivered(renewal(0))
    health.read(renewal(2))  # the stream is silent from here on
    clock.now += STALL_GRACE_SECONDS - 0.5
    assert health.problem() is None
    clock.now += 1
    assert "stopped delivering" in (health.problem() or "")


def test_the_report_lasts_until_kopf_streams_have_reconnected() -> None:
    clock = Clock()
    health = WatchHealth(clock=clock)
    health.delivered(renewal(0))
    health.read(renewal(2))
    clock.now += STALL_GRACE_SECONDS + 1
    assert health.problem() is not None
    health.delivered(renewal(8))  # the canary reconnected: it alone recovered so far
    clock.now += RECOVERY_SECONDS - 1
    assert health.problem() is not None
    clock.now += 2
    assert health.problem() is None


def test_a_late_delivery_within_the_grace_is_no_stall() -> None:
    clock = Clock()
    health = WatchHealth(clock=clock)
    health.delivered(renewal(0))
    health.read(renewal(2))
    clock.now += STALL_GRACE_SECONDS - 1
    health.delivered(renewal(4))  # newer than what was read: it covers it
    clock.now += 10
    assert health.problem() is None


def test_nothing_is_judged_before_the_watch_delivered_once() -> None:
    clock = Clock()
    health = WatchHealth(clock=clock)
    health.read(renewal(2))  # the canary is still connecting at start
    clock.now += 60
    assert health.problem() is None


def test_a_delivery_later_than_the_grace_was_still_a_stall() -> None:
    clock = Clock()
    health = WatchHealth(clock=clock)
    health.delivered(renewal(0))
    health.read(renewal(2))
    clock.now += STALL_GRACE_SECONDS + 1
    health.delivered(renewal(8))  # the stream came back by itself, late
    clock.now += 1
    assert health.problem() is not None
