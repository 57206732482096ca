"""Until when certificates signed for Kubernetes CertificateSigningRequests under a root
are valid, recorded on that root's Secret, pure.

A CSR's certificate is handed out once and never renewed by certsmith (the requester holds
the key; nothing like kubelet's refresh asks again), so a root rotation must not drop the
old root from the trust bundles while such a certificate is still valid: its holder's
peers would refuse it. Before a certificate leaves, the CSR signer raises the bound in the
annotation VALID_UNTIL_ANNOTATION of the Secret holding the root that signed it
(`<authority>-root`, or `<authority>-root-next` during a rotation) to the certificate's
notAfter, rounded up to BOUND_STEP; a rotation's Reissuing phase waits until the old root's
bound has passed (`rotation.signing_requests_lagging`), also after a restart or after the
CertificateAuthority was deleted and created again (its Secrets are kept). From Reissuing
on CSRs are signed under the new root, so the wait ends at most the longest lifetime
signed (spec.podCertificates.maxDuration, which caps CSR certificates) after Reissuing
began. The annotation goes with its root: a rotation's end copies the next root's onto the
root's Secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from certsmith.api import names, times
from certsmith.authorities import pod_certificates

VALID_UNTIL_ANNOTATION = f"{names.GROUP}/signing-requests-valid-until"
"""On a root's Secret: the latest notAfter of the certificates signed for Kubernetes CSRs
under that root (RFC 3339, rounded up to BOUND_STEP)."""
BOUND_STEP = timedelta(minutes=1)
"""The recorded bound is rounded up to this step, so a burst of CSRs signed within a minute
writes the root's Secret once."""


def recorded_bound(secret: Mapping[str, Any] | None) -> datetime | None:
    """The bound recorded on a root's Secret; None when there is none or it is not a time
    (a hand-edited annotation must not stop anything)."""
    annotations = ((secret or {}).get("metadata") or {}).get("annotations") or {}
    return times.parse_time(annotations.get(VALID_UNTIL_ANNOTATION))


def raised_bound(recorded: datetime | None, not_after: datetime) -> datetime | None:
    """The bound to record before handing out a certificate valid until `not_after` under a
    root whose Secret records `recorded`: `not_after` rounded up to BOUND_STEP; None when
    `recorded` covers it already (nothing to write: a bound never goes down)."""
    if recorded is not None and recorded >= not_after:
        return None
    return pod_certificates.round_up(not_after, BOUND_STEP)


def bound_patch(bound: datetime, *, resource_version: str) -> dict[str, Any]:
    """The merge patch recording `bound` on a root's Secret, on condition that it is still
    at `resource_version` (409 Conflict otherwise: read it again, never lower a bound)."""
    return {
        "metadata": {
            "resourceVersion": resource_version,
            "annotations": {VALID_UNTIL_ANNOTATION: times.format_time(bound)},
        }
    }
