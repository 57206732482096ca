"""A CertificateAuthority's key material and the pure decisions about it.

The root and the intermediate each live in a Secret in the operator's namespace. The
intermediate signs leaves and is renewed at 2/3 of its lifetime under the same root;
a renewed intermediate needs no change to any trust bundle.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509

from certsmith.api import conditions, names, times
from certsmith.authorities import rotation
from certsmith.authorities.pod_certificates import Settings as PodCertificateSettings
from certsmith.certificates import isolation, renewal
from certsmith.certificates.policies import AuthorityView
from certsmith.pki import ca, inspect, keys
from certsmith.pki import name_constraints as constraints


@dataclass(frozen=True)
class AuthorityMaterial:
    """What an authority signs with and what it trusts, loaded by `store.ensure_material`."""

    name: str
    root: ca.CAKeyPair
    """The root that signs the intermediate now (the new one from Reissuing on)."""
    intermediate: ca.CAKeyPair
    trusted_roots: tuple[x509.Certificate, ...]
    rotation: rotation.RotationState = field(
        default_factory=lambda: rotation.RotationState(rotation.Phase.READY)
    )
    grants: tuple[isolation.Grant, ...] = ()
    bundle_config_map: str | None = None
    bundle_selector: Mapping[str, Any] = field(default_factory=dict)
    pod_certificates: PodCertificateSettings = field(default_factory=PodCertificateSettings)
    """spec.podCertificates: the lifetime and refresh of the pod certificates it signs."""
    refresh_bounds: Mapping[str, datetime] = field(default_factory=dict)
    """The pod certificates' refresh bound of each trusted root (by SHA-256 fingerprint), as
    its Secret recorded it when the material was loaded (pod_certificates)."""
    crl_url: str | None = None
    """spec.crl.distributionPointURL: named in each leaf it signs (RFC 5280 4.2.1.13)."""
    crl_pem: str = ""
    """The CRLs published last (authorities.revocation.CRL_KEY); "" before the first."""
    revoked: frozenset[int] = frozenset()
    """The serials those CRLs list."""
    parent: str | None = None
    """spec.parentRef.name of a subordinate: its intermediate is signed by that authority's
    root, whose roots (and rotation) it shares; None for an authority with its own root."""
    name_constraints: constraints.NameConstraints = field(
        default_factory=constraints.NameConstraints
    )
    """spec.nameConstraints, carried (critical) by its intermediate; every leaf it signs is
    judged against them first."""
    csr_bounds: Mapping[str, datetime] = field(default_factory=dict)
    """The latest notAfter of the certificates signed for Kubernetes CSRs under each trusted
    root (by SHA-256 fingerprint), as its Secret recorded it when loaded (csr_bounds)."""

    def view(self) -> AuthorityView:
        """The part the Certificate reconciler reads (certificates.policies.AuthorityView)."""
        return AuthorityView(
            name=self.name,
            trusted_roots=self.trusted_roots,
            signing_root=self.root.certificate,
            bundle_pem=self.bundle_pem,
            name_constraints=constraints.of_certificate(self.intermediate.certificate),
        )

    @property
    def bundle_pem(self) -> bytes:
        """Every root currently trusted: the `ca.crt` of each issued Secret."""
        return inspect.certificates_to_pem(self.trusted_roots)

    @property
    def issuer_fingerprint(self) -> str:
        """The intermediate's SHA-256 fingerprint, recorded on each Secret it signs."""
        return inspect.fingerprint_sha256(self.intermediate.certificate)


def root_secret_name(authority: str) -> str:
    """The Secret (in the operator's namespace) holding the authority's root."""
    return f"{authority}-root"


def next_root_secret_name(authority: str) -> str:
    """The new root during a rotation; it becomes the root when the rotation ends."""
    return f"{authority}-root-next"


def root_renewal_time(root: x509.Certificate) -> datetime:
    """Roots, like intermediates, are replaced at 2/3 of their lifetime."""
    return intermediate_renewal_time(root)


def intermediate_secret_name(authority: str) -> str:
    """The Secret (in the operator's namespace) holding the authority's intermediate."""
    return f"{authority}-intermediate"


def ca_marks(secret: Mapping[str, Any]) -> dict[str, str]:
    """The CA marks a Secret carries, label or annotation (`certsmith.dev/authority`,
    `certsmith.dev/role`); the annotation wins when both exist and disagree. Empty: certsmith
    did not create it for any authority."""
    metadata = secret.get("metadata") or {}
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    marks = {}
    for key in (names.CA_AUTHORITY_LABEL, names.CA_ROLE_LABEL):
        value = annotations.get(key) or labels.get(key)
        if value:
            marks[key] = value
    return marks


