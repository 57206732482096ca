"""PKCS#10 requests for the CertificateRequest tests of every tier: made with cryptography,
as a device would with `openssl req`, and the spec.request value (base64 of the PEM)."""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
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
