"""The webhook's own serving certificate, issued from certsmith's authority.

Every replica serves the webhook, so each issues its own serving certificate from the
default authority's intermediate (the key never leaves the replica); the authority's
trusted roots are the installed webhook configurations' caBundle (webhook_config.py).
Pure: the caller writes the files and the caBundle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from cryptography import x509

from certsmith.api import model
from certsmith.authorities.authority import AuthorityMaterial
from certsmith.pki import ca, inspect, issue, keys

SERVING_LIFETIME = timedelta(days=30)
# How often every replica looks at the default authority, in seconds. Within a root
# rotation's propagationDelay (default 5 min) each has moved its certificate to the new
# intermediate, and the caBundle already trusted the new root before that.
CHECK_PERIOD = 15.0


@dataclass(frozen=True)
class ServingState:
    """What this replica serves, as far as the authority is concerned."""

    issuer: x509.Certificate | None = None
    renew_at: datetime | None = None


@dataclass(frozen=True)
class ServingPlan:
    """What to do now: issue a new serving certificate."""

    reissue: bool


class ServingCertificate(NamedTuple):
    """A serving certificate as the webhook server loads it (PEM files)."""

    chain_pem: bytes
    """The leaf, then the intermediate that signed it."""
    key_pem: bytes
    """The leaf's unencrypted PKCS#8 private key."""
    renew_at: datetime
    """2/3 into the leaf's validity."""


class PlaceholderCertificate(NamedTuple):
    """A certificate nobody trusts, and its key, as PEM files (`placeholder_certificate`)."""

    chain_pem: bytes
    key_pem: bytes


def plan(state: ServingState, *, material: AuthorityMaterial, now: datetime) -> ServingPlan:
    """Re-issue when the signing intermediate moved (root rotation) or renewal is due."""
    reissue = (
        state.issuer is None
        or state.issuer != material.intermediate.certificate
        or state.renew_at is None
        or now >= state.renew_at
    )
    return ServingPlan(reissue=reissue)


def serving_certificate(
    material: AuthorityMaterial, *, dns_names: Sequence[str], now: datetime
) -> ServingCertificate:
    """A fresh ECDSA P-256 server certificate for the webhook, for `dns_names` and
    127.0.0.1, valid SERVING_LIFETIME (never longer than the intermediate), signed by the
    authority's intermediate."""
    spec = model.parse_certificate_spec(
        {
            "secretName": "certsmith-webhook",
            "dnsNames": list(dns_names),
            "ipAddresses": ["127.0.0.1"],
            "duration": model.format_duration(SERVING_LIFETIME),
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
    return ServingCertificate(chain, keys.encode_private_key(key, "PKCS8"), renew_at)


def usable_files_until(chain_pem: bytes, now: datetime) -> datetime | None:
    """When the serving certificate an earlier run wrote (`chain_pem`, leaf first) stops
    being valid, or None if it is unreadable or not valid at `now`."""
    try:
        chain = inspect.load_pem_certificates(chain_pem)
    except ValueError:
        return None
    until = min(certificate.not_valid_after_utc for certificate in chain)
    if any(now < certificate.not_valid_before_utc for certificate in chain) or now >= until:
        return None
    return until


def placeholder_certificate(*, dns_names: Sequence[str], now: datetime) -> PlaceholderCertificate:
    """A serving certificate under a throwaway CA nobody trusts: the webhook server needs a
    certificate to start, and the apiserver (which trusts only the default authority's
    roots) refuses this one, as it would a closed port, until the authority can issue the
    real one. Nothing is signed with an authority that cannot sign."""
    throwaway = ca.build_root(
        common_name="certsmith webhook placeholder (trusted by nobody)",
        now=now,
        lifetime=timedelta(days=1),
    )
    material = AuthorityMaterial(
        name="placeholder",
        root=throwaway,
        intermediate=throwaway,
        trusted_roots=(throwaway.certificate,),
    )
    issued = serving_certificate(material, dns_names=dns_names, now=now)
    return PlaceholderCertificate(issued.chain_pem, issued.key_pem)
