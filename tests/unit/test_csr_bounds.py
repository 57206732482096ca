"""The Kubernetes CSR certificates' validity bound on a root's Secret, and what a root
rotation waits for of it (authorities.csr_bounds, rotation.signing_requests_lagging)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from certsmith.authorities import csr_bounds, rotation
from certsmith.authorities.rotation import Phase, Progress, RotationState

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
MICRO = timedelta(microseconds=1)
ANNOTATION = "certsmith.dev/signing-requests-valid-until"


@pytest.mark.parametrize(
    ("recorded", "not_after", "raised"),
    [
        (None, T0 + timedelta(seconds=1), T0 + timedelta(minutes=1)),
        (None, T0, T0),
        (T0, T0 + timedelta(seconds=30), T0 + timedelta(minutes=1)),
        (T0 + HOUR, T0 + timedelta(minutes=59, seconds=59), None),  # covered: nothing written
        (T0 + HOUR, T0 + HOUR, None),
        (T0 + HOUR, T0 + HOUR + timedelta(microseconds=1), T0 + HOUR + timedelta(minutes=1)),
    ],
)
def test_a_bound_only_grows_to_the_notafter_rounded_up_to_the_minute(
    recorded: datetime | None, not_after: datetime, raised: datetime | None
) -> None:
    assert csr_bounds.raised_bound(recorded, not_after) == raised


@pytest.mark.parametrize(
    ("secret", "bound"),
    [
        ({"metadata": {"annotations": {ANNOTATION: "2026-06-01T13:00:00Z"}}}, T0 + HOUR),
        ({"metadata": {"annotations": {ANNOTATION: "soon"}}}, None),  # hand-edited: ignored
        ({"metadata": {"annotations": {"certsmith.dev/pod-certificates-refresh-by": "x"}}}, None),
        ({"metadata": {}}, None),
        (None, None),
    ],
)
def test_the_bound_is_read_from_the_roots_secret(
    secret: dict[str, Any] | None, bound: datetime | None
) -> None:
    assert csr_bounds.recorded_bound(secret) == bound


def test_a_bound_is_written_on_condition_that_the_secret_did_not_change() -> None:
    assert csr_bounds.bound_patch(T0 + HOUR, resource_version="42") == {
        "metadata": {
            "resourceVersion": "42",
            "annotations": {ANNOTATION: "2026-06-01T13:00:00Z"},
        }
    }


def reissuing(old_root: str = "old") -> RotationState:
    return RotationState(Phase.REISSUING, old_root=old_root, new_root="new")


def test_reissuing_waits_until_csr_certificates_under_the_old_root_expired() -> None:
    bounds = {"old": T0 + HOUR, "new": T0 + 2 * HOUR}
    waiting = rotation.signing_requests_lagging(bounds, reissuing(), now=T0 + HOUR - MICRO)
    (blocker,) = waiting
    assert str(blocker) == (
        "Kubernetes CSR certificates: signed under the old root, valid up to "
        "2026-06-01T13:00:00Z; each is valid until its notAfter, so the old root stays trusted "
        "until then (a new CSR is signed under the new root)"
    )
    assert blocker.reason == "CertificateSigningRequestsOnOldRoot"
    progress = Progress(total_leaves=0, pod_certificates=waiting)
    assert progress.awaited(Phase.REISSUING) == waiting
    state = rotation.advance(reissuing(), progress, now=T0 + HOUR - MICRO, delay=HOUR)
    assert state.phase is Phase.REISSUING
    # Named as the blocker once the phase stalls.
    tracked = rotation.track(reissuing(), progress, now=T0)
    assert rotation.blockers(tracked, progress, now=T0 + rotation.STALL_AFTER) == waiting
    condition = rotation.blocked_condition(tracked, waiting)
    assert condition.status is True and "Kubernetes CSR certificates" in condition.message

    assert rotation.signing_requests_lagging(bounds, reissuing(), now=T0 + HOUR) == ()
    state = rotation.advance(reissuing(), Progress(), now=T0 + HOUR, delay=HOUR)
    assert state.phase is Phase.RETIRING


@pytest.mark.parametrize(
    ("bounds", "state"),
    [
        ({"new": T0 + HOUR}, reissuing()),  # only the new root's certificates
        ({}, reissuing()),  # no CSR was ever signed (or a supplied root)
        ({"old": T0 + HOUR}, RotationState(Phase.READY)),  # no rotation
        ({"old": T0 + HOUR}, reissuing(old_root="older")),
        ({"old": T0}, reissuing()),  # expired
    ],
)
def test_nothing_is_awaited_without_valid_csr_certificates_under_the_old_root(
    bounds: dict[str, datetime], state: RotationState
) -> None:
    assert rotation.signing_requests_lagging(bounds, state, now=T0) == ()


def test_distributing_also_names_them_but_waits_only_for_the_bundles() -> None:
    distributing = RotationState(Phase.DISTRIBUTING, old_root="old", new_root="new")
    waiting = rotation.signing_requests_lagging({"old": T0 + HOUR}, distributing, now=T0)
    assert len(waiting) == 1
    assert Progress(pod_certificates=waiting).awaited(Phase.DISTRIBUTING) == ()
