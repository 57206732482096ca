"""The seal on a Certificate's status: what certsmith wrote there, unchanged since. Pure.

Status is writable by anyone granted `certificates/status`, and annotations by anyone who
may edit the Secret, so neither may by itself vouch for a Secret. What may: the Secret's
resourceVersion, which only the apiserver sets (every write of the Secret changes it), and
a seal only the operator can make. Every status certsmith writes carries `secretSeal`:
HMAC-SHA256 (RFC 2104) over the Certificate's uid and every status field certsmith owns
(conditions with their reasons, messages and observedGeneration, notBefore, notAfter,
renewalTime, serialNumber, revision, the failure fields, and secretResourceVersion: the
Secret's resourceVersion it judged Ready), under a key kept in a Secret of the operator's
namespace (which namespaced users cannot read). So a status whose seal does not hold was
written by someone else: the running operator judges that Certificate again on its
Secret at once, and a restart trusts a Ready status without reading the Secret only while
the seal holds and the Secret, listed, still has that resourceVersion: the Secret is then
byte for byte what was judged, for that very spec (the conditions' observedGeneration),
and every field in status is the one computed from it. Copying a status from elsewhere
does not help: the uid and resourceVersion bind it to one Certificate and one write of
one Secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

KEY_BYTES = 32
"""Length of a seal key (random bytes): the size of HMAC-SHA256's output."""
_DOMAIN = "certsmith.dev/status-seal/v2"
# v1 sealed only the Secret's resourceVersion, notAfter and renewalTime: its seals no
# longer hold, and a restart after the upgrade reads every Secret once.


def seal(key: bytes, uid: str, fields: Mapping[str, Any]) -> str:
    """The seal of status `fields` (field name → JSON value as the API stores it; None is
    the same as absent, as a merge patch's null removes a field) of the Certificate `uid`
    under `key`: unpadded base64url of the HMAC-SHA256 over canonical JSON."""
    present = {name: value for name, value in fields.items() if value is not None}
    canonical = json.dumps(present, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    message = "\n".join((_DOMAIN, uid, canonical)).encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def holds(key: bytes, uid: str, fields: Mapping[str, Any], recorded: object) -> bool:
    """Whether `recorded` (status.secretSeal as read: anything) is the seal of `fields` of
    the Certificate `uid` under `key`; compared in constant time."""
    return isinstance(recorded, str) and hmac.compare_digest(seal(key, uid, fields), recorded)
