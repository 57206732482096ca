"""What certsmith answers to a Kubernetes CertificateSigningRequest (certificates.k8s.io/v1)
addressed to one of its signers, `certsmith.dev/<authority>` (api.names.signer_name, the
signer names of pod certificates), pure.

Approval is Kubernetes' (`kubectl certificate approve`, RBAC verb `approve` on `signers`);
certsmith only signs what is approved (condition Approved, no Denied or Failed, no
certificate yet), and only what its policy allows the requester, whoever approved it. The
requester is who created the CSR, as kube-apiserver records it (spec.username, spec.groups,
spec.uid; nobody can set them otherwise):

- a service account (`system:serviceaccount:<ns>:<sa>`) may obtain its own SPIFFE ID
  (`spiffe://<trust domain>/ns/<ns>/sa/<sa>`, no other service account's) and the names a
  Certificate in `<ns>` may carry (certificates.isolation: `<svc>.<ns>.svc[.cluster.local]`,
  and the authority's spec.policy.grants for `<ns>`, which may also grant URIs);
- anyone else (a user, a node, a group) obtains nothing: grants are made to namespaces,
  and such a requester has none. People and devices enrol through a namespaced
  CertificateRequest (enrolment.csr, enrolment.decision).

The CSR (spec.request) is read and judged as a CertificateRequest's (enrolment.csr): its
signature verified, weak keys refused, only its key, its commonName and its
subjectAltName's names reach the certificate. spec.usages (Kubernetes' names) become the
certificate's key usages and extended key usages; those certsmith does not issue are
refused. spec.expirationSeconds (kube-apiserver requires at least 600) asks for a lifetime,
capped at the authority's spec.podCertificates.maxDuration, which also applies when it is
absent, and at the intermediate's own expiry.

A CSR that cannot or may not be signed gets condition Failed (the CSR API's answer of a
signer that refuses), with a reason and a message naming the field. Failed is final, as
Kubernetes defines it: a CSR for an authority that does not exist when the approved CSR is
seen fails (AuthorityNotFound), even if the authority is created later; a new CSR is needed.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509

from certsmith.api import conditions, model, names, times
from certsmith.authorities.authority import AuthorityMaterial
from certsmith.certificates import isolation
from certsmith.enrolment import csr, decision
from certsmith.enrolment.csr import ParsedRequest
from certsmith.pki import inspect, issue, name_constraints

APPROVED, DENIED, FAILED = "Approved", "Denied", "Failed"
ISSUED = "Issued"
"""The metrics outcome of a signed CSR (Kubernetes has no condition for it)."""
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
MIN_EXPIRATION = timedelta(seconds=600)
"""The shortest spec.expirationSeconds kube-apiserver accepts (and so the shortest lifetime
certsmith signs for a CSR, unless the intermediate expires sooner)."""

REQUESTER_NOT_ALLOWED = "RequesterNotAllowed"
REQUESTER_NOT_FOUND = "RequesterNotFound"
INVALID_REQUEST = "InvalidRequest"
UNSUPPORTED_USAGE = "UnsupportedUsage"
POLICY_DENIED = "PolicyDenied"
AUTHORITY_NOT_FOUND = "AuthorityNotFound"
SIGNING_FAILED = "SigningFailed"

USAGE_SYNONYMS = {"signing": "digital signature", "s/mime": "email protection"}
"""Kubernetes' usages that are another name of one certsmith issues (as Kubernetes' own
signers read them: KeyUsageDigitalSignature, ExtKeyUsageEmailProtection)."""
UNSUPPORTED_USAGES = frozenset(
    {"any", "ipsec end system", "ipsec tunnel", "ipsec user", "microsoft sgc", "netscape sgc"}
)
"""Kubernetes' usages certsmith never issues; the CA usages too (model.CA_USAGES), refused by
the Certificate rules (model.parse_certificate_spec)."""


class Stage:
    """Where a CSR stands for certsmith (`stage`)."""

    PENDING = "Pending"
    """Not approved (yet): left alone."""
    SIGN = "Sign"
    """Approved, neither Denied nor Failed, no certificate: certsmith answers it."""
    DONE = "Done"
    """Denied, Failed or signed: never looked at again."""


@dataclass(frozen=True)
class ServiceAccount:
    namespace: str
    name: str


@dataclass(frozen=True)
class RequesterObjects:
    """The requester's namespace and ServiceAccount as read when the CSR is signed (None:
    not found)."""

    namespace: Mapping[str, Any] | None
    service_account: Mapping[str, Any] | None


@dataclass(frozen=True)
class Refusal:
    """The CSR's answer when it is not signed: condition Failed with `reason`, `message`."""

    reason: str
    message: str


