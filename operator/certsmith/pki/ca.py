"""Build the self-signed root CA and the intermediate CA that signs leaf certificates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certsmith.pki.keys import PrivateKey, signature_hash

# Certificates start this long before `now` so peers whose clocks lag a little accept them.
BACKDATE = timedelta(minutes=1)


def signed_at(certificate: x509.Certificate) -> datetime:
    """When certsmith signed `certificate` (UTC): everything it signs starts BACKDATE early."""
    return certificate.not_valid_before_utc + BACKDATE


_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


@dataclass(frozen=True)
class CAKeyPair:
    certificate: x509.Certificate
    key: PrivateKey


def build_root(*, common_name: str, now: datetime, lifetime: timedelta) -> CAKeyPair:
    """A self-signed ECDSA P-256 root; path length 1 allows one level of intermediates."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _common_name(common_name)
    start = now.replace(microsecond=0)
    certificate = _sign_ca(
        subject=name,
        public_key=key.public_key(),
        issuer_name=name,
        issuer_key=key,
        path_length=1,
        not_before=start - BACKDATE,
        not_after=start + lifetime,
    )
    return CAKeyPair(certificate=certificate, key=key)


def build_intermediate(
    *, issuer: CAKeyPair, common_name: str, now: datetime, lifetime: timedelta
) -> CAKeyPair:
    """An ECDSA P-256 CA that may sign only leaves; it never outlives its issuer."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = now.replace(microsecond=0)
    certificate = _sign_ca(
        subject=_common_name(common_name),
        public_key=key.public_key(),
        issuer_name=issuer.certificate.subject,
        issuer_key=issuer.key,
        path_length=0,
        not_before=start - BACKDATE,
        # A chain is only as valid as its issuer, so never outlive it.
        not_after=min(start + lifetime, issuer.certificate.not_valid_after_utc),
    )
    return CAKeyPair(certificate=certificate, key=key)


def _common_name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _sign_ca(
    *,
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer_name: x509.Name,
    issuer_key: PrivateKey,
    path_length: int,
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    return builder.sign(issuer_key, signature_hash(issuer_key))
