"""The webhook's own serving certificate, issued from certsmith's authority."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from certsmith import model
from certsmith.authority import AuthorityMaterial
from certsmith.pki import inspect, issue, keys

SERVING_LIFETIME = "720h"
# How often every replica looks at the default authority. Within a root rotation's
# propagationDelay (default 5 min) each has moved its certificate to the new intermediate,
# and the caBundle already trusted the new root before that.
CHECK_PERIOD = 15.0


@dataclass(frozen=True)
class ServingState:
    """What this replica serves and registered, as far as the authority is concerned."""

    issuer: x509.Certificate | None = None
    renew_at: datetime | None = None
    registered_bundle: bytes | None = None


@dataclass(frozen=True)
class ServingPlan:
    reissue: bool
    register: bool


def plan(state: ServingState, *, material: AuthorityMaterial, now: datetime) -> ServingPlan:
    """Re-issue when the signing intermediate moved (root rotation) or renewal is due;
    register the webhooks again when the trusted roots changed."""
    reissue = (
        state.issuer is None
        or state.issuer != material.intermediate.certificate
        or state.renew_at is None
        or now >= state.renew_at
    )
    return ServingPlan(reissue=reissue, register=state.registered_bundle != material.bundle_pem)


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
