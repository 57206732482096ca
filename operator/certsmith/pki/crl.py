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


MAX_SERIAL_BITS = 159
"""RFC 5280 4.1.2.2: a serial is a positive integer of at most 20 octets (DER, with its sign
bit), so below 2**159; the `cryptography` CRL builder refuses larger ones."""


def parse_serial(text: str) -> int:
    """A serial number written in hex, colons allowed (as openssl prints it, `0A:1B`), case
    and leading zeros ignored (`00C3...` is how DER shows a serial with its top bit set);
    ValueError unless it is a positive serial of at most 20 octets (RFC 5280 4.1.2.2)."""
    digits = text.replace(":", "").lower()
    if not digits or not all(c in "0123456789abcdef" for c in digits):
        raise ValueError(f"{text!r} is not a serial number in hex")
    value = int(digits, 16)
    if value == 0:
        raise ValueError(f"{text!r} is 0: a serial number is positive (RFC 5280 4.1.2.2)")
    if value.bit_length() > MAX_SERIAL_BITS:
        raise ValueError(
            f"{text!r} is longer than 20 octets (RFC 5280 4.1.2.2): no certificate has it"
        )
    return value


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


def key_id(certificate: x509.Certificate) -> str:
    """The hex key identifier of a CA certificate's public key (RFC 5280 4.2.1.2, method 1:
    SHA-1 of the subjectPublicKey), as its leaves' authority key identifier names it."""
    return x509.SubjectKeyIdentifier.from_public_key(certificate.public_key()).digest.hex()


def authority_key_id(
    signed: x509.Certificate | x509.CertificateRevocationList,
) -> str | None:
    """The hex key identifier of the CA that signed a certificate or a CRL (its authority key
    identifier extension, RFC 5280 4.2.1.1 and 5.2.1); None when it has none."""
    try:
        extension = signed.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    except x509.ExtensionNotFound:
        return None
    identifier = extension.value.key_identifier
    return None if identifier is None else identifier.hex()


def split_pem(pem: str) -> list[x509.CertificateRevocationList]:
    """Every CRL in `pem` (several concatenated, as ca.crl holds them); ValueError when one
    does not parse."""
    marker = "-----BEGIN X509 CRL-----"
    return [x509.load_pem_x509_crl((marker + part).encode()) for part in pem.split(marker)[1:]]
