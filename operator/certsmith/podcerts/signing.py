"""What certsmith answers to a PodCertificateRequest for one of its signers, pure.

The certificate names the pod's identity and nothing the request says of itself: the
SPIFFE ID of its service account (`spiffe://<trust domain>/ns/<ns>/sa/<sa>`), the DNS
names of the Services of its namespace whose selector matches its labels
(`<svc>.<ns>.svc`, `<svc>.<ns>.svc.cluster.local`), and the extra DNS names the pod's
author asked for in `spec.unverifiedUserAnnotations` (key `certsmith.dev/dns-names`),
all judged by the same namespace isolation and grants as a Certificate's names. It is a
TLS server and client certificate, signed by the authority's intermediate.

A request is answered once: Issued, Denied (what policy refuses: the pod is gone or not
the one asked for, a name its namespace may not carry, an unknown annotation, a key type
certsmith does not sign) or Failed (signing cannot succeed, whatever the retries). What may
pass (the authority not loaded yet, the apiserver not answering) leaves it pending.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509

from certsmith.api import model, names, times
from certsmith.authorities import pod_certificates, rotation
from certsmith.authorities.authority import AuthorityMaterial
from certsmith.certificates import isolation
from certsmith.pki import ca, inspect, issue, name_constraints
from certsmith.podcerts import requests
from certsmith.podcerts.requests import PodCertificateRequest, PublicKey, RequestRefused

ISSUED, DENIED, FAILED = "Issued", "Denied", "Failed"
INVALID_ANNOTATIONS = "InvalidUnverifiedUserAnnotations"
"""The reason Kubernetes defines for annotations the signer does not recognise or accept."""
POLICY_DENIED = "PolicyDenied"
"""As for Certificates: a name the namespace may not carry, or certsmith's own namespace."""
SUPPORTED_ANNOTATIONS = (names.DNS_NAMES_ANNOTATION,)


@dataclass(frozen=True)
class Refusal:
    """The request's answer when it is not signed: `condition` Denied or Failed."""

    condition: str
    reason: str
    message: str


@dataclass(frozen=True)
class Postponed:
    """Not answered now; asked again later. `why` is for the log."""

    why: str


@dataclass(frozen=True)
class Checked:
    """What a request asks for, judged before anything is read for it (`check`)."""

    public_key: PublicKey
    extra_dns_names: tuple[str, ...]
    """From the certsmith.dev/dns-names annotation: lowercased, deduplicated, sorted."""


@dataclass(frozen=True)
class Validity:
    """The certificate's times, whole seconds, within Kubernetes' bounds."""

    not_before: datetime
    not_after: datetime
    begin_refresh_at: datetime


@dataclass(frozen=True)
class Signed:
    """A certificate to hand out, and what the authority must record first."""

    status: dict[str, Any]
    """The request's status: Issued, certificateChain, notBefore, notAfter, beginRefreshAt."""
    leaf: x509.Certificate
    root_fingerprint: str
    """The root the chain leads to (SHA-256 hex): its refresh bound covers this one."""
    begin_refresh_at: datetime


def unknown_authority(request: PodCertificateRequest) -> Refusal:
    """Denied: the signerName names no CertificateAuthority."""
    return Refusal(
        DENIED,
        "AuthorityNotFound",
        f"signerName {request.signer_name} names CertificateAuthority {request.authority}, "
        f"which does not exist; certsmith signs as {names.signer_name('<authority>')} for "
        "each CertificateAuthority (kubectl get certificateauthorities)",
    )


def check(request: PodCertificateRequest, *, operator_namespace: str) -> Checked | Refusal:
    """What can be judged from the request alone: its namespace (never certsmith's own),
    its annotations (only SUPPORTED_ANNOTATIONS, each value well-formed) and its key."""
    refusal = isolation.operator_namespace_refusal(request.namespace, operator_namespace)
    if refusal is not None:
        return Refusal(DENIED, POLICY_DENIED, refusal)
    extra = requested_dns_names(request.annotations)
    if isinstance(extra, Refusal):
        return extra
    try:
        key = requests.public_key(request)
    except RequestRefused as refused:
        return Refusal(DENIED, refused.reason, refused.message)
    return Checked(public_key=key, extra_dns_names=extra)


