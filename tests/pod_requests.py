"""PodCertificateRequests as kubelet makes them, for every tier: its key (the
podCertificate source's keyType), and the request in either shape kube-apiserver accepts
(`stubPKCS10Request`, or `pkixPublicKey` with `proofOfPossession` on 1.35/1.36)."""

from __future__ import annotations

import base64
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

Key = (
    ec.EllipticCurvePrivateKey
    | rsa.RSAPrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)

KEY_TYPES = ("RSA3072", "RSA4096", "ECDSAP256", "ECDSAP384", "ECDSAP521", "ED25519")
"""The keyTypes of a podCertificate projected volume source (kubelet makes the key)."""
STUB = "stubPKCS10Request"
PKIX = "pkixPublicKey"


def new_key(key_type: str) -> Key:
    """A private key of a podCertificate keyType (as kubelet generates it)."""
    if key_type.startswith("RSA"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[3:]))
    curves = {"ECDSAP256": ec.SECP256R1, "ECDSAP384": ec.SECP384R1, "ECDSAP521": ec.SECP521R1}
    if key_type in curves:
        return ec.generate_private_key(curves[key_type]())
    if key_type == "ED25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(key_type)


def _hash(key: Key) -> hashes.SHA256 | None:
    return (
        None
        if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey)
        else hashes.SHA256()
    )


def stub_csr(key: Key) -> bytes:
    """kubelet's stub PKCS#10 request: an empty subject, no extensions, DER."""
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, _hash(key))
        .public_bytes(serialization.Encoding.DER)
    )


def proof_of_possession(key: Key, pod_uid: str) -> bytes:
    """The key's signature over the pod UID's ASCII bytes (k8s.io/api certificates/v1beta1
    ProofOfPossession): Ed25519 plainly, ECDSA over SHA-256 (ASN.1), RSA-PSS over SHA-256."""
    data = pod_uid.encode("ascii")
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
        return key.sign(data, pss, hashes.SHA256())
    return key.sign(data)


def public_der(key: Key) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def request_body(
    *,
    name: str,
    namespace: str,
    signer: str,
    pod: dict[str, Any],
    key: Key,
    shape: str = STUB,
    node_uid: str = "6f0e1d2c-0000-4000-8000-000000000001",
    service_account_uid: str = "6f0e1d2c-0000-4000-8000-000000000002",
    max_expiration_seconds: int | None = None,
    annotations: dict[str, str] | None = None,
    api_version: str = "certificates.k8s.io/v1",
) -> dict[str, Any]:
    """A PodCertificateRequest for `pod` (as read from the apiserver: its uid, service
    account and node), its key in `shape` (STUB or PKIX, the latter with its proof)."""
    pod_uid = pod["metadata"]["uid"]
    spec: dict[str, Any] = {
        "signerName": signer,
        "podName": pod["metadata"]["name"],
        "podUID": pod_uid,
        "serviceAccountName": pod["spec"].get("serviceAccountName") or "default",
        "serviceAccountUID": service_account_uid,
        "nodeName": pod["spec"].get("nodeName") or "node-1",
        "nodeUID": node_uid,
    }
    if shape == STUB:
        spec[STUB] = base64.b64encode(stub_csr(key)).decode()
    else:
        spec[PKIX] = base64.b64encode(public_der(key)).decode()
        spec["proofOfPossession"] = base64.b64encode(proof_of_possession(key, pod_uid)).decode()
    if max_expiration_seconds is not None:
        spec["maxExpirationSeconds"] = max_expiration_seconds
    if annotations is not None:
        spec["unverifiedUserAnnotations"] = annotations
    return {
        "apiVersion": api_version,
        "kind": "PodCertificateRequest",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
"""`public_bytes` arguments that compare two public keys."""
