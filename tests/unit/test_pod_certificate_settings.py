"""A CertificateAuthority's spec.podCertificates and the refresh bounds it records in
status.podCertificates (authorities.pod_certificates), and how a root rotation waits on them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from certsmith.api import model
from certsmith.authorities import pod_certificates, rotation
from certsmith.authorities.pod_certificates import Settings
from certsmith.authorities.rotation import Lagging, Phase, Progress, RotationState

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.mark.parametrize(
    ("spec", "settings"),
    [
        ({}, Settings(max_duration=timedelta(hours=24), renew_before=None)),
        ({"podCertificates": {}}, Settings()),
        ({"podCertificates": {"maxDuration": "1h"}}, Settings(max_duration=HOUR)),
        ({"podCertificates": {"maxDuration": "2184h"}}, Settings(max_duration=timedelta(days=91))),
        (
            {"podCertificates": {"maxDuration": "2h", "renewBefore": "10m"}},
            Settings(max_duration=2 * HOUR, renew_before=timedelta(minutes=10)),
        ),
        (
            {"podCertificates": {"maxDuration": "2h", "renewBefore": "110m"}},
            Settings(max_duration=2 * HOUR, renew_before=timedelta(minutes=110)),
        ),
        (
            {"podCertificates": {"renewBefore": "8h"}},
            Settings(renew_before=timedelta(hours=8)),
        ),
    ],
)
def test_settings_take_their_defaults(spec: dict[str, Any], settings: Settings) -> None:
    assert pod_certificates.parse_settings(spec) == settings


@pytest.mark.parametrize(
    ("settings", "field", "message"),
    [
        ("1h", "spec.podCertificates", "must be an object"),
        ({"maxDuration": "59m59s"}, "spec.podCertificates.maxDuration", "outside 1h to 2184h"),
        ({"maxDuration": "2184h1s"}, "spec.podCertificates.maxDuration", "outside 1h to 2184h"),
        ({"maxDuration": 3600}, "spec.podCertificates.maxDuration", "is not a duration"),
        ({"maxDuration": "a day"}, "spec.podCertificates.maxDuration", "is not a duration"),
        ({"renewBefore": "9m59s"}, "spec.podCertificates.renewBefore", "from 10m to"),
        (
            {"maxDuration": "1h", "renewBefore": "50m1s"},
            "spec.podCertificates.renewBefore",
            r"maxDuration - 10m \(50m0s\)",
        ),
        ({"renewBefore": "24h"}, "spec.podCertificates.renewBefore", "from 10m to"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(settings: Any, field: str, message: str) -> None:
    with pytest.raises(model.InvalidSpec, match=message) as refused:
        pod_certificates.parse_settings({"podCertificates": settings})
    assert refused.value.field == field


@pytest.mark.parametrize(
    ("moment", "rounded"),
    [
        (T0, T0),
        (T0 + timedelta(seconds=1), T0 + timedelta(minutes=1)),
        (T0 + timedelta(seconds=59), T0 + timedelta(minutes=1)),
        (T0 + timedelta(minutes=1), T0 + timedelta(minutes=1)),
        (T0 + timedelta(minutes=9, seconds=59), T0 + timedelta(minutes=10)),
        (T0 + timedelta(microseconds=1), T0 + timedelta(minutes=1)),
    ],
)
def test_bounds_are_rounded_up_to_the_minute(moment: datetime, rounded: datetime) -> None:
    assert pod_certificates.round_up(moment) == rounded


def test_a_bound_is_raised_only_when_a_refresh_time_passes_it() -> None:
    bounds = {"old": T0 + timedelta(minutes=20)}
    assert (
        pod_certificates.raised_bounds(
            bounds, root="old", refresh_at=T0 + timedelta(minutes=20), trusted={"old"}
        )
        is None
    )
    assert pod_certificates.raised_bounds(
        bounds, root="old", refresh_at=T0 + timedelta(minutes=20, seconds=1), trusted={"old"}
    ) == {"old": T0 + timedelta(minutes=21)}


def test_a_new_root_gets_its_own_bound_and_untrusted_roots_are_dropped() -> None:
    bounds = {"retired": T0, "old": T0 + HOUR}
    raised = pod_certificates.raised_bounds(
        bounds, root="new", refresh_at=T0 + timedelta(minutes=5, seconds=1), trusted={"old", "new"}
    )
    assert raised == {"old": T0 + HOUR, "new": T0 + timedelta(minutes=6)}


def test_bounds_round_trip_through_the_status() -> None:
    bounds = {"b" * 64: T0 + HOUR, "a" * 64: T0}
    status = pod_certificates.bounds_status(bounds)
    assert status == {
        "podCertificates": {
            "refreshBy": [
                {"rootFingerprint": "a" * 64, "time": "2026-06-01T12:00:00Z"},
                {"rootFingerprint": "b" * 64, "time": "2026-06-01T13:00:00Z"},
            ]
        }
    }
    assert pod_certificates.refresh_bounds(status) == bounds


@pytest.mark.parametrize(
    "status",
    [
        None,
        {},
        {"podCertificates": None},
        {"podCertificates": {"refreshBy": "yesterday"}},
        {"podCertificates": {"refreshBy": ["x", {"rootFingerprint": "a"}, {"time": "x"}]}},
        {
            "podCertificates": {
                "refreshBy": [{"rootFingerprint": 1, "time": "2026-06-01T12:00:00Z"}]
            }
        },
    ],
)
def test_a_missing_or_hand_edited_status_records_no_bound(status: Any) -> None:
    assert pod_certificates.refresh_bounds(status) == {}


def test_pods_hold_a_certificate_until_kubelet_jitter_and_its_refresh_pass_are_over() -> None:
    bounds = {"old": T0}
    assert pod_certificates.in_use_until(bounds, "old") == T0 + timedelta(minutes=8)
    assert pod_certificates.in_use_until(bounds, "new") is None
    assert pod_certificates.in_use_until(bounds, None) is None


def reissuing(old_root: str = "old") -> RotationState:
    return RotationState(Phase.REISSUING, old_root=old_root, new_root="new")


def status_with(root: str, bound: datetime) -> dict[str, Any]:
    return pod_certificates.bounds_status({root: bound})


def test_reissuing_waits_for_pod_certificates_under_the_old_root_to_be_refreshed() -> None:
    status = status_with("old", T0)
    until = T0 + timedelta(minutes=8)
    waiting = rotation.pod_certificates_lagging(
        status, reissuing(), now=until - timedelta(seconds=1)
    )
    assert len(waiting) == 1
    assert str(waiting[0]) == (
        "pod certificates: signed under the old root with beginRefreshAt up to "
        "2026-06-01T12:00:00Z; kubelets have refreshed them by 2026-06-01T12:08:00Z"
    )
    assert waiting[0].reason == "PodCertificatesOnOldRoot"
    progress = Progress(total_leaves=3, pod_certificates=waiting)
    state = rotation.advance(reissuing(), progress, now=until - timedelta(seconds=1), delay=HOUR)
    assert state.phase is Phase.REISSUING
    assert rotation.pod_certificates_lagging(status, reissuing(), now=until) == ()
    state = rotation.advance(reissuing(), Progress(total_leaves=3), now=until, delay=HOUR)
    assert state.phase is Phase.RETIRING


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (status_with("new", T0 + HOUR), reissuing()),  # only the new root's certificates
        ({}, reissuing()),  # no pod certificate was ever signed
        (status_with("old", T0 + HOUR), RotationState(Phase.READY)),  # no rotation
        (status_with("old", T0 + HOUR), reissuing(old_root="older")),
    ],
)
def test_nothing_is_awaited_of_pods_without_old_root_certificates(
    status: dict[str, Any], state: RotationState
) -> None:
    assert rotation.pod_certificates_lagging(status, state, now=T0) == ()


def test_pod_certificates_are_a_blocker_of_reissuing_once_it_stalls() -> None:
    waiting = rotation.pod_certificates_lagging(status_with("old", T0 + HOUR), reissuing(), now=T0)
    progress = Progress(total_leaves=0, pod_certificates=waiting)
    assert progress.awaited(Phase.REISSUING) == waiting
    assert progress.awaited(Phase.DISTRIBUTING) == ()
    state = rotation.track(reissuing(), progress, now=T0)
    assert rotation.blockers(state, progress, now=T0 + rotation.STALL_AFTER) == waiting
    condition = rotation.blocked_condition(state, waiting)
    assert condition.status is True
    assert "pod certificates: signed under the old root" in condition.message


def test_a_blocker_without_a_namespace_is_shown_by_its_name() -> None:
    assert str(Lagging("", "pod certificates", "why")) == "pod certificates: why"
    assert str(Lagging("shop", "web-tls", "why")) == "shop/web-tls: why"
