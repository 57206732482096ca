"""When to renew a certificate: cert-manager's renewBefore semantics plus deterministic jitter."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

_MAX_JITTER = timedelta(minutes=5)


def renewal_time(
    *,
    not_before: datetime,
    not_after: datetime,
    renew_before: timedelta | None,
    renew_before_percentage: int | None,
    jitter_key: str = "",
) -> datetime:
    """Renew `renew_before` (or `percentage`% of the lifetime) before expiry, by default at 2/3.

    A non-empty `jitter_key` (e.g. the Certificate's namespace/name) moves the time earlier by a
    stable amount up to 1% of the lifetime (at most 5 minutes), so Certificates created together
    do not all renew in the same instant. The result is never before `not_before`.
    """
    lifetime = not_after - not_before
    if lifetime <= timedelta(0):
        return not_before
    if renew_before_percentage is not None:
        renew_before = lifetime * renew_before_percentage / 100
    if renew_before is None or not timedelta(0) < renew_before < lifetime:
        renew_before = lifetime / 3
    jitter = timedelta(0)
    if jitter_key:
        digest = hashlib.sha256(jitter_key.encode()).digest()
        fraction = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
        jitter = min(lifetime / 100, _MAX_JITTER) * fraction
    return max(not_after - renew_before - jitter, not_before)
