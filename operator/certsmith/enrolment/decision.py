"""Whether a CertificateRequest is approved, and what its status says, pure.

A request is approved automatically (condition Approved, reason AutoApproved) when every
name its CSR carries is one its namespace may carry under the same namespace isolation and
grants as a Certificate's (certificates.isolation.evaluate). Otherwise it waits (Ready
False, reason Pending, the message naming each name and why) until someone allowed to
(RBAC verb `approve` on the authority, checked by the ValidatingAdmissionPolicy) sets
Approved or Denied through the status subresource. Denied is final; so is Approved. Once
approved it is signed once: status.certificate (leaf, then intermediate), status.ca (the
authority's trusted roots), Ready True, reason Issued.

A request whose spec cannot be signed (a bad CSR, a weak key, a bad name or duration) gets
Ready False, reason InvalidRequest, for good: its spec is immutable.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from certsmith.api import conditions, names, times
from certsmith.api.conditions import Condition
from certsmith.certificates import isolation
from certsmith.certificates.signer import Signer
from certsmith.enrolment.csr import ParsedRequest
from certsmith.pki import inspect, issue

APPROVED, DENIED = "Approved", "Denied"
AUTO_APPROVED = "AutoApproved"
PENDING = "Pending"
ISSUED = "Issued"
INVALID_REQUEST = "InvalidRequest"
POLICY_DENIED = "PolicyDenied"
ISSUER_NOT_READY = "IssuerNotReady"
EXPIRED = "Expired"
ROOT_RETIRED = "RootRetired"
DECISION_FAILED = "DecisionFailed"
"""Ready=False while an error of certsmith's own keeps it from deciding (retried)."""
FINAL_READY_REASONS = (INVALID_REQUEST, POLICY_DENIED, EXPIRED, ROOT_RETIRED)
"""Ready=False reasons that never change: the spec is immutable, so nothing could."""


class Stage(enum.Enum):
    """Where a request stands, read from its status (`stage`)."""

    NEW = "New"
    """Not decided: judged now (auto-approved and signed, or left pending)."""
    APPROVED = "Approved"
    """Approved (by policy or by a person), not yet signed: signed now."""
    DENIED = "Denied"
    """Denied by a person, Ready not saying so yet: Ready False, reason Denied."""
    DONE = "Done"
    """Signed (status.certificate present), denied, or refused for good: never signed."""


def stage(status: Mapping[str, Any] | None) -> Stage:
    """The request's stage from its `status` as read."""
    found = (status or {}).get("conditions") or []
    ready = conditions.find_condition(found, conditions.READY)
    ready_reason = None if ready is None else ready.get("reason")
    if conditions.is_true(found, DENIED):
        return Stage.DONE if ready_reason == DENIED else Stage.DENIED
    if (
        conditions.is_true(found, conditions.READY)
        or ready_reason in FINAL_READY_REASONS
        or "certificate" in (status or {})
    ):
        # A certificate present is never signed again, whatever Ready says (Expired,
        # RootRetired): only a holder of `sign` (certsmith) can have written it.
        return Stage.DONE
    if conditions.is_true(found, APPROVED):
        return Stage.APPROVED
    return Stage.NEW


def issued_until(status: Mapping[str, Any] | None) -> datetime | None:
    """status.notAfter of a request handing out its certificate (Ready True, reason
    Issued): when Ready turns False, reason EXPIRED; None for any other request."""
    found = (status or {}).get("conditions") or []
    ready = conditions.find_condition(found, conditions.READY) or {}
    if ready.get("status") != "True" or ready.get("reason") != ISSUED:
        return None
    return times.parse_time((status or {}).get("notAfter"))


def expired_message(not_after: datetime) -> str:
    """Ready's message once the certificate expired."""
    return (
        f"the certificate expired at {times.format_time(not_after)}: the device enrols "
        "again with a new CSR in a new CertificateRequest"
    )


def chains_to(certificate_pem: str, roots: Sequence[x509.Certificate]) -> bool:
    """Whether status.certificate (leaf, then intermediate) was issued under one of
    `roots`: its last certificate is signed directly by one of them. A chain that cannot be
    read counts as chaining (only certsmith writes it; nothing is said of what it cannot
    judge)."""
    try:
        chain = x509.load_pem_x509_certificates(certificate_pem.encode())
    except ValueError:
        return True
    for root in roots:
        try:
            chain[-1].verify_directly_issued_by(root)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def root_retired_message(authority: str) -> str:
    """Ready's message once the root a request's certificate chains to left its
    authority's trusted roots (a root rotation ended, or the authority or its parent was
    re-created with a new root)."""
    return (
        f"the certificate chains to a root CertificateAuthority {authority} no longer trusts "
        "(a root rotation ended, or the authority or its parent was re-created with a new "
        "root): peers refuse it; the device enrols again with a new CSR in "
        "a new CertificateRequest (status.ca holds the roots trusted now)"
    )


