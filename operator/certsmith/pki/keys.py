"""Generate, encode and load private keys, and check them against a certificate or a spec."""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from certsmith.api.model import PrivateKeySpec

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

SUPPORTED_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
SUPPORTED_RSA_BITS = (2048, 3072, 4096)
"""The keys certsmith certifies when it does not make them itself (pod certificates,
CertificateRequests): the key types and sizes a Certificate's privateKey may ask for."""

_CURVES: dict[int, type[ec.EllipticCurve]] = {
    256: ec.SECP256R1,
    384: ec.SECP384R1,
    521: ec.SECP521R1,
}
_FORMATS = {
    "PKCS8": serialization.PrivateFormat.PKCS8,
    # "RSA PRIVATE KEY" for RSA and SEC1 "EC PRIVATE KEY" for ECDSA, as cert-manager writes them.
    "PKCS1": serialization.PrivateFormat.TraditionalOpenSSL,
}


def generate_private_key(spec: PrivateKeySpec) -> PrivateKey:
    """A fresh key from OS randomness; raises ValueError for an unknown algorithm or size."""
    if spec.algorithm == "Ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if spec.algorithm == "ECDSA" and spec.size in _CURVES:
        return ec.generate_private_key(_CURVES[spec.size]())
    if spec.algorithm == "RSA" and spec.size is not None:  # cryptography rejects weak sizes
        return rsa.generate_private_key(public_exponent=65537, key_size=spec.size)
    raise ValueError(f"unsupported private key {spec.algorithm} {spec.size}")


def encode_private_key(key: PrivateKey, encoding: str) -> bytes:
    """Unencrypted PEM as "PKCS8" or "PKCS1"; Ed25519 has no PKCS1 form (ValueError)."""
    if encoding not in _FORMATS or (
        encoding == "PKCS1" and isinstance(key, ed25519.Ed25519PrivateKey)
    ):
        raise ValueError(f"cannot encode a {type(key).__name__} as {encoding}")
    return key.private_bytes(
        serialization.Encoding.PEM, _FORMATS[encoding], serialization.NoEncryption()
    )


def load_private_key(pem: bytes) -> PrivateKey:
    """Parse an unencrypted PEM key of a supported type, or raise ValueError."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:  # TypeError: encrypted PEM
        raise ValueError(f"not a usable PEM private key: {error}") from error
    if not isinstance(key, PrivateKey):
        raise ValueError(f"unsupported private key type {type(key).__name__}")
    return key


def key_matches_certificate(key: PrivateKey, cert: x509.Certificate) -> bool:
    """True when the certificate carries this key's public half."""
    return _spki(key.public_key()) == _spki(cert.public_key())


def key_matches_spec(key: PrivateKey, spec: PrivateKeySpec) -> bool:
    """True when the key has the algorithm and size the spec asks for."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return spec.algorithm == "ECDSA" and key.curve.key_size == spec.size
    if isinstance(key, rsa.RSAPrivateKey):
        return spec.algorithm == "RSA" and key.key_size == spec.size
    return spec.algorithm == "Ed25519"


def signature_hash(key: PrivateKey) -> hashes.SHA256 | None:
    """The digest to sign with: SHA-256, or None for Ed25519, which hashes internally."""
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _spki(public_key: CertificatePublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_problem(key: object) -> str | None:
    """What a public key is when certsmith does not certify that type, e.g. "an RSA
    1024-bit key"; None for a supported one (RSA SUPPORTED_RSA_BITS, ECDSA on
    SUPPORTED_CURVES, Ed25519)."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        return None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name in SUPPORTED_CURVES:
            return None
        return f"an ECDSA key on curve {key.curve.name}"
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size in SUPPORTED_RSA_BITS:
            return None
        return f"an RSA {key.key_size}-bit key"
    return f"a key of type {type(key).__name__.removeprefix('_').replace('PublicKey', '')}"
