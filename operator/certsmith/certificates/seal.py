"""The seal on what a restart may take from a Certificate's status without reading its
Secret. Pure.

Status is writable by anyone granted `certificates/status`, and annotations by anyone who
may edit the Secret, so neither may by itself vouch for a Secret. What may: the Secret's
resourceVersion, which only the apiserver sets (every write of the Secret changes it), and
a seal only the operator can make. When certsmith judges a Certificate Ready it writes into
status the Secret's resourceVersion it judged, the certificate's notAfter and renewalTime
as read from it, and `secretSeal`: HMAC-SHA256 (RFC 2104) over those values and the
Certificate's uid and generation, under a key kept in a Secret of the operator's namespace
(which namespaced users cannot read). A restart trusts that status only while the seal
checks out and the Secret, listed, still has that resourceVersion: the Secret is then
byte for byte what was judged, for that very spec, and its renewal time is the one computed
from it. Editing any of those fields, or the Secret, or the spec, breaks the match, and the
Secret is read and judged again. Copying a status from elsewhere does not help: the uid
and resourceVersion bind it to one Certificate and one write of one Secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

KEY_BYTES = 32
"""Length of a seal key (random bytes): the size of HMAC-SHA256's output."""
_DOMAIN = "certsmith.dev/secret-seal/v1"


@dataclass(frozen=True)
class Judged:
    """What a seal vouches for: the Certificate (uid, metadata.generation) was judged Ready
    on its Secret at `secret_version`, whose certificate runs to `not_after` and falls due
    at `renewal_time` (both RFC 3339 strings, as in status)."""

    uid: str
    generation: int | None
    secret_version: str
    not_after: str
    renewal_time: str


def seal(key: bytes, judged: Judged) -> str:
    """The seal of `judged` under `key` (unpadded base64url of the HMAC-SHA256)."""
    fields = (
        _DOMAIN,
        judged.uid,
        str(judged.generation),
        judged.secret_version,
        judged.not_after,
        judged.renewal_time,
    )
    digest = hmac.new(key, "\n".join(fields).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def holds(key: bytes, judged: Judged, recorded: object) -> bool:
    """Whether `recorded` (status.secretSeal as read: anything) is the seal of `judged`
    under `key`; compared in constant time."""
    return isinstance(recorded, str) and hmac.compare_digest(seal(key, judged), recorded)
