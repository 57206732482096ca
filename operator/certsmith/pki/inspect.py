"""Read certificates from PEM, identify them, and verify a leaf's chain to trusted roots."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import verification

# Our leaves may lack a SAN (commonName only) and may carry any EKU (serverAuth, clientAuth,
# both, codeSigning, none), while the WebPKI end-entity defaults demand a SAN and the verifier's
# EKU. Chain validity is what we check here, not fitness for one purpose, so those two are
# relaxed; everything else (signatures, validity, CA constraints, key usage) stays WebPKI.
_LEAF_POLICY = (
    verification.ExtensionPolicy.webpki_defaults_ee()
    .may_be_present(x509.SubjectAlternativeName, verification.Criticality.AGNOSTIC, None)
    .may_be_present(x509.ExtendedKeyUsage, verification.Criticality.AGNOSTIC, None)
)


def load_pem_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle, in order; ValueError when there is none or it is bad."""
    return x509.load_pem_x509_certificates(data)


def certificates_to_pem(certs: Iterable[x509.Certificate]) -> bytes:
    """The certificates as one PEM bundle, in order (RFC 7468 CERTIFICATE blocks)."""
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)


def fingerprint_sha256(cert: x509.Certificate) -> str:
    """Lowercase hex of the SHA-256 of the DER certificate (as `openssl x509 -fingerprint
    -sha256` prints it, without colons)."""
    return cert.fingerprint(hashes.SHA256()).hex()


def serial_hex(cert: x509.Certificate) -> str:
    """Lowercase hex of whole bytes, as openssl, nginx and curl print it (leading 0 kept)."""
    digits = format(cert.serial_number, "x")
    return digits.zfill(len(digits) + len(digits) % 2)


def issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether `issuer`'s key signed `certificate` (names and signature checked)."""
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def chain_is_valid(
    *,
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    now: datetime,
) -> bool:
    """True if `leaf` chains via `intermediates` to one of `roots`, all valid at `now`."""
    return chain_error(leaf=leaf, intermediates=intermediates, roots=roots, now=now) is None


def chain_error(
    *,
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    now: datetime,
) -> str | None:
    """Why `leaf` does not chain via `intermediates` to one of `roots` at `now` (the
    verifier's words), or None when it does."""
    if not roots:  # Store() refuses to be empty, and nothing chains to no root anyway
        return "no trusted root"
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store(list(roots)))
        .time(now)
        .extension_policies(
            ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(), ee_policy=_LEAF_POLICY
        )
        # The client verifier checks no hostname, so it fits leaves of every kind.
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, list(intermediates))
    except verification.VerificationError as error:
        return str(error)
    return None