@dataclass(frozen=True)
class Checked:
    """A CSR certsmith may sign: its key and names (as a Certificate's spec, with the
    lifetime and usages to sign) and its requester."""

    parsed: ParsedRequest
    requester: ServiceAccount


@dataclass(frozen=True)
class Signed:
    status: dict[str, Any]
    """status.certificate (leaf, then intermediate, PEM) and the conditions as they were."""
    leaf: x509.Certificate


def is_certsmiths(body: Mapping[str, Any]) -> bool:
    """Whether the CSR names a certsmith signer (`certsmith.dev/<authority>`)."""
    signer = (body.get("spec") or {}).get("signerName")
    return isinstance(signer, str) and names.signer_authority(signer) is not None


def authority_of(body: Mapping[str, Any]) -> str | None:
    """The CertificateAuthority the CSR's signerName names, None for another signer."""
    signer = (body.get("spec") or {}).get("signerName")
    return names.signer_authority(signer) if isinstance(signer, str) else None


def stage(body: Mapping[str, Any]) -> str:
    """The CSR's Stage from its status as read."""
    status = body.get("status") or {}
    found = status.get("conditions") or []
    if status.get("certificate") or any(conditions.is_true(found, t) for t in (DENIED, FAILED)):
        return Stage.DONE
    return Stage.SIGN if conditions.is_true(found, APPROVED) else Stage.PENDING


def service_account(username: object) -> ServiceAccount | None:
    """The service account a spec.username names (`system:serviceaccount:<ns>:<sa>`), or
    None for any other requester (a malformed one included)."""
    if not isinstance(username, str) or not username.startswith(SERVICE_ACCOUNT_PREFIX):
        return None
    namespace, colon, name = username[len(SERVICE_ACCOUNT_PREFIX) :].partition(":")
    if not (colon and namespace and name) or ":" in name:
        return None
    return ServiceAccount(namespace=namespace, name=name)


def spiffe_id(trust_domain: str, account: ServiceAccount) -> str:
    """The X.509-SVID URI of a service account."""
    return f"spiffe://{trust_domain}/ns/{account.namespace}/sa/{account.name}"


def certsmith_usages(requested: object) -> list[str] | Refusal:
    """spec.usages in certsmith's (Certificate) names, in order, duplicates after
    USAGE_SYNONYMS dropped; Failed (UnsupportedUsage) naming the first usage certsmith
    never issues (UNSUPPORTED_USAGES)."""
    found: list[str] = []
    for index, usage in enumerate(requested if isinstance(requested, list) else []):
        text = str(usage)
        if text in UNSUPPORTED_USAGES:
            return Refusal(
                UNSUPPORTED_USAGE,
                f"spec.usages[{index}]: certsmith does not issue {text!r}; it issues "
                f"{', '.join(sorted(model.ALLOWED_USAGES - model.CA_USAGES.keys()))}",
            )
        mapped = USAGE_SYNONYMS.get(text, text)
        if mapped not in found:
            found.append(mapped)
    return found


def lifetime(expiration_seconds: object, max_duration: timedelta) -> timedelta:
    """The lifetime to sign: spec.expirationSeconds (an int; anything else reads as absent)
    capped at `max_duration`, the authority's spec.podCertificates.maxDuration, which is
    also the lifetime when none is asked for; never under MIN_EXPIRATION."""
    asked = (
        timedelta(seconds=expiration_seconds)
        if isinstance(expiration_seconds, int) and not isinstance(expiration_seconds, bool)
        else max_duration
    )
    return max(MIN_EXPIRATION, min(asked, max_duration))


