"""What a CertificateAuthority allows and records for Kubernetes pod certificates, pure.

`spec.podCertificates` caps their lifetime and says when kubelet refreshes them
(`Settings`). Each root's refresh bound, the latest `beginRefreshAt` handed out to a pod
certificate signed under it rounded up to REFRESH_BOUND_STEP, is recorded in the annotation
REFRESH_BY_ANNOTATION of the Secret holding that root (`<authority>-root`, or
`<authority>-root-next` during a rotation): the certsmith signer raises it before it answers
a request, so a root rotation knows, even after a restart or after the CertificateAuthority
was deleted and created again (its Secrets are kept, its status is not), until when pods
may still hold certificates under the old root (`in_use_until`). The annotation goes with
its root: a rotation's end overwrites the old root's Secret with the new root and its
bound. `status.podCertificates.refreshBy` shows the bounds of the trusted roots. kubelet
never tells which certificate a pod holds: this bound is all there is to wait on.

Kubernetes' own bounds (kube-apiserver's status validation of a PodCertificateRequest,
pkg/apis/certificates/validation): a certificate lives at least MIN_LIFETIME and at most
`spec.maxExpirationSeconds` (at most MAX_LIFETIME); `beginRefreshAt` lies REFRESH_MARGIN
after notBefore and before notAfter at least.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from certsmith.api import model, names, times

MIN_LIFETIME = timedelta(hours=1)
MAX_LIFETIME = timedelta(seconds=7_862_400)
"""91 days, the largest `spec.maxExpirationSeconds` kube-apiserver accepts."""
REFRESH_MARGIN = timedelta(minutes=10)
DEFAULT_MAX_DURATION = timedelta(hours=24)

REFRESH_BY_ANNOTATION = f"{names.GROUP}/pod-certificates-refresh-by"
"""On a root's Secret: the refresh bound of the pod certificates signed under that root."""
REFRESH_BOUND_STEP = timedelta(minutes=1)
"""The recorded bound is rounded up to this step, so the root's Secret is written at most
once per step while pods keep asking (a rotation may wait up to one step
longer than the latest refresh: short, since a rotation waits for it)."""
KUBELET_REFRESH_JITTER = timedelta(minutes=5)
"""kubelet starts refreshing up to 5 min after `beginRefreshAt` (pkg/kubelet/podcertificate,
jitterDuration)."""
KUBELET_REFRESH_PASS = timedelta(minutes=2)
"""and looks at its pod certificates every 1 to 2 min (its refresh pass: 1 min, jitter 1.0)."""
SIGNING_SLACK = timedelta(minutes=1)
"""The new request's answer and kubelet's informer seeing it."""


@dataclass(frozen=True)
class Settings:
    """`spec.podCertificates` of a CertificateAuthority, validated."""

    max_duration: timedelta = DEFAULT_MAX_DURATION
    """The longest lifetime signed, whatever a request's maxExpirationSeconds allows."""
    renew_before: timedelta | None = None
    """kubelet begins refreshing this long before notAfter; None: at 2/3 of the lifetime."""


def _duration(settings: Mapping[str, Any], key: str) -> timedelta | None:
    text = settings.get(key)
    path = f"spec.podCertificates.{key}"
    if text is None:
        return None
    if not isinstance(text, str):
        raise model.InvalidSpec(path, f"{text!r} is not a duration like '24h'")
    return model.parse_duration(text, path)


def parse_settings(spec: Mapping[str, Any]) -> Settings:
    """`spec.podCertificates` (absent fields take their defaults); InvalidSpec naming a bad
    field: maxDuration outside 1h to 2184h (91 days), renewBefore under 10m or leaving less
    than 10m after notBefore. The CRD schema refuses the same values at apply time."""
    settings = spec.get("podCertificates")
    if settings is None:
        return Settings()
    if not isinstance(settings, Mapping):
        raise model.InvalidSpec("spec.podCertificates", "must be an object")
    max_duration = _duration(settings, "maxDuration") or DEFAULT_MAX_DURATION
    if not MIN_LIFETIME <= max_duration <= MAX_LIFETIME:
        raise model.InvalidSpec(
            "spec.podCertificates.maxDuration",
            f"{model.format_duration(max_duration)} is outside 1h to 2184h (91 days), the "
            "lifetimes Kubernetes allows a pod certificate",
        )
    renew_before = _duration(settings, "renewBefore")
    if renew_before is not None and not (
        REFRESH_MARGIN <= renew_before <= max_duration - REFRESH_MARGIN
    ):
        raise model.InvalidSpec(
            "spec.podCertificates.renewBefore",
            f"{model.format_duration(renew_before)} must be from 10m to maxDuration - 10m "
            f"({model.format_duration(max_duration - REFRESH_MARGIN)}): Kubernetes wants "
            "beginRefreshAt 10m after notBefore and 10m before notAfter at least",
        )
    return Settings(max_duration=max_duration, renew_before=renew_before)


# --- the refresh bounds --------------------------------------------------------------


def recorded_bound(secret: Mapping[str, Any] | None) -> datetime | None:
    """The bound recorded on a root's Secret (REFRESH_BY_ANNOTATION, RFC 3339); None when
    there is none or it is not a time (a hand-edited annotation must not stop anything)."""
    annotations = ((secret or {}).get("metadata") or {}).get("annotations") or {}
    return times.parse_time(annotations.get(REFRESH_BY_ANNOTATION))


def round_up(moment: datetime, step: timedelta = REFRESH_BOUND_STEP) -> datetime:
    """`moment` rounded up to a multiple of `step` since the Unix epoch (itself if it is one)."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    steps = -((epoch - moment) // step)  # ceiling division of timedeltas
    return epoch + steps * step


def raised_bound(recorded: datetime | None, refresh_at: datetime) -> datetime | None:
    """The bound to record before handing out `refresh_at` under a root whose Secret
    records `recorded`: `refresh_at` rounded up; None when `recorded` covers it already
    (nothing to write, so a bound never goes down)."""
    if recorded is not None and recorded >= refresh_at:
        return None
    return round_up(refresh_at)


def bound_patch(bound: datetime, *, resource_version: str) -> dict[str, Any]:
    """The merge patch recording `bound` on a root's Secret, on condition that it is still
    at `resource_version` (409 Conflict otherwise: read it again, never lower a bound)."""
    return {
        "metadata": {
            "resourceVersion": resource_version,
            "annotations": {REFRESH_BY_ANNOTATION: times.format_time(bound)},
        }
    }


def bounds_status(bounds: Mapping[str, datetime]) -> dict[str, Any]:
    """`status.podCertificates`, showing `bounds` ({root fingerprint: bound}, sorted by
    fingerprint; an empty list when none is recorded)."""
    return {
        "podCertificates": {
            "refreshBy": [
                {"rootFingerprint": root, "time": times.format_time(bounds[root])}
                for root in sorted(bounds)
            ]
        }
    }


def in_use_until(bounds: Mapping[str, datetime], root: str | None) -> datetime | None:
    """Until when pods may hold a certificate signed under `root`: its recorded bound plus
    kubelet's jitter, its refresh pass and the new request's answer. None when no pod
    certificate was recorded under it."""
    bound = bounds.get(root) if root is not None else None
    if bound is None:
        return None
    return bound + KUBELET_REFRESH_JITTER + KUBELET_REFRESH_PASS + SIGNING_SLACK
