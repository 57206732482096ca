"""A PodCertificateRequest as the apiserver serves it, read into what signing needs, pure.

Shapes (certificates.k8s.io): `v1` (Kubernetes 1.37) carries the key as
`spec.stubPKCS10Request`, a DER PKCS#10 request; `v1beta1` carries either that (1.37) or
`spec.pkixPublicKey`, a DER SubjectPublicKeyInfo, with `spec.proofOfPossession` (1.35,
1.36). kube-apiserver checks the request's signature or the proof of possession at
creation, so only the public key is read here: nothing else of a CSR (subject, SANs,
extensions) ever reaches a certificate. `[]byte` fields arrive base64-encoded in JSON.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from certsmith.api import names, times
from certsmith.pki import keys

PublicKey = keys.PublicKey

TERMINAL = ("Issued", "Denied", "Failed")
"""The condition types that answer a request; kube-apiserver allows one, never changed."""
DEFAULT_MAX_EXPIRATION = timedelta(seconds=86_400)
"""kube-apiserver's default of spec.maxExpirationSeconds."""
SUPPORTED_CURVES = keys.SUPPORTED_CURVES
SUPPORTED_RSA_BITS = keys.SUPPORTED_RSA_BITS
SUPPORTED_KEYS = (
    "RSA (2048, 3072 or 4096 bits), ECDSA (P-256, P-384, P-521) and Ed25519; "
    "kubelet makes them with the podCertificate source's keyType (ECDSAP256, the smallest "
    "and fastest, works everywhere)"
)

UNSUPPORTED_KEY_TYPE = "UnsupportedKeyType"
"""The reason Kubernetes defines for a key type the signer does not sign."""
INVALID_REQUEST = "InvalidRequest"


class RequestRefused(Exception):
    """The request cannot be signed as it is: `reason` (a condition reason) and the message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class PodCertificateRequest:
    """The parts of a PodCertificateRequest certsmith reads (`parse`)."""

    namespace: str
    name: str
    uid: str
    signer_name: str
    authority: str | None
    """The CertificateAuthority `signer_name` names (api.names.signer_authority), None
    for another signer's request."""
    pod_name: str
    pod_uid: str
    service_account: str
    node_name: str
    max_expiration: timedelta
    annotations: Mapping[str, str] = field(hash=False)
    """spec.unverifiedUserAnnotations."""
    created: datetime | None
    answered: str | None
    """The terminal condition it carries (Issued, Denied, Failed), None while pending."""
    spec: Mapping[str, Any] = field(hash=False, repr=False)
    """The spec as served, for `public_key`."""


def answered(body: Mapping[str, Any]) -> str | None:
    """The terminal condition type of a request body (Issued, Denied, Failed), or None."""
    for condition in (body.get("status") or {}).get("conditions") or ():
        if isinstance(condition, Mapping) and condition.get("type") in TERMINAL:
            return str(condition["type"])
    return None


def is_certsmiths(body: Mapping[str, Any]) -> bool:
    """Whether the request names a certsmith signer (`certsmith.dev/<authority>`)."""
    signer = (body.get("spec") or {}).get("signerName")
    return isinstance(signer, str) and names.signer_authority(signer) is not None


def parse(body: Mapping[str, Any]) -> PodCertificateRequest:
    """The request's parts; its key is read later (`public_key`), only if it gets that far.
    A missing string field reads as "" (kube-apiserver requires them all)."""
    metadata, spec = body.get("metadata") or {}, body.get("spec") or {}

    def text(source: Mapping[str, Any], key: str) -> str:
        value = source.get(key)
        return value if isinstance(value, str) else ""

    seconds = spec.get("maxExpirationSeconds")
    annotations = spec.get("unverifiedUserAnnotations") or {}
    signer = text(spec, "signerName")
    return PodCertificateRequest(
        namespace=text(metadata, "namespace"),
        name=text(metadata, "name"),
        uid=text(metadata, "uid"),
        signer_name=signer,
        authority=names.signer_authority(signer),
        pod_name=text(spec, "podName"),
        pod_uid=text(spec, "podUID"),
        service_account=text(spec, "serviceAccountName"),
        node_name=text(spec, "nodeName"),
        max_expiration=(
            timedelta(seconds=seconds)
            if isinstance(seconds, int) and not isinstance(seconds, bool)
            else DEFAULT_MAX_EXPIRATION
        ),
        annotations={str(k): str(v) for k, v in annotations.items()}
        if isinstance(annotations, Mapping)
        else {},
        created=times.parse_time(metadata.get("creationTimestamp")),
        answered=answered(body),
        spec=spec,
    )


def _der(spec: Mapping[str, Any], key: str) -> bytes | None:
    """The DER bytes of a `[]byte` field (base64 in JSON), None when absent or empty."""
    value = spec.get(key)
    if not value:
        return None
    if not isinstance(value, str):
        raise RequestRefused(INVALID_REQUEST, f"spec.{key} is not base64-encoded bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RequestRefused(INVALID_REQUEST, f"spec.{key} is not base64-encoded bytes") from None


def public_key(request: PodCertificateRequest) -> PublicKey:
    """The key to certify: the subject key of spec.stubPKCS10Request when present, else
    spec.pkixPublicKey. RequestRefused: InvalidRequest when neither holds a readable key,
    UnsupportedKeyType for a key certsmith does not sign (saying which it does)."""
    spec = request.spec
    stub = _der(spec, "stubPKCS10Request")
    try:
        if stub is not None:
            found: Any = x509.load_der_x509_csr(stub).public_key()
            where = "spec.stubPKCS10Request"
        else:
            pkix = _der(spec, "pkixPublicKey")
            if pkix is None:
                raise RequestRefused(
                    INVALID_REQUEST, "the request has neither stubPKCS10Request nor pkixPublicKey"
                )
            found = serialization.load_der_public_key(pkix)
            where = "spec.pkixPublicKey"
    except UnsupportedAlgorithm:
        # Well-formed, of an algorithm cryptography does not know: a key type, not a fault.
        raise RequestRefused(
            UNSUPPORTED_KEY_TYPE,
            f"the key's algorithm is unknown; certsmith signs {SUPPORTED_KEYS}",
        ) from None
    except ValueError as error:
        raise RequestRefused(INVALID_REQUEST, f"the public key cannot be read: {error}") from None
    problem = key_problem(found)
    if problem is not None:
        raise RequestRefused(
            UNSUPPORTED_KEY_TYPE, f"{where} holds {problem}; certsmith signs {SUPPORTED_KEYS}"
        )
    key: PublicKey = found
    return key


def key_problem(key: object) -> str | None:
    """What a public key is when certsmith does not sign that type, e.g. "an RSA 1024-bit
    key"; None for a supported one (SUPPORTED_KEYS; pki.keys.public_key_problem)."""
    return keys.public_key_problem(key)