def auto_approved(status: Mapping[str, Any] | None) -> bool:
    """Whether the Approved condition is certsmith's own (reason AutoApproved)."""
    found = conditions.find_condition((status or {}).get("conditions"), APPROVED)
    return found is not None and found.get("reason") == AUTO_APPROVED


def names_needing_approval(
    parsed: ParsedRequest,
    *,
    namespace: str,
    namespace_labels: Mapping[str, str],
    grants: Sequence[isolation.Grant],
    trust_domain: str,
) -> list[isolation.Violation]:
    """Every name of the CSR its namespace may not carry without approval (the rules and
    grants of a Certificate's names); empty: it is approved automatically."""
    return isolation.evaluate(
        namespace=namespace,
        namespace_labels=namespace_labels,
        spec=parsed.certificate,
        grants=grants,
        trust_domain=trust_domain,
    )


def pending_message(
    violations: Sequence[isolation.Violation], *, namespace: str, name: str, authority: str
) -> str:
    """Ready's message while a request waits: which names need approval, why, and how."""
    listed = "; ".join(f"{v.value!r} ({v.rule})" for v in violations)
    return (
        f"waiting for approval: the CSR names {listed}. Someone allowed to "
        f"(verb {names.APPROVE_VERB} on {names.AUTHORITIES}/{authority}) runs "
        f"`kubectl certsmith approve {name} -n {namespace}` (or deny)"
    )


def policy_denied_message(violations: Sequence[isolation.Violation]) -> str:
    """Ready's message when an auto-approved request's names are no longer allowed when it
    is signed (a grant removed or a namespace relabelled in between)."""
    listed = "; ".join(f"{v.value!r} ({v.rule})" for v in violations)
    return (
        f"approved automatically, but no longer allowed when signed: {listed}; create a new "
        "request, which a person may approve"
    )


@dataclass(frozen=True)
class Signed:
    """A signed request: its status and the leaf (for the log and metrics)."""

    status: dict[str, Any]
    leaf: x509.Certificate


def sign(
    parsed: ParsedRequest,
    *,
    authority: Signer,
    current: Sequence[Mapping[str, Any]] | None,
    approve: bool,
    generation: int | None,
    now: datetime,
) -> Signed:
    """The leaf for the CSR's key and names (pki.issue.build_leaf: the request's usages and
    duration, never past the intermediate; CA:FALSE; nothing else the CSR asked for), and the
    status that hands it out. `approve`: also set Approved (AutoApproved), in the same write.
    ValueError when cryptography cannot sign it."""
    leaf = issue.build_leaf(
        spec=parsed.certificate,
        public_key=parsed.public_key,
        issuer=authority.intermediate,
        now=now,
        crl_url=authority.crl_url,
    )
    chain = inspect.certificates_to_pem([leaf, authority.intermediate.certificate]).decode()
    message = (
        f"signed by CertificateAuthority {authority.name}: serial {inspect.serial_hex(leaf)}, "
        f"valid until {times.format_time(leaf.not_valid_after_utc)}"
    )
    wanted = [Condition(conditions.READY, True, ISSUED, message)]
    if approve:
        wanted.insert(0, approval_condition())
    return Signed(
        status={
            "conditions": conditions.merge_conditions(
                current, wanted, generation=generation, now=now
            ),
            "certificate": chain,
            "ca": authority.bundle_pem.decode(),
            "notBefore": times.format_time(leaf.not_valid_before_utc),
            "notAfter": times.format_time(leaf.not_valid_after_utc),
            "serialNumber": inspect.serial_hex(leaf),
        },
        leaf=leaf,
    )


def approval_condition() -> Condition:
    """Approved=True as certsmith sets it: every name is the namespace's to carry."""
    return Condition(
        APPROVED,
        True,
        AUTO_APPROVED,
        "every name in the CSR is one this namespace may carry (namespace isolation and the "
        "authority's grants)",
    )


def not_ready_status(
    current: Sequence[Mapping[str, Any]] | None,
    *,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> dict[str, Any]:
    """The status of a request not signed (yet): Ready False with `reason` and `message`,
    other conditions (Approved, Denied) kept."""
    return {
        "conditions": conditions.merge_conditions(
            current,
            [Condition(conditions.READY, False, reason, message)],
            generation=generation,
            now=now,
        )
    }
