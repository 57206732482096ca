"""PKCS#10 requests for the CertificateRequest tests of every tier: made with cryptography,
as a device would with `openssl req`, and the spec.request value (base64 of the PEM)."""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import NameOID

Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def ecdsa_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def csr_pem(
    key: Key,
    *,
    common_name: str | None = None,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    uris: Sequence[str] = (),
    emails: Sequence[str] = (),
    other_names: Sequence[x509.GeneralName] = (),
    extensions: Sequence[x509.ExtensionType] = (),
) -> bytes:
    """A PEM CSR signed by `key` (SHA-256; none for Ed25519)."""
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(subject))
    names: list[x509.GeneralName] = [
        *(x509.DNSName(n) for n in dns_names),
        *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses),
        *(x509.UniformResourceIdentifier(u) for u in uris),
        *(x509.RFC822Name(e) for e in emails),
        *other_names,
    ]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM)


def tampered(pem: bytes, old: bytes, new: bytes) -> bytes:
    """`pem` with `old` replaced by `new` (same length) inside the signed part: still a
    well-formed CSR, whose signature no longer verifies."""
    der = x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)
    assert len(old) == len(new) and der.count(old) == 1
    changed = der.replace(old, new)
    body = base64.encodebytes(changed).decode().replace("\n", "")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return (
        "-----BEGIN CERTIFICATE REQUEST-----\n"
        + "\n".join(lines)
        + "\n-----END CERTIFICATE REQUEST-----\n"
    ).encode()


def request_value(pem: bytes) -> str:
    """spec.request: the PEM, base64-encoded (`base64 -w0 device.csr`)."""
    return base64.b64encode(pem).decode()


def request_body(name: str, namespace: str, pem: bytes, **spec: Any) -> dict[str, Any]:
    """A CertificateRequest for `pem`, with more spec fields (duration, usages, issuerRef)."""
    return {
        "apiVersion": "certsmith.dev/v1alpha1",
        "kind": "CertificateRequest",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"request": request_value(pem), **spec},
    }


# --- CSRs cryptography will not build: DER by hand (RFC 2986), signed with the given key ---

SAN_OID, KEY_USAGE_OID = "2.5.29.17", "2.5.29.15"
SIGNATURE_OIDS = {
    "sha256": ("1.2.840.10045.4.3.2", "1.2.840.113549.1.1.11"),  # (ECDSA, RSA)
    "sha1": ("1.2.840.10045.4.1", "1.2.840.113549.1.1.5"),
    "md5": (None, "1.2.840.113549.1.1.4"),
}


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def tlv(tag: int, content: bytes) -> bytes:
    """One DER element: tag, length, content."""
    return bytes([tag]) + _length(len(content)) + content


def der_oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    out = bytes([40 * parts[0] + parts[1]])
    for value in parts[2:]:
        chunk = [value & 0x7F]
        value >>= 7
        while value:
            chunk.insert(0, 0x80 | (value & 0x7F))
            value >>= 7
        out += bytes(chunk)
    return tlv(0x06, out)


def der_extension(oid: str, value: bytes) -> bytes:
    """An Extension (not critical) whose extnValue is `value` (DER)."""
    return tlv(0x30, der_oid(oid) + tlv(0x04, value))


def der_san_dns(*names: str) -> bytes:
    """A subjectAltName extension of DNS names."""
    return der_extension(SAN_OID, tlv(0x30, b"".join(tlv(0x82, n.encode()) for n in names)))


DER_KEY_USAGE = der_extension(KEY_USAGE_OID, tlv(0x03, b"\x07\x80"))
"""A keyUsage extension (digitalSignature)."""


def crafted_csr(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    *,
    common_name: str,
    extensions: Sequence[bytes] = (),
    version: int = 0,
    hash_name: str = "sha256",
) -> bytes:
    """A PEM CSR assembled by hand: `extensions` (DER, duplicates allowed) in its
    extensionRequest, the `version` field as given, signed with `hash_name`."""
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    subject = tlv(
        0x30,
        tlv(0x31, tlv(0x30, der_oid("2.5.4.3") + tlv(0x0C, common_name.encode()))),
    )
    attributes = b""
    if extensions:
        request = tlv(
            0x30, der_oid("1.2.840.113549.1.9.14") + tlv(0x31, tlv(0x30, b"".join(extensions)))
        )
        attributes = request
    info = tlv(0x30, tlv(0x02, bytes([version])) + subject + spki + tlv(0xA0, attributes))
    algorithm: hashes.HashAlgorithm = getattr(hashes, hash_name.upper())()
    ec_oid, rsa_oid = SIGNATURE_OIDS[hash_name]
    if isinstance(key, ec.EllipticCurvePrivateKey):
        assert ec_oid is not None
        signature, oid = key.sign(info, ec.ECDSA(algorithm)), der_oid(ec_oid)
    else:
        signature = key.sign(info, padding.PKCS1v15(), algorithm)
        oid = der_oid(rsa_oid) + b"\x05\x00"
    der = tlv(0x30, info + tlv(0x30, oid) + tlv(0x03, b"\x00" + signature))
    body = base64.encodebytes(der).decode()
    return (
        "-----BEGIN CERTIFICATE REQUEST-----\n" + body + "-----END CERTIFICATE REQUEST-----\n"
    ).encode()
