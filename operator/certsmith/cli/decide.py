"""`kubectl certsmith approve|deny NAME`: decide a CertificateRequest waiting for approval.

The plugin writes the Approved or Denied condition through the request's status
subresource, on the resourceVersion it read. Who may is the cluster's to judge: the
ValidatingAdmissionPolicy certsmith.dev lets the write through only for a user with the
verb `approve` on the request's CertificateAuthority (`certificateauthorities`, resourceName
the authority, group certsmith.dev), and the CRD keeps Approved and Denied final. The
operator then signs (approved) or marks it Ready=False, Denied.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from certsmith.api import conditions
from certsmith.api.conditions import Condition
from certsmith.cli.api import CliError, Conflict

if TYPE_CHECKING:
    from certsmith.cli.api import Api

APPROVED, DENIED = "Approved", "Denied"
AUTO_APPROVED = "AutoApproved"
"""certsmith's own approval reason: the ValidatingAdmissionPolicy refuses it from anyone
without the verb `sign`, and the plugin before that."""
DEFAULT_REASON = "KubectlCertsmith"
ATTEMPTS = 3
"""Reads of a request that changed between our read and our write (the operator writing
its Pending status meanwhile), before giving up."""
# metav1.Condition's reason: CamelCase, as the apiserver validates it for built-in types.
_REASON = re.compile(r"[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?")


class AlreadyDecided(CliError):
    """The request carries the decision asked for already (exit 0)."""


def check_reason(reason: str) -> str:
    """`--reason` as a condition reason (one CamelCase word, at most 128 characters, not
    AUTO_APPROVED), or CliError naming the flag."""
    if reason == AUTO_APPROVED:
        raise CliError(
            f"--reason {AUTO_APPROVED} is certsmith's own (every name is the namespace's to "
            "carry); give a reason of your own, e.g. PartnerVerified"
        )
    if len(reason) > 128 or not _REASON.fullmatch(reason):
        raise CliError(
            f"--reason {reason!r}: one CamelCase word of letters, digits, '_', ',' or ':' "
            "(at most 128), e.g. PartnerVerified; say more with --message"
        )
    return reason


def decided_status(
    body: Mapping[str, Any], *, approve: bool, reason: str, message: str, now: datetime
) -> dict[str, Any]:
    """The status to write: the request's conditions with Approved (or Denied) True.
    AlreadyDecided when it carries that decision already; CliError when it carries the
    other (final: the CRD refuses the change anyway) or is signed already."""
    name = (body.get("metadata") or {}).get("name")
    found = (body.get("status") or {}).get("conditions")
    wanted, other = (APPROVED, DENIED) if approve else (DENIED, APPROVED)
    if conditions.is_true(found, wanted):
        raise AlreadyDecided(f"certificaterequest {name} is {wanted.lower()} already")
    if conditions.is_true(found, other):
        raise CliError(
            f"certificaterequest {name} is {other.lower()}, which is final: "
            "create a new CertificateRequest"
        )
    return {
        "conditions": conditions.merge_conditions(
            found, [Condition(wanted, True, reason, message)], generation=None, now=now
        )
    }


def run(
    api: Api,
    *,
    namespace: str,
    name: str,
    approve: bool,
    reason: str,
    message: str | None,
    now: datetime,
) -> int:
    """Approve or deny the request; 0 when it carries that decision (now or already),
    CliError otherwise (the apiserver's answer when it refuses: a missing verb, 403)."""
    verb = "approved" if approve else "denied"
    text = message or f"{verb} with kubectl certsmith"
    attempt = 1
    while True:
        body = api.get_certificate_request(namespace, name)
        try:
            status = decided_status(body, approve=approve, reason=reason, message=text, now=now)
        except AlreadyDecided as already:
            print(already)
            return 0
        try:
            api.patch_certificate_request_status(
                namespace, name, status, body["metadata"]["resourceVersion"]
            )
        except Conflict:
            if attempt >= ATTEMPTS:
                raise
            attempt += 1
            continue
        print(f"certificaterequest {name} {verb}")
        return 0
