"""When to renew a certificate: cert-manager's renewBefore semantics, stable jitter, a floor."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from certsmith.api.model import MIN_IN_USE

_MAX_JITTER = timedelta(minutes=5)


def renewal_time(
    *,
    issued_at: datetime,
    not_after: datetime,
    renew_before: timedelta | None,
    renew_before_percentage: int | None,
    jitter_key: str = "",
) -> datetime:
    """Renew `renew_before` (or `percentage`% of the lifetime) before expiry, by default at 2/3.

    The lifetime runs from `issued_at`, the instant of signing (not the notBefore, which is
    back-dated for clock skew), to `not_after`, which may be shorter than the spec's
    duration when the issuer's own notAfter capped it. An unusable `renew_before` (not
    inside the lifetime) falls back to the default. A non-empty `jitter_key` (e.g. the
    Certificate's namespace/name) moves the time earlier by a stable amount up to 1% of the
    lifetime (at most 5 minutes), so Certificates created together do not all renew in the
    same instant.

    The result is never earlier than `issued_at + MIN_IN_USE`: whatever the spec, the
    jitter or a capped (even already past) `not_after`, a certificate is never re-issued
    in a loop. A leaf capped to less than MIN_IN_USE (its issuer about to expire) is thus
    renewed up to MIN_IN_USE after its expiry, by the issuer that replaced it.
    """
    floor = issued_at + MIN_IN_USE
    lifetime = not_after - issued_at
    if lifetime <= timedelta(0):
        return floor
    if renew_before_percentage is not None:
        renew_before = lifetime * renew_before_percentage / 100
    if renew_before is None or not timedelta(0) < renew_before < lifetime:
        renew_before = lifetime / 3
    jitter = timedelta(0)
    if jitter_key:
        digest = hashlib.sha256(jitter_key.encode()).digest()
        fraction = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
        jitter = min(lifetime / 100, _MAX_JITTER) * fraction
    return max(not_after - renew_before - jitter, floor)