def check(
    body: Mapping[str, Any],
    *,
    operator_namespace: str,
    trust_domain: str,
    authority: AuthorityMaterial,
    namespace_labels: Mapping[str, str],
    requester: RequesterObjects,
) -> Checked | Refusal:
    """Whether the CSR may be signed by `authority` for its requester, judged in this order:
    the requester (a service account, not of certsmith's own namespace, that still exists:
    `requester_missing`), spec.usages, spec.request (csr.parse_request: base64, PEM,
    signature, key, names), then every name against the requester's (`namespace_labels`:
    its namespace's labels, for the grants), then against the authority's
    spec.nameConstraints."""
    spec = body.get("spec") or {}
    account = service_account(spec.get("username"))
    if account is None:
        return Refusal(
            REQUESTER_NOT_ALLOWED,
            f"spec.username: {spec.get('username')!r} is not a service account; certsmith signs "
            "a CertificateSigningRequest only for the service account that created it (its own "
            "SPIFFE ID and its namespace's names); people and devices enrol with a certsmith "
            "CertificateRequest in a namespace",
        )
    refusal = isolation.operator_namespace_refusal(account.namespace, operator_namespace)
    if refusal is not None:
        return Refusal(POLICY_DENIED, f"spec.username: {spec.get('username')}: {refusal}")
    missing = requester_missing(account, spec.get("uid"), requester)
    if missing is not None:
        return missing
    usages = certsmith_usages(spec.get("usages"))
    if isinstance(usages, Refusal):
        return usages
    duration = lifetime(spec.get("expirationSeconds"), authority.pod_certificates.max_duration)
    request = {
        "request": spec.get("request"),
        "usages": usages,
        "duration": f"{int(duration.total_seconds())}s",
        "issuerRef": {"name": authority.name},
    }
    try:
        parsed = csr.parse_request(request)
    except model.InvalidSpec as invalid:
        reason = UNSUPPORTED_USAGE if invalid.field.startswith("spec.usages") else INVALID_REQUEST
        return Refusal(reason, str(invalid))
    violations = requester_violations(
        parsed,
        account,
        namespace_labels=namespace_labels,
        grants=authority.grants,
        trust_domain=trust_domain,
    )
    if violations:
        return Refusal(POLICY_DENIED, "; ".join(violations))
    # A subordinate's intermediate carries name constraints: no verifier would accept a leaf
    # outside them (RFC 5280 4.2.1.10), so it is refused, not signed.
    outside = name_constraints.violations(
        authority.name_constraints,
        name_constraints.spec_names(parsed.certificate, where="spec.request"),
        authority=authority.name,
    )
    if outside:
        return Refusal(POLICY_DENIED, "; ".join(outside))
    return Checked(parsed=parsed, requester=account)


def requester_missing(
    account: ServiceAccount, uid: object, found: RequesterObjects
) -> Refusal | None:
    """Failed (RequesterNotFound) when the requesting service account is not there to be
    certified: its namespace does not exist or is being deleted, the ServiceAccount does
    not exist (deleted since, or never: an impersonated name), or it is another one of the
    same name (its metadata.uid is not the CSR's spec.uid, which kube-apiserver records
    from the requester's token; an impersonated requester has none, and then the name
    alone counts). None when it exists."""
    who = f"spec.username: service account {account.namespace}/{account.name}"
    namespace_meta = (found.namespace or {}).get("metadata") or {}
    if found.namespace is None or namespace_meta.get("deletionTimestamp"):
        state = "is being deleted" if found.namespace is not None else "does not exist"
        return Refusal(
            REQUESTER_NOT_FOUND,
            f"{who}: its namespace {account.namespace} {state}; certsmith certifies only a "
            "service account that exists when the CSR is signed",
        )
    if found.service_account is None:
        return Refusal(
            REQUESTER_NOT_FOUND,
            f"{who} does not exist; certsmith certifies only a service account that exists "
            "when the CSR is signed",
        )
    current = (found.service_account.get("metadata") or {}).get("uid")
    if isinstance(uid, str) and uid and current and uid != current:
        return Refusal(
            REQUESTER_NOT_FOUND,
            f"{who} was deleted and created again since the CSR was made (spec.uid {uid}, "
            f"the ServiceAccount's uid now {current}): the new one must ask itself",
        )
    return None