def requested_dns_names(annotations: Mapping[str, str]) -> tuple[str, ...] | Refusal:
    """The extra DNS names of `certsmith.dev/dns-names` (comma-separated, blanks ignored),
    or Denied (InvalidUnverifiedUserAnnotations) naming every key certsmith does not read,
    or the first value that is not a DNS name (RFC 1123, one leading `*.` allowed)."""
    unknown = sorted(set(annotations) - set(SUPPORTED_ANNOTATIONS))
    if unknown:
        return Refusal(
            DENIED,
            INVALID_ANNOTATIONS,
            f"spec.unverifiedUserAnnotations: certsmith does not know "
            f"{', '.join(repr(k) for k in unknown)}; it reads only "
            f"{', '.join(SUPPORTED_ANNOTATIONS)} (extra DNS names, comma-separated)",
        )
    raw = annotations.get(names.DNS_NAMES_ANNOTATION, "")
    found = {name.strip().lower() for name in raw.split(",")} - {""}
    for name in sorted(found):
        if model.is_dns_name(name):  # IP addresses are not
            continue
        return Refusal(
            DENIED,
            INVALID_ANNOTATIONS,
            f"spec.unverifiedUserAnnotations[{names.DNS_NAMES_ANNOTATION}]: {name!r} is not a "
            "DNS name (RFC 1123, one leading '*.' allowed)",
        )
    return tuple(sorted(found))


def pod_not_found(request: PodCertificateRequest) -> Refusal:
    """Denied: the pod the request names does not exist (any more)."""
    return Refusal(
        DENIED, "PodNotFound", f"pod {request.namespace}/{request.pod_name} does not exist"
    )


def identity_refusal(request: PodCertificateRequest, pod: Mapping[str, Any]) -> Refusal | None:
    """Denied when the pod, as read, is not the one the request was made for: its UID,
    service account and node must be the request's."""
    where = f"pod {request.namespace}/{request.pod_name}"
    metadata, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    if metadata.get("uid") != request.pod_uid:
        return Refusal(
            DENIED,
            "PodReplaced",
            f"{where} has uid {metadata.get('uid')}, the request was made for uid "
            f"{request.pod_uid} (a pod of that name deleted since)",
        )
    account = spec.get("serviceAccountName") or "default"
    if account != request.service_account:
        return Refusal(
            DENIED,
            "ServiceAccountMismatch",
            f"{where} runs as service account {account}, the request names "
            f"{request.service_account}",
        )
    if spec.get("nodeName") != request.node_name:
        return Refusal(
            DENIED,
            "NodeMismatch",
            f"{where} is bound to node {spec.get('nodeName') or '(none)'}, the request comes "
            f"for node {request.node_name}",
        )
    return None


def service_dns_names(
    namespace: str, pod_labels: Mapping[str, str], services: Sequence[Mapping[str, Any]]
) -> tuple[str, ...]:
    """`<svc>.<ns>.svc` and `<svc>.<ns>.svc.<cluster domain>` for every Service of the
    namespace whose non-empty `spec.selector` matches `pod_labels` (as kube-proxy and the
    EndpointSlice controller select pods), sorted by Service name."""
    found = []
    for service in services:
        selector = (service.get("spec") or {}).get("selector") or {}
        if selector and all(pod_labels.get(k) == v for k, v in selector.items()):
            found.append(service["metadata"]["name"])
    return tuple(
        name
        for service in sorted(found)
        for name in (
            f"{service}.{namespace}.svc",
            f"{service}.{namespace}.svc.{isolation.CLUSTER_DOMAIN}",
        )
    )


