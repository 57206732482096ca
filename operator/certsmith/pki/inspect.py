"""Read certificates from PEM, identify them, and verify a leaf's chain to trusted roots."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509 import verification

from certsmith.pki import name_constraints

MAX_PATH_LENGTH = 8
"""Certificates in a path from leaf to root (ours have 2 or 3); bounds the path search."""

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
    verifier's words), or None when it does.

    Name constraints (RFC 5280 4.2.1.10) on the path are judged by
    `name_constraints.leaf_violations`, the rules certsmith signs by and OpenSSL and Go
    enforce, not by cryptography's verifier: that one refuses URI constraints ("unsupported
    name constraint") and leading-period DNS constraints ("malformed DNS name constraint"),
    both valid RFC 5280 forms OpenSSL and Go accept. So when it refuses a path carrying
    name constraints, the path's signatures are checked here and everything else (validity,
    CA flags, key usage, extensions) by the verifier on a copy of the path without the
    extension, re-signed by throwaway keys.
    """
    if not roots:  # Store() refuses to be empty, and nothing chains to no root anyway
        return "no trusted root"
    error = _verifier_error(leaf, intermediates, roots, now)
    constrained = any(
        name_constraints.of_certificate(c) is not None for c in (*intermediates, *roots)
    )
    if not constrained:
        return error
    path = _signed_path(leaf, intermediates, roots)
    if path is None:
        return error or "no path of valid signatures from the leaf to a trusted root"
    if error is not None:
        try:
            mirror = _without_name_constraints(path)
        except ValueError as problem:
            return str(problem)
        error = _verifier_error(mirror[0], mirror[1:-1], mirror[-1:], now)
        if error is not None:
            return error
    return _name_constraint_error(path)


def _verifier_error(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    now: datetime,
) -> str | None:
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


def _signed_path(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
) -> list[x509.Certificate] | None:
    """[leaf, ..., root]: each certificate signed by the next, the last one of `roots`;
    None when there is no such path of at most MAX_PATH_LENGTH certificates."""
    path = [leaf]

    def extend() -> bool:
        if path[-1] in roots:
            return True
        if len(path) >= MAX_PATH_LENGTH:
            return False
        for candidate in (*intermediates, *roots):
            if candidate not in path and issued_by(path[-1], candidate):
                path.append(candidate)
                if extend():
                    return True
                path.pop()
        return False

    return path if extend() else None


def _without_name_constraints(path: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """`path` with the NameConstraints extension left out of every certificate, each CA's
    key replaced by a throwaway one that signs the certificate below (the real signatures
    were checked by `_signed_path`); every other field and extension kept."""
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in path]
    mirror = []
    for index, certificate in enumerate(path):
        builder = (
            x509.CertificateBuilder()
            .subject_name(certificate.subject)
            .issuer_name(certificate.issuer)
            .serial_number(certificate.serial_number)
            .not_valid_before(certificate.not_valid_before_utc)
            .not_valid_after(certificate.not_valid_after_utc)
            # The leaf keeps its own key, whose kind and size the verifier judges.
            .public_key(keys[index].public_key() if index else _public_key(certificate))
        )
        for extension in certificate.extensions:
            if not isinstance(extension.value, x509.NameConstraints):
                builder = builder.add_extension(extension.value, critical=extension.critical)
        # Each certificate signed by the next one's key, the root by its own.
        mirror.append(builder.sign(keys[min(index + 1, len(path) - 1)], hashes.SHA256()))
    return mirror


_CERTIFICATE_KEY_TYPES = (
    dsa.DSAPublicKey,
    rsa.RSAPublicKey,
    ec.EllipticCurvePublicKey,
    ed25519.Ed25519PublicKey,
    ed448.Ed448PublicKey,
    x25519.X25519PublicKey,
    x448.X448PublicKey,
)


def _public_key(certificate: x509.Certificate) -> CertificatePublicKeyTypes:
    key = certificate.public_key()
    if not isinstance(key, _CERTIFICATE_KEY_TYPES):
        raise ValueError(f"a certificate key of type {type(key).__name__} cannot be verified")
    return key


def _name_constraint_error(path: Sequence[x509.Certificate]) -> str | None:
    """The first name of the leaf (path[0]) outside the constraints of a CA above it."""
    try:
        names: Sequence[x509.GeneralName] = list(
            path[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        )
    except x509.ExtensionNotFound:
        names = []
    for authority in path[1:]:
        problems = name_constraints.leaf_violations(authority, names)
        if problems:
            return f"name constraints: {problems[0]}"
    return None