def requester_violations(
    parsed: ParsedRequest,
    account: ServiceAccount,
    *,
    namespace_labels: Mapping[str, str],
    grants: Sequence[isolation.Grant],
    trust_domain: str,
) -> list[str]:
    """Every name of the CSR the service account may not obtain, each said of spec.request
    with why: the names its namespace may not carry (the rules and grants of a
    Certificate's names, decision.names_needing_approval), and any URI other than its own
    SPIFFE ID that no grant allows (another service account's SPIFFE ID above all)."""
    violations = decision.names_needing_approval(
        parsed,
        namespace=account.namespace,
        namespace_labels=namespace_labels,
        grants=grants,
        trust_domain=trust_domain,
    )
    found = [
        _said_of_request(v.field, f"{v.value!r} is not allowed ({v.rule})") for v in violations
    ]
    refused = {v.value for v in violations}
    own = spiffe_id(trust_domain, account)
    for index, uri in enumerate(parsed.certificate.uris):
        if uri == own or uri in refused:
            continue
        if isolation.uri_granted(uri, grants=grants, namespace_labels=namespace_labels):
            continue
        found.append(
            _said_of_request(
                f"spec.uris[{index}]",
                f"{uri!r} is not allowed: service account {account.namespace}/{account.name} "
                f"may obtain only its own SPIFFE ID {own} and URIs granted to its namespace",
            )
        )
    return found


def _said_of_request(field: str, message: str) -> str:
    return str(csr.as_request_field(model.InvalidSpec(field, message)))


def sign(checked: Checked, *, authority: AuthorityMaterial, now: datetime) -> Signed:
    """The leaf for the CSR's key and names (pki.issue.build_leaf: the usages and lifetime
    checked, never past the intermediate; CA:FALSE; nothing else the CSR asked for) and the
    status that hands it out: status.certificate, the leaf then the intermediate (PEM,
    base64-encoded as JSON carries `[]byte`), as kube-apiserver and clients of the CSR API
    read it. ValueError when cryptography cannot
    sign it."""
    leaf = issue.build_leaf(
        spec=checked.parsed.certificate,
        public_key=checked.parsed.public_key,
        issuer=authority.intermediate,
        now=now,
    )
    chain = inspect.certificates_to_pem([leaf, authority.intermediate.certificate])
    # A `[]byte` field: base64 in JSON.
    return Signed(status={"certificate": base64.b64encode(chain).decode()}, leaf=leaf)


def issued_message(authority: str, leaf: x509.Certificate) -> str:
    """What the log says of a signed CSR."""
    return (
        f"signed by CertificateAuthority {authority}: serial {inspect.serial_hex(leaf)}, "
        f"valid until {times.format_time(leaf.not_valid_after_utc)}"
    )


def unknown_authority(authority: str) -> Refusal:
    """Failed: the signerName names no CertificateAuthority (final, as every Failed)."""
    return Refusal(
        AUTHORITY_NOT_FOUND,
        f"spec.signerName: {names.signer_name(authority)} names CertificateAuthority "
        f"{authority}, which does not exist; certsmith signs as "
        f"{names.signer_name('<authority>')} for each CertificateAuthority (kubectl get "
        "certificateauthorities). Failed is final: create a new CSR",
    )


def failed_status(
    current: Sequence[Mapping[str, Any]] | None, refusal: Refusal, now: datetime
) -> dict[str, Any]:
    """The CSR's status when certsmith refuses it: its conditions (Approved, kept) and
    Failed True with the refusal's reason and message (at most 32 KiB, as the apiserver
    keeps)."""
    stamp = times.format_time(now)
    failed = {
        "type": FAILED,
        "status": "True",
        "reason": refusal.reason,
        "message": refusal.message[: 32 * 1024],
        "lastUpdateTime": stamp,
        "lastTransitionTime": stamp,
    }
    return {"conditions": [*(dict(c) for c in current or () if c.get("type") != FAILED), failed]}