def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    """The X.509-SVID URI of a service account."""
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


@dataclass(frozen=True)
class Names:
    """The names of the certificate, judged."""

    dns_names: tuple[str, ...]
    uri: str


def certificate_names(
    request: PodCertificateRequest,
    checked: Checked,
    *,
    pod: Mapping[str, Any],
    services: Sequence[Mapping[str, Any]],
    namespace_labels: Mapping[str, str],
    grants: Sequence[isolation.Grant],
    trust_domain: str,
) -> Names | Refusal:
    """The certificate's names (the Services' DNS names, then the annotation's not among
    them; the service account's SPIFFE ID), or Denied (PolicyDenied) naming each the
    namespace may not carry and why (isolation.evaluate_names)."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    from_services = service_dns_names(request.namespace, labels, services)
    extra = [name for name in checked.extra_dns_names if name not in from_services]
    uri = spiffe_id(trust_domain, request.namespace, request.service_account)
    annotation = f"spec.unverifiedUserAnnotations[{names.DNS_NAMES_ANNOTATION}]"
    violations = isolation.evaluate_names(
        namespace=request.namespace,
        namespace_labels=namespace_labels,
        dns_names=[
            *(("a selecting Service", name) for name in from_services),
            *((annotation, name) for name in extra),
        ],
        uris=[("spec.serviceAccountName", uri)],
        grants=grants,
        trust_domain=trust_domain,
    )
    if violations:
        return Refusal(DENIED, POLICY_DENIED, "; ".join(str(v) for v in violations))
    total = len(from_services) + len(extra) + 1
    if total > model.MAX_SANS:
        # The same bound as a Certificate's: it limits what a request makes us sign.
        return Refusal(
            DENIED,
            INVALID_ANNOTATIONS if extra else POLICY_DENIED,
            f"{annotation} and the selecting Services bring the certificate to {total} "
            f"names (at most {model.MAX_SANS}, as for a Certificate)",
        )
    return Names(dns_names=(*from_services, *extra), uri=uri)


def validity(
    *,
    now: datetime,
    max_expiration: timedelta,
    settings: pod_certificates.Settings,
    intermediate: x509.Certificate,
    distributing: bool,
) -> Validity | Refusal | Postponed:
    """The certificate's times: from `now` less ca.BACKDATE (clock skew; kube-apiserver
    wants notBefore within 5 min of its clock) for the shortest of `max_expiration`
    (spec.maxExpirationSeconds), the authority's maxDuration and what the intermediate has
    left. kubelet refreshes it at `beginRefreshAt`: renewBefore before notAfter, else 2/3
    into its lifetime; while a root rotation distributes its new root, as early as allowed
    (notBefore + 10 min) so pods come back for a certificate under the new root soon.
    Always within [notBefore + 10 min, notAfter - 10 min].

    Failed when what the intermediate has left is shorter than the 1 h a pod certificate
    must live and its whole lifetime is under 3 h (renewed at 2/3 of it, it would leave
    requests waiting past their deadline); Postponed when it has left too little but lives
    3 h or more (only around a renewal that is due).
    """
    not_before = now.replace(microsecond=0) - ca.BACKDATE
    lifetime = min(max_expiration, settings.max_duration)
    # Whole seconds: status.notAfter (RFC 3339, seconds) must equal the leaf's.
    not_after = min(not_before + lifetime, intermediate.not_valid_after_utc).replace(microsecond=0)
    if not_after - not_before < pod_certificates.MIN_LIFETIME:
        whole = intermediate.not_valid_after_utc - intermediate.not_valid_before_utc
        # Renewed at 2/3 of its lifetime, an intermediate of 3h or more always has the 1h
        # left; a shorter one may not for up to a third of its life, longer than the 15 min
        # kube-apiserver keeps a pending request: fail now (kubelet asks again later).
        if whole < 3 * pod_certificates.MIN_LIFETIME + ca.BACKDATE:
            return Refusal(
                FAILED,
                "IntermediateLifetimeTooShort",
                f"the authority's intermediate lives {model.format_duration(whole)} and has "
                "less than the 1h Kubernetes requires of a pod certificate left: set its "
                "spec.intermediateLifetime to 3h or more",
            )
        return Postponed(
            f"the intermediate expires at {times.format_time(intermediate.not_valid_after_utc)}, "
            "too soon for a 1h pod certificate, until it is renewed"
        )
    lifetime = not_after - not_before
    margin = pod_certificates.REFRESH_MARGIN
    if distributing:
        refresh = not_before + margin
    elif settings.renew_before is not None:
        refresh = not_after - settings.renew_before
    else:
        refresh = not_before + timedelta(seconds=int(lifetime.total_seconds()) * 2 // 3)
    refresh = max(not_before + margin, min(refresh, not_after - margin))
    return Validity(not_before=not_before, not_after=not_after, begin_refresh_at=refresh)


def sign(
    request: PodCertificateRequest,
    checked: Checked,
    named: Names,
    *,
    authority: AuthorityMaterial,
    now: datetime,
) -> Signed | Refusal | Postponed:
    """The certificate of `named` for the request's key, signed by the authority's
    intermediate (under the root its rotation phase signs with), and the request's status."""
    times_or_not = validity(
        now=now,
        max_expiration=request.max_expiration,
        settings=authority.pod_certificates,
        intermediate=authority.intermediate.certificate,
        distributing=authority.rotation.phase is rotation.Phase.DISTRIBUTING,
    )
    if not isinstance(times_or_not, Validity):
        return times_or_not
    outside = name_constraints.violations(
        authority.name_constraints,
        name_constraints.Names(
            dns_names=[("the certificate's DNS names", name) for name in named.dns_names],
            uris=[("spec.serviceAccountName", named.uri)],
        ),
        authority=authority.name,
    )
    if outside:
        # Verifiers would refuse it under this intermediate: never signed.
        return Refusal(DENIED, POLICY_DENIED, "; ".join(outside))
    leaf = issue.build_identity_leaf(
        public_key=checked.public_key,
        issuer=authority.intermediate,
        dns_names=named.dns_names,
        uris=(named.uri,),
        not_before=times_or_not.not_before,
        not_after=times_or_not.not_after,
    )
    root = inspect.fingerprint_sha256(authority.root.certificate)
    message = (
        f"signed by CertificateAuthority {authority.name} (root sha256 {root[:16]}): serial "
        f"{inspect.serial_hex(leaf)} for {named.uri}"
        + (f" and {len(named.dns_names)} DNS names" if named.dns_names else "")
    )
    status = {
        "conditions": [_condition(ISSUED, ISSUED, message, now)],
        "certificateChain": inspect.certificates_to_pem(
            [leaf, authority.intermediate.certificate]
        ).decode(),
        "notBefore": times.format_time(times_or_not.not_before),
        "notAfter": times.format_time(times_or_not.not_after),
        "beginRefreshAt": times.format_time(times_or_not.begin_refresh_at),
    }
    return Signed(
        status=status,
        leaf=leaf,
        root_fingerprint=root,
        begin_refresh_at=times_or_not.begin_refresh_at,
    )


def refused_status(refusal: Refusal, now: datetime) -> dict[str, Any]:
    """The request's status for a Denied or Failed answer: that condition only (kube-apiserver
    wants every other status field empty then)."""
    return {"conditions": [_condition(refusal.condition, refusal.reason, refusal.message, now)]}


def _condition(kind: str, reason: str, message: str, now: datetime) -> dict[str, Any]:
    # metav1.Condition: the apiserver requires lastTransitionTime and a CamelCase reason,
    # and keeps at most 32 KiB of message.
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message[: 32 * 1024],
        "lastTransitionTime": times.format_time(now),
    }
