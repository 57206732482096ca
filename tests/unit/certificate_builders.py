"""Certificates, their Secrets and their signer as the status and issuance tests need them.

Everything at a fixed `NOW` (2026-06-01 12:00 UTC), for Certificate shop/web whose Secret
is web-tls, signed by the `root` and `intermediate` fixtures of conftest.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from certsmith.api import model
from certsmith.authorities.authority import AuthorityMaterial
from certsmith.certificates import policies, status, tls_secret
from certsmith.pki import ca, issue, keys

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
NAME, NAMESPACE, SECRET = "web", "shop", "web-tls"
AUTHORITY = "cluster-root"


def spec_of(**fields: Any) -> model.CertificateSpec:
    return model.parse_certificate_spec(
        {"secretName": SECRET, "dnsNames": ["web.shop.svc"], "issuerRef": {"name": AUTHORITY}}
        | fields
    )


def signer(root: ca.CAKeyPair, intermediate: ca.CAKeyPair) -> AuthorityMaterial:
    return AuthorityMaterial(
        name=AUTHORITY, root=root, intermediate=intermediate, trusted_roots=(root.certificate,)
    )


def secret_body(
    spec: model.CertificateSpec,
    root: ca.CAKeyPair,
    intermediate: ca.CAKeyPair,
    *,
    issued_at: datetime = NOW - timedelta(minutes=10),
    revision: int = 1,
    owner: str = NAME,
    ca_pem: bytes | None = None,
    issuer_fingerprint: str | None = None,
    resource_version: str = "7",
) -> dict[str, Any]:
    """The Secret certsmith writes for Certificate shop/`owner`, as the apiserver returns it;
    `ca_pem` and `issuer_fingerprint` default to the signer's."""
    key = keys.generate_private_key(spec.private_key)
    leaf = issue.build_leaf(
        spec=spec, public_key=key.public_key(), issuer=intermediate, now=issued_at
    )
    body = tls_secret.build_secret(
        name=spec.secret_name,
        namespace=NAMESPACE,
        certificate_name=owner,
        labels_template=spec.secret_labels,
        annotations_template=spec.secret_annotations,
        material=tls_secret.IssuedMaterial(
            leaf=leaf,
            intermediates=(intermediate.certificate,),
            key_pem=keys.encode_private_key(key, "PKCS8"),
            ca_pem=signer(root, intermediate).bundle_pem if ca_pem is None else ca_pem,
            issuer_fingerprint=issuer_fingerprint or signer(root, intermediate).issuer_fingerprint,
            spec_fingerprint=model.issuance_fingerprint(spec),
            revision=revision,
            authority=AUTHORITY,
        ),
    )
    body["metadata"]["resourceVersion"] = resource_version
    return body


def contents_of(body: dict[str, Any]) -> tls_secret.SecretContents:
    return tls_secret.parse_secret(body)


def judged(
    spec: model.CertificateSpec,
    secret: tls_secret.SecretContents | None,
    root: ca.CAKeyPair,
    *,
    now: datetime = NOW,
) -> policies.Input:
    return policies.Input(
        certificate_name=NAME,
        namespace=NAMESPACE,
        spec=spec,
        secret=secret,
        authority=policies.AuthorityView(name=AUTHORITY, trusted_roots=(root.certificate,)),
        now=now,
    )


def observed(
    current: dict[str, Any] | None = None,
    *,
    generation: int = 3,
    annotations: dict[str, str] | None = None,
    created: str = "2026-06-01T11:00:00Z",
    uid: str = "uid-of-web",
) -> status.Observed:
    """Certificate shop/web as read, with status `current`."""
    return status.Observed.from_body(
        {
            "metadata": {
                "namespace": NAMESPACE,
                "name": NAME,
                "uid": uid,
                "generation": generation,
                "creationTimestamp": created,
                "annotations": annotations or {},
            },
            "status": current or {},
        }
    )
