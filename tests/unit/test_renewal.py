"""Renewal times: cert-manager defaults, renewBefore or percentage, bounded stable jitter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from certsmith.renewal import renewal_time

NOT_BEFORE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NINETY_DAYS = NOT_BEFORE + timedelta(days=90)


def renew(
    not_after: datetime = NINETY_DAYS,
    renew_before: timedelta | None = None,
    percentage: int | None = None,
    jitter_key: str = "",
) -> datetime:
    return renewal_time(
        not_before=NOT_BEFORE,
        not_after=not_after,
        renew_before=renew_before,
        renew_before_percentage=percentage,
        jitter_key=jitter_key,
    )


def test_default_is_two_thirds_of_the_lifetime() -> None:
    assert renew() == NOT_BEFORE + timedelta(days=60)


def test_renew_before_counts_back_from_expiry() -> None:
    assert renew(renew_before=timedelta(days=10)) == NINETY_DAYS - timedelta(days=10)


@pytest.mark.parametrize(("percentage", "remaining"), [(10, 9), (25, 22.5), (50, 45), (99, 89.1)])
def test_percentage_is_the_share_of_lifetime_left(percentage: int, remaining: float) -> None:
    assert renew(percentage=percentage) == NINETY_DAYS - timedelta(days=remaining)


@pytest.mark.parametrize("renew_before", [timedelta(days=90), timedelta(days=400), timedelta(0)])
def test_unusable_renew_before_falls_back_to_the_default(renew_before: timedelta) -> None:
    assert renew(renew_before=renew_before) == NOT_BEFORE + timedelta(days=60)


def test_default_follows_the_issued_lifetime_not_the_requested_one() -> None:
    # A leaf capped at its CA's expiry is renewed at 2/3 of what it actually got.
    assert renew(not_after=NOT_BEFORE + timedelta(hours=3)) == NOT_BEFORE + timedelta(hours=2)


@pytest.mark.parametrize(
    ("lifetime", "max_jitter"),
    [
        (timedelta(days=90), timedelta(minutes=5)),  # 1% would be 21.6h: capped at 5 minutes
        (timedelta(hours=1), timedelta(seconds=36)),  # 1% of the lifetime
        (timedelta(hours=24), timedelta(minutes=5)),  # 1% = 14.4 minutes: capped
    ],
)
def test_jitter_stays_within_bounds(lifetime: timedelta, max_jitter: timedelta) -> None:
    not_after = NOT_BEFORE + lifetime
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


def test_never_earlier_than_not_before() -> None:
    lifetime = timedelta(days=90)
    just_inside = lifetime - timedelta(microseconds=1)
    assert renew(renew_before=just_inside, jitter_key="default/web") == NOT_BEFORE
    assert renew(not_after=NOT_BEFORE) == NOT_BEFORE
    assert renew(not_after=NOT_BEFORE - timedelta(hours=1)) == NOT_BEFORE