def describe_ca_secret(secret: Mapping[str, Any]) -> str | None:
    """Whose CA Secret this is, e.g. "the root of CertificateAuthority cluster-root", or None
    when it carries no CA mark."""
    marks = ca_marks(secret)
    if not marks:
        return None
    role = marks.get(names.CA_ROLE_LABEL, "key material")
    return f"the {role} of CertificateAuthority {marks.get(names.CA_AUTHORITY_LABEL, '?')}"


def check_role(secret: Mapping[str, Any], *, authority: str, role: str) -> bool:
    """Whether the Secret is `authority`'s `role` Secret ("root", "next-root", "intermediate")
    as certsmith created it; ValueError when it is not.

    certsmith marks its CA Secrets with labels and annotations `certsmith.dev/authority` and
    `certsmith.dev/role`; any one of them is enough (a removed label does not disown it) as
    long as none names another authority or role. A Secret with no CA mark at all (a
    Certificate's, a hand-made one) is neither used as CA material nor overwritten.
    Returns True when a mark is missing, so the caller puts the marks back (`marks_patch`).
    """
    metadata = secret.get("metadata") or {}
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    wanted = {names.CA_AUTHORITY_LABEL: authority, names.CA_ROLE_LABEL: role}
    found = [
        (kind, key, value)
        for kind, source in (("label", labels), ("annotation", annotations))
        for key, value in source.items()
        if key in wanted
    ]
    where = f"Secret {metadata.get('namespace', '?')}/{metadata.get('name', '?')}"
    if found and all(wanted[key] == value for _, key, value in found):
        return (
            len(found) < 2 * len(wanted)
            or labels.get(names.MANAGED_BY_LABEL) != names.MANAGED_BY_VALUE
        )
    if found:
        # Name the marks that disagree: the others may well say it is this one's.
        other = ", ".join(
            f"{kind} {key}={value}" for kind, key, value in found if wanted[key] != value
        )
        raise ValueError(
            f"{where} has {other}, so it is not the {role} of CertificateAuthority "
            f"{authority}; certsmith neither uses nor overwrites it: delete it, move it away, "
            "or set that mark back"
        )
    whose = ""
    certificate = labels.get(names.CERTIFICATE_LABEL)
    if certificate:
        whose = f" (it holds the certificate of Certificate {certificate})"
    raise ValueError(
        f"{where} carries no certsmith CA mark (label or annotation {names.CA_AUTHORITY_LABEL}="
        f"{authority}, {names.CA_ROLE_LABEL}={role}){whose}; certsmith neither uses nor "
        "overwrites it: "
        "delete it or move it away"
    )


def marks_patch(*, authority: str, role: str) -> dict[str, Any]:
    """A merge patch putting back every CA mark (labels and annotations) on a CA Secret."""
    marks = {names.CA_AUTHORITY_LABEL: authority, names.CA_ROLE_LABEL: role}
    return {
        "metadata": {
            "labels": {names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE, **marks},
            "annotations": marks,
        }
    }


def intermediate_renewal_time(intermediate: x509.Certificate) -> datetime:
    """2/3 into its lifetime, counted from when certsmith signed it (`renewal.renewal_time`)."""
    return renewal.renewal_time(
        issued_at=ca.signed_at(intermediate),
        not_after=intermediate.not_valid_after_utc,
        renew_before=None,
        renew_before_percentage=None,
    )


def parent_name(spec: Mapping[str, Any]) -> str | None:
    """spec.parentRef.name: the authority whose root signs this one's intermediate, or None."""
    return (spec.get("parentRef") or {}).get("name") or None


def parent_problem(name: str, parent: str, parent_of_parent: str | None) -> str | None:
    """Why `parent` cannot be the parent of authority `name`, or None when it can.

    One level only: the parent's root (pathLenConstraint 1) signs the subordinate's
    intermediate, which signs leaves, so chains stay leaf, intermediate, root. A parent
    that is itself a subordinate would need a longer chain (its intermediate is
    pathlen:0 and cannot sign a CA), and refusing it refuses every cycle too.
    """
    if parent == name:
        return f"spec.parentRef.name: CertificateAuthority {name} cannot be its own parent"
    if parent_of_parent is not None:
        return (
            f"spec.parentRef.name: CertificateAuthority {parent} is itself a subordinate (of "
            f"{parent_of_parent}); a parent must be an authority with its own root (one level "
            "of subordinates, so every chain is leaf, intermediate, root)"
        )
    return None


