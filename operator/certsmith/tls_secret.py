"""The kubernetes.io/tls Secret of a Certificate: its desired shape and what an existing one holds.

Labels let the operator watch only its own Secrets; annotations record what was issued
so that a later reconcile can tell "spec changed" from "nothing to do" without a database.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from certsmith.pki import inspect, keys

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "certsmith"
CERTIFICATE_LABEL = "certsmith.dev/certificate"

CERTIFICATE_NAME_ANNOTATION = "certsmith.dev/certificate-name"
SERIAL_ANNOTATION = "certsmith.dev/serial-number"
NOT_AFTER_ANNOTATION = "certsmith.dev/not-after"
ISSUER_ANNOTATION = "certsmith.dev/issuer-fingerprint"
SPEC_FINGERPRINT_ANNOTATION = "certsmith.dev/spec-fingerprint"
REVISION_ANNOTATION = "certsmith.dev/revision"
AUTHORITY_ANNOTATION = "certsmith.dev/authority"
# On a Certificate: ask for a re-issue now. On its Secret: the last request honoured.
RENEWAL_REQUEST_ANNOTATION = "certsmith.dev/renew-requested-at"

OWNED_ANNOTATIONS = (
    CERTIFICATE_NAME_ANNOTATION,
    SERIAL_ANNOTATION,
    NOT_AFTER_ANNOTATION,
    ISSUER_ANNOTATION,
    SPEC_FINGERPRINT_ANNOTATION,
    REVISION_ANNOTATION,
    AUTHORITY_ANNOTATION,
)

TLS_SECRET_TYPE = "kubernetes.io/tls"


@dataclass(frozen=True)
class SecretContents:
    """What an existing Secret holds, parsed; fields are None where data is missing or bad."""

    name: str
    resource_version: str
    secret_type: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    leaf: x509.Certificate | None
    intermediates: tuple[x509.Certificate, ...]
    key: keys.PrivateKey | None
    ca_pem: bytes | None
    problems: tuple[str, ...] = field(default=())

    @property
    def owner(self) -> str | None:
        """The Certificate this Secret was issued for, by label or annotation."""
        return self.labels.get(CERTIFICATE_LABEL) or self.annotations.get(
            CERTIFICATE_NAME_ANNOTATION
        )

    @property
    def revision(self) -> int:
        try:
            return int(self.annotations.get(REVISION_ANNOTATION, "0"))
        except ValueError:
            return 0


def _decode(data: Mapping[str, str], key: str) -> bytes | None:
    value = data.get(key)
    if not value:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        return None


def parse_secret(secret: Mapping[str, Any]) -> SecretContents:
    """Parse a Secret as read from the API (data base64-encoded). Never raises on bad data."""
    metadata = secret.get("metadata") or {}
    data = secret.get("data") or {}
    problems: list[str] = []
    leaf: x509.Certificate | None = None
    intermediates: tuple[x509.Certificate, ...] = ()
    key: keys.PrivateKey | None = None

    chain_pem = _decode(data, "tls.crt")
    if chain_pem is None:
        problems.append("tls.crt is missing")
    else:
        try:
            chain = inspect.load_pem_certificates(chain_pem)
            leaf, intermediates = chain[0], tuple(chain[1:])
        except ValueError:
            problems.append("tls.crt does not hold a PEM certificate")

    key_pem = _decode(data, "tls.key")
    if key_pem is None:
        problems.append("tls.key is missing")
    else:
        try:
            key = keys.load_private_key(key_pem)
        except ValueError:
            problems.append("tls.key does not hold a supported private key")

    return SecretContents(
        name=str(metadata.get("name", "")),
        resource_version=str(metadata.get("resourceVersion", "")),
        secret_type=str(secret.get("type", "")),
        labels=dict(metadata.get("labels") or {}),
        annotations=dict(metadata.get("annotations") or {}),
        leaf=leaf,
        intermediates=intermediates,
        key=key,
        ca_pem=_decode(data, "ca.crt"),
        problems=tuple(problems),
    )


@dataclass(frozen=True)
class IssuedMaterial:
    """What goes into a Secret after issuance."""

    leaf: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    key_pem: bytes
    ca_pem: bytes
    issuer_fingerprint: str
    spec_fingerprint: str
    revision: int
    authority: str
    renewal_request: str | None = None


def desired_labels(certificate_name: str, template: Mapping[str, str]) -> dict[str, str]:
    # Ours are applied last: a template must not be able to hide a Secret from the operator.
    return {**template, MANAGED_BY_LABEL: MANAGED_BY_VALUE, CERTIFICATE_LABEL: certificate_name}


def desired_annotations(
    *,
    certificate_name: str,
    template: Mapping[str, str],
    leaf: x509.Certificate,
    issuer_fingerprint: str,
    spec_fingerprint: str,
    revision: int,
    authority: str,
    renewal_request: str | None = None,
) -> dict[str, str]:
    honoured = {RENEWAL_REQUEST_ANNOTATION: renewal_request} if renewal_request else {}
    return {
        **template,
        **honoured,
        CERTIFICATE_NAME_ANNOTATION: certificate_name,
        SERIAL_ANNOTATION: inspect.serial_hex(leaf),
        NOT_AFTER_ANNOTATION: leaf.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        ISSUER_ANNOTATION: issuer_fingerprint,
        SPEC_FINGERPRINT_ANNOTATION: spec_fingerprint,
        REVISION_ANNOTATION: str(revision),
        AUTHORITY_ANNOTATION: authority,
    }


def build_secret(
    *,
    name: str,
    namespace: str,
    certificate_name: str,
    labels_template: Mapping[str, str],
    annotations_template: Mapping[str, str],
    material: IssuedMaterial,
) -> dict[str, Any]:
    """The full Secret body to create or replace."""
    chain = inspect.certificates_to_pem((material.leaf, *material.intermediates))
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": TLS_SECRET_TYPE,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": desired_labels(certificate_name, labels_template),
            "annotations": desired_annotations(
                certificate_name=certificate_name,
                template=annotations_template,
                leaf=material.leaf,
                issuer_fingerprint=material.issuer_fingerprint,
                spec_fingerprint=material.spec_fingerprint,
                revision=material.revision,
                authority=material.authority,
                renewal_request=material.renewal_request,
            ),
        },
        "data": {
            "tls.crt": base64.b64encode(chain).decode(),
            "tls.key": base64.b64encode(material.key_pem).decode(),
            "ca.crt": base64.b64encode(material.ca_pem).decode(),
        },
    }


def metadata_patch(
    contents: SecretContents,
    *,
    desired_labels: Mapping[str, str],
    desired_annotations: Mapping[str, str],
    ca_pem: bytes | None = None,
) -> dict[str, Any] | None:
    """A merge patch restoring drifted labels, annotations and ca.crt, or None if none drifted.

    Keys the user added are left alone; only the ones certsmith owns are restored.
    """
    labels = {k: v for k, v in desired_labels.items() if contents.labels.get(k) != v}
    annotations = {k: v for k, v in desired_annotations.items() if contents.annotations.get(k) != v}
    stale_bundle = ca_pem is not None and contents.ca_pem != ca_pem
    if not labels and not annotations and not stale_bundle:
        return None
    patch: dict[str, Any] = {"metadata": {}}
    if labels:
        patch["metadata"]["labels"] = labels
    if annotations:
        patch["metadata"]["annotations"] = annotations
    if stale_bundle:
        assert ca_pem is not None
        patch["data"] = {"ca.crt": base64.b64encode(ca_pem).decode()}
    return patch
