"""Build and read X.509 v2 certificate revocation lists (RFC 5280 section 5)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certsmith.pki.ca import CAKeyPair
from certsmith.pki.keys import signature_hash

REASONS: dict[str, x509.ReasonFlags] = {
    "unspecified": x509.ReasonFlags.unspecified,
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "cACompromise": x509.ReasonFlags.ca_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
    "privilegeWithdrawn": x509.ReasonFlags.privilege_withdrawn,
}
"""The CRLReason names (RFC 5280 5.3.1) certsmith accepts. certificateHold and
removeFromCRL are left out on purpose: a revocation is final here (a held certificate
cannot be released), and aACompromise concerns attribute certificates."""


MAX_SERIAL_HEX = 40
"""RFC 5280 4.1.2.2: a serial is at most 20 octets."""


def parse_serial(text: str) -> int:
    """A serial number written in hex, colons allowed (as openssl prints it, `0A:1B`) and
    case ignored; ValueError unless it is 1 to MAX_SERIAL_HEX hex digits."""
    digits = text.replace(":", "").lower()
    hexadecimal = all(c in "0123456789abcdef" for c in digits)
    if not digits or len(digits) > MAX_SERIAL_HEX or not hexadecimal:
        raise ValueError(f"{text!r} is not a serial number in hex (1-{MAX_SERIAL_HEX} digits)")
    return int(digits, 16)


def reason_problem(reason: str) -> str | None:
    """Why `reason` is not a revocation reason certsmith accepts (REASONS), or None."""
    if reason in REASONS:
        return None
    return f"{reason!r} is not a revocation reason; one of {', '.join(REASONS)}"


@dataclass(frozen=True)
class Revoked:
    """One CRL entry: a serial, when it was revoked, and why (a REASONS name)."""

    serial: int
    revoked_at: datetime
    reason: str


def build_crl(
    *,
    issuer: CAKeyPair,
    entries: Iterable[Revoked],
    number: int,
    this_update: datetime,
    next_update: datetime,
) -> x509.CertificateRevocationList:
    """A v2 CRL signed by `issuer` (the CA that signed the revoked certificates: RFC 5280
    5.1.2.3, a CRL's issuer is the certificates' issuer), with the CRL number extension
    (5.2.3, `number` must grow with each CRL), the issuer's authority key identifier (5.2.1)
    and one reason code per entry (5.3.1; `unspecified` is written as no reason code, as the
    RFC recommends). Times are UTC, whole seconds."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(this_update.replace(microsecond=0))
        .next_update(next_update.replace(microsecond=0))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    for entry in sorted(entries, key=lambda e: e.serial):
        revoked = (
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial)
            .revocation_date(entry.revoked_at.replace(microsecond=0))
        )
        if entry.reason != "unspecified":
            revoked = revoked.add_extension(x509.CRLReason(REASONS[entry.reason]), critical=False)
        builder = builder.add_revoked_certificate(revoked.build())
    return builder.sign(issuer.key, signature_hash(issuer.key))


def to_pem(crl: x509.CertificateRevocationList) -> str:
    """The CRL as PEM text (`-----BEGIN X509 CRL-----`)."""
    return crl.public_bytes(serialization.Encoding.PEM).decode()


def to_der(pem: str) -> bytes:
    """The DER of the first CRL in `pem` (what a CRL distribution point serves, RFC 5280
    4.2.1.13); ValueError when `pem` holds none."""
    return x509.load_pem_x509_crl(pem.encode()).public_bytes(serialization.Encoding.DER)