def intermediate_is_current(
    intermediate: ca.CAKeyPair,
    root: ca.CAKeyPair,
    *,
    now: datetime,
    name_constraints: x509.NameConstraints | None = None,
    due_ok: bool = False,
) -> bool:
    """False when the intermediate must be replaced: due (with `due_ok`, only once expired),
    mismatched, not a CA (a hand-edited Secret), not from this root, or carrying other name
    constraints than `name_constraints` (spec.nameConstraints changed)."""
    certificate = intermediate.certificate
    if not keys.key_matches_certificate(intermediate.key, certificate):
        return False
    if ca.ca_problems(certificate):
        return False
    if constraints.of_certificate(certificate) != name_constraints:
        return False
    if not inspect.issued_by(certificate, root.certificate):
        return False
    if due_ok:
        return certificate.not_valid_before_utc <= now < certificate.not_valid_after_utc
    return now < intermediate_renewal_time(certificate)


def parse_key_pair(secret: Mapping[str, Any]) -> ca.CAKeyPair:
    """The certificate and key of a CA Secret; ValueError naming what is wrong."""
    data = secret.get("data") or {}
    name = (secret.get("metadata") or {}).get("name", "?")
    try:
        chain = inspect.load_pem_certificates(base64.b64decode(data.get("tls.crt", "")))
        key = keys.load_private_key(base64.b64decode(data.get("tls.key", "")))
    except ValueError as error:
        raise ValueError(f"Secret {name}: tls.crt/tls.key unreadable ({error})") from None
    if not keys.key_matches_certificate(key, chain[0]):
        raise ValueError(f"Secret {name}: tls.key does not match tls.crt")
    return ca.CAKeyPair(certificate=chain[0], key=key)


def key_pair_secret(
    *, authority: str, role: str, name: str, namespace: str, pair: ca.CAKeyPair
) -> dict[str, Any]:
    """The kubernetes.io/tls Secret storing `pair` (tls.crt, PKCS#8 tls.key) with the CA
    marks of `authority`'s `role`."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {
            "name": name,
            "namespace": namespace,
            **marks_patch(authority=authority, role=role)["metadata"],
        },
        "data": {
            "tls.crt": base64.b64encode(inspect.certificates_to_pem([pair.certificate])).decode(),
            "tls.key": base64.b64encode(keys.encode_private_key(pair.key, "PKCS8")).decode(),
        },
    }


def _describe(certificate: x509.Certificate) -> dict[str, str]:
    return {
        "fingerprint": inspect.fingerprint_sha256(certificate),
        "notAfter": times.format_time(certificate.not_valid_after_utc),
        "subject": certificate.subject.rfc4514_string(),
    }


def ready_status(
    material: AuthorityMaterial,
    *,
    current: Mapping[str, Any] | None,
    generation: int | None,
    now: datetime,
) -> dict[str, Any]:
    """The status of an authority that can sign: Ready=True, the root and intermediate
    (fingerprint, notAfter, subject; the intermediate's renewalTime) and the fingerprints of
    every trusted root. `current` is the status as read, for the conditions' transitions."""
    intermediate = _describe(material.intermediate.certificate)
    intermediate["renewalTime"] = times.format_time(
        intermediate_renewal_time(material.intermediate.certificate)
    )
    return {
        "conditions": conditions.merge_conditions(
            (current or {}).get("conditions"),
            [conditions.Condition(conditions.READY, True, "Ready", "root and intermediate loaded")],
            generation=generation,
            now=now,
        ),
        "root": _describe(material.root.certificate),
        "intermediate": intermediate,
        "trustedRoots": [inspect.fingerprint_sha256(r) for r in material.trusted_roots],
    }


def failed_status(
    reason: str,
    message: str,
    *,
    current: Mapping[str, Any] | None,
    generation: int | None,
    now: datetime,
) -> dict[str, Any]:
    """The status of an authority that cannot sign: Ready=False with `reason` and `message`
    (a merge patch: the rest of the status stays as it was)."""
    return {
        "conditions": conditions.merge_conditions(
            (current or {}).get("conditions"),
            [conditions.Condition(conditions.READY, False, reason, message)],
            generation=generation,
            now=now,
        )
    }
