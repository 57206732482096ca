"""A CertificateAuthority's spec.podCertificates and the refresh bounds recorded on its
root Secrets and shown in status.podCertificates (authorities.pod_certificates), and how a
root rotation waits on them."""

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
MINUTE = timedelta(minutes=1)


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


@pytest.mark.parametrize(
    ("recorded", "refresh_at", "raised"),
    [
        (None, T0, T0),  # nothing recorded yet
        (None, T0 + timedelta(seconds=1), T0 + timedelta(minutes=1)),
        (T0 + timedelta(minutes=20), T0 + timedelta(minutes=20), None),  # covered
        (T0 + timedelta(minutes=20), T0 + timedelta(minutes=3), None),  # never lowered
        (T0 + timedelta(minutes=20), T0 + timedelta(minutes=20, seconds=1), T0 + 21 * MINUTE),
    ],
)
def test_a_bound_is_raised_only_when_a_refresh_time_passes_it(
    recorded: datetime | None, refresh_at: datetime, raised: datetime | None
) -> None:
    assert pod_certificates.raised_bound(recorded, refresh_at) == raised


def test_a_bound_is_written_on_condition_that_the_secret_did_not_change() -> None:
    assert pod_certificates.bound_patch(T0 + HOUR, resource_version="41") == {
        "metadata": {
            "resourceVersion": "41",
            "annotations": {"certsmith.dev/pod-certificates-refresh-by": "2026-06-01T13:00:00Z"},
        }
    }


@pytest.mark.parametrize(
    ("secret", "bound"),
    [
        (
            {"metadata": {"annotations": {
                "certsmith.dev/pod-certificates-refresh-by": "2026-06-01T13:00:00Z"}}},
            T0 + HOUR,
        ),
        (None, None),
        ({}, None),
        ({"metadata": {"annotations": None}}, None),
        ({"metadata": {"annotations": {"certsmith.dev/role": "root"}}}, None),
        # Hand-edited: not a time, so no bound (it must not stop anything).
        ({"metadata": {"annotations": {"certsmith.dev/pod-certificates-refresh-by": "soon"}}},
         None),
    ],
)  # fmt: skip
def test_the_bound_is_read_from_the_roots_secret(
    secret: dict[str, Any] | None, bound: datetime | None
) -> None:
    assert pod_certificates.recorded_bound(secret) == bound


def test_the_status_shows_the_bounds_sorted_by_root() -> None:
    bounds = {"b" * 64: T0 + HOUR, "a" * 64: T0}
    assert pod_certificates.bounds_status(bounds) == {
        "podCertificates": {
            "refreshBy": [
                {"rootFingerprint": "a" * 64, "time": "2026-06-01T12:00:00Z"},
                {"rootFingerprint": "b" * 64, "time": "2026-06-01T13:00:00Z"},
            ]
        }
    }
    assert pod_certificates.bounds_status({}) == {"podCertificates": {"refreshBy": []}}


def test_pods_hold_a_certificate_until_kubelet_jitter_and_its_refresh_pass_are_over() -> None:
    bounds = {"old": T0}
    assert pod_certificates.in_use_until(bounds, "old") == T0 + timedelta(minutes=8)
    assert pod_certificates.in_use_until(bounds, "new") is None
    assert pod_certificates.in_use_until(bounds, None) is None


def reissuing(old_root: str = "old") -> RotationState:
    return RotationState(Phase.REISSUING, old_root=old_root, new_root="new")


def status_with(root: str, bound: datetime) -> dict[str, datetime]:
    return {root: bound}


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
        ({}, reissuing()),  # no pod certificate was ever signed (or a supplied root)
        (status_with("old", T0 + HOUR), RotationState(Phase.READY)),  # no rotation
        (status_with("old", T0 + HOUR), reissuing(old_root="older")),
    ],
)
def test_nothing_is_awaited_of_pods_without_old_root_certificates(
    status: dict[str, datetime], state: RotationState
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
