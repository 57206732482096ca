"""The webhook's own serving certificate, issued from certsmith's authority."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from certsmith import model
from certsmith.authority import AuthorityMaterial
from certsmith.pki import inspect, issue, keys

SERVING_LIFETIME = "720h"


def webhook_dns_names(service: str, namespace: str) -> list[str]:
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
        "localhost",
    ]


def serving_certificate(
    material: AuthorityMaterial, *, dns_names: Sequence[str], now: datetime
) -> tuple[bytes, bytes, datetime]:
    """(chain PEM, key PEM, renewal time) of a server certificate for the webhook."""
    spec = model.parse_certificate_spec(
        {
            "secretName": "certsmith-webhook",
            "dnsNames": list(dns_names),
            "ipAddresses": ["127.0.0.1"],
            "duration": SERVING_LIFETIME,
            "usages": ["digital signature", "server auth"],
        }
    )
    key = keys.generate_private_key(spec.private_key)
    leaf = issue.build_leaf(
        spec=spec, public_key=key.public_key(), issuer=material.intermediate, now=now
    )
    chain = inspect.certificates_to_pem([leaf, material.intermediate.certificate])
    renew_at = (
        leaf.not_valid_before_utc + (leaf.not_valid_after_utc - leaf.not_valid_before_utc) * 2 / 3
    )
    return chain, keys.encode_private_key(key, "PKCS8"), renew_at
