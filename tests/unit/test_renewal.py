"""Renewal times: cert-manager defaults, renewBefore or percentage, stable jitter, the floor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from certsmith.certificates.renewal import MIN_IN_USE, renewal_time

ISSUED_AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NINETY_DAYS = ISSUED_AT + timedelta(days=90)


def renew(
    not_after: datetime = NINETY_DAYS,
    renew_before: timedelta | None = None,
    percentage: int | None = None,
    jitter_key: str = "",
) -> datetime:
    return renewal_time(
        issued_at=ISSUED_AT,
        not_after=not_after,
        renew_before=renew_before,
        renew_before_percentage=percentage,
        jitter_key=jitter_key,
    )


def test_default_is_two_thirds_of_the_lifetime() -> None:
    assert renew() == ISSUED_AT + timedelta(days=60)


def test_renew_before_counts_back_from_expiry() -> None:
    assert renew(renew_before=timedelta(days=10)) == NINETY_DAYS - timedelta(days=10)


@pytest.mark.parametrize(("percentage", "remaining"), [(10, 9), (25, 22.5), (50, 45), (99, 89.1)])
def test_percentage_is_the_share_of_lifetime_left(percentage: int, remaining: float) -> None:
    assert renew(percentage=percentage) == NINETY_DAYS - timedelta(days=remaining)


@pytest.mark.parametrize("renew_before", [timedelta(days=90), timedelta(days=400), timedelta(0)])
def test_unusable_renew_before_falls_back_to_the_default(renew_before: timedelta) -> None:
    assert renew(renew_before=renew_before) == ISSUED_AT + timedelta(days=60)


def test_default_follows_the_issued_lifetime_not_the_requested_one() -> None:
    # A leaf capped at its CA's expiry is renewed at 2/3 of what it actually got.
    assert renew(not_after=ISSUED_AT + timedelta(hours=3)) == ISSUED_AT + timedelta(hours=2)


@pytest.mark.parametrize(
    ("lifetime", "max_jitter"),
    [
        (timedelta(days=90), timedelta(minutes=5)),  # 1% would be 21.6h: capped at 5 minutes
        (timedelta(hours=1), timedelta(seconds=36)),  # 1% of the lifetime
        (timedelta(hours=24), timedelta(minutes=5)),  # 1% = 14.4 minutes: capped
    ],
)
def test_jitter_stays_within_bounds(lifetime: timedelta, max_jitter: timedelta) -> None:
    not_after = ISSUED_AT + lifetime
    plain = renew(not_after)
    jitters = [plain - renew(not_after, jitter_key=f"ns-{i}/cert-{i}") for i in range(500)]
    assert all(timedelta(0) <= j <= max_jitter for j in jitters)
    assert len(set(jitters)) == 500  # Certificates created together spread out
    assert max(jitters) > max_jitter * 0.9 and min(jitters) < max_jitter * 0.1


def test_jitter_is_deterministic_and_optional() -> None:
    first = renew(jitter_key="default/web")
    assert first == renew(jitter_key="default/web")
    assert first != renew(jitter_key="default/api")
    assert first < renew() == renew(jitter_key="")


def test_jitter_applies_with_renew_before_and_percentage() -> None:
    with_before = renew(renew_before=timedelta(days=10), jitter_key="default/web")
    assert (
        NINETY_DAYS - timedelta(days=10, minutes=5)
        <= with_before
        < NINETY_DAYS - timedelta(days=10)
    )
    with_share = renew(percentage=50, jitter_key="default/web")
    assert (
        NINETY_DAYS - timedelta(days=45, minutes=5) <= with_share < NINETY_DAYS - timedelta(days=45)
    )


def test_never_earlier_than_the_floor_after_issuance() -> None:
    lifetime = timedelta(days=90)
    just_inside = lifetime - timedelta(microseconds=1)
    assert renew(renew_before=just_inside, jitter_key="default/web") == ISSUED_AT + MIN_IN_USE
    # A notAfter at or before the issuance (an expired issuer capped it) still waits.
    assert renew(not_after=ISSUED_AT) == ISSUED_AT + MIN_IN_USE
    assert renew(not_after=ISSUED_AT - timedelta(hours=1)) == ISSUED_AT + MIN_IN_USE


def test_the_floor_is_half_the_smallest_duration() -> None:
    assert timedelta(seconds=30) == MIN_IN_USE
    smallest = ISSUED_AT + timedelta(minutes=1)
    # The default for the smallest duration stays above the floor, jitter included.
    for i in range(200):
        at = renew(not_after=smallest, jitter_key=f"ns/c-{i}")
        assert ISSUED_AT + timedelta(seconds=39.4) <= at <= ISSUED_AT + timedelta(seconds=40)
    # The most aggressive admitted specs for 1m land exactly on the floor, jitter or not.
    for fields in ({"renew_before": timedelta(seconds=30)}, {"percentage": 50}):
        assert renew(smallest, **fields, jitter_key="ns/c") == ISSUED_AT + MIN_IN_USE


@pytest.mark.parametrize(
    ("lifetime", "fields", "earliest", "latest"),
    [
        # 99% of an hour leaves 36 s; a jitter of up to 36 s could eat all of it.
        (timedelta(hours=1), {"percentage": 99}, MIN_IN_USE, timedelta(seconds=36)),
        # 1% of 90 days: renewal at 99% of the lifetime less at most 5 minutes of jitter.
        (
            timedelta(days=90),
            {"percentage": 1},
            timedelta(days=89.1, minutes=-5),
            timedelta(days=89.1),
        ),
        # renewBefore just under the duration: the floor.
        (
            timedelta(minutes=10),
            {"renew_before": timedelta(minutes=9, seconds=59)},
            MIN_IN_USE,
            MIN_IN_USE,
        ),
        # A 1h/99% leaf whose issuer capped it to 3m20s, and one capped to 10 s.
        (timedelta(minutes=3, seconds=20), {"percentage": 99}, MIN_IN_USE, MIN_IN_USE),
        (timedelta(seconds=10), {"percentage": 99}, MIN_IN_USE, MIN_IN_USE),
        (timedelta(seconds=10), {}, MIN_IN_USE, MIN_IN_USE),
    ],
)
def test_boundaries_stay_between_the_floor_and_the_spec(
    lifetime: timedelta, fields: dict[str, Any], earliest: timedelta, latest: timedelta
) -> None:
    for key in ("", *(f"ns-{i}/c" for i in range(100))):
        in_use = renew(ISSUED_AT + lifetime, **fields, jitter_key=key) - ISSUED_AT
        assert earliest <= in_use <= latest, (key, in_use)
