"""PodCertificateRequests read as served (podcerts.requests): every shape, every key type."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, rsa, x25519

from certsmith.podcerts import requests
from certsmith.podcerts.requests import RequestRefused
from tests import pod_requests

POD = {
    "metadata": {
        "name": "web-0",
        "namespace": "shop",
        "uid": "0b9c0f5e-1111-4222-8333-444455556666",
    },
    "spec": {"serviceAccountName": "web", "nodeName": "node-1"},
}


def body(key: Any, shape: str = pod_requests.STUB, **fields: Any) -> dict[str, Any]:
    found = pod_requests.request_body(
        name="web-0-abcde",
        namespace="shop",
        signer="certsmith.dev/cluster-root",
        pod=POD,
        key=key,
        shape=shape,
        **fields,
    )
    found["metadata"]["uid"] = "req-uid"
    found["metadata"]["creationTimestamp"] = "2026-06-01T12:00:00Z"
    return found


def test_a_request_is_read_with_its_pod_identity_and_limits() -> None:
    read = requests.parse(
        body(
            pod_requests.new_key("ECDSAP256"),
            max_expiration_seconds=3600,
            annotations={"certsmith.dev/dns-names": "a.example.com"},
        )
    )
    assert (read.namespace, read.name, read.uid) == ("shop", "web-0-abcde", "req-uid")
    assert (read.signer_name, read.authority) == ("certsmith.dev/cluster-root", "cluster-root")
    assert (read.pod_name, read.pod_uid) == ("web-0", POD["metadata"]["uid"])
    assert (read.service_account, read.node_name) == ("web", "node-1")
    assert read.max_expiration == timedelta(hours=1)
    assert read.annotations == {"certsmith.dev/dns-names": "a.example.com"}
    assert read.created == datetime(2026, 6, 1, 12, tzinfo=UTC)
    assert read.answered is None


def test_max_expiration_defaults_to_the_apiservers_day() -> None:
    read = requests.parse(body(pod_requests.new_key("ECDSAP256")))
    assert read.max_expiration == timedelta(seconds=86400)


@pytest.mark.parametrize(
    ("signer", "authority"),
    [
        ("certsmith.dev/cluster-root", "cluster-root"),
        ("certsmith.dev/partners", "partners"),
        ("kubernetes.io/kube-apiserver-client-pod", None),
        ("example.com/certsmith.dev", None),
    ],
)
def test_only_certsmith_signers_name_an_authority(signer: str, authority: str | None) -> None:
    found = body(pod_requests.new_key("ECDSAP256"))
    found["spec"]["signerName"] = signer
    assert requests.parse(found).authority == authority
    assert requests.is_certsmiths(found) is (authority is not None)


@pytest.mark.parametrize(
    ("conditions", "answered"),
    [
        ([], None),
        ([{"type": "Issued", "status": "True"}], "Issued"),
        ([{"type": "Denied", "status": "True"}], "Denied"),
        ([{"type": "Failed", "status": "True"}], "Failed"),
        ([{"type": "SomethingElse", "status": "True"}], None),
    ],
)
def test_an_issued_denied_or_failed_request_is_answered(
    conditions: list[dict[str, str]], answered: str | None
) -> None:
    found = body(pod_requests.new_key("ECDSAP256"))
    found["status"] = {"conditions": conditions}
    assert requests.answered(found) == answered
    assert requests.parse(found).answered == answered


@pytest.mark.parametrize("shape", [pod_requests.STUB, pod_requests.PKIX])
@pytest.mark.parametrize("key_type", pod_requests.KEY_TYPES)
def test_every_key_type_kubelet_makes_is_read_from_either_shape(key_type: str, shape: str) -> None:
    key = pod_requests.new_key(key_type)
    found = requests.public_key(requests.parse(body(key, shape)))
    der = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert found.public_bytes(*der) == key.public_key().public_bytes(*der)


def test_only_the_key_of_the_csr_is_read_never_its_names() -> None:
    key = pod_requests.new_key("ECDSAP256")
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "admin")]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("kubernetes.default.svc")]), False)
        .sign(key, hashes.SHA256())
    )
    found = body(key)
    found["spec"]["stubPKCS10Request"] = base64.b64encode(
        csr.public_bytes(serialization.Encoding.DER)
    ).decode()
    read = requests.parse(found)
    assert isinstance(requests.public_key(read), ec.EllipticCurvePublicKey)
    assert not hasattr(read, "subject")


def _pkix(public_key: Any) -> dict[str, Any]:
    found = body(pod_requests.new_key("ECDSAP256"), pod_requests.PKIX)
    found["spec"]["pkixPublicKey"] = base64.b64encode(
        public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    return found


@pytest.mark.parametrize(
    ("public_key", "described"),
    [
        (rsa.generate_private_key(65537, 1024).public_key(), "an RSA 1024-bit key"),
        (ec.generate_private_key(ec.SECP256K1()).public_key(), "an ECDSA key on curve secp256k1"),
        (ed448.Ed448PrivateKey.generate().public_key(), "a key of type Ed448"),
        (x25519.X25519PrivateKey.generate().public_key(), "a key of type X25519"),
        (dsa.generate_private_key(2048).public_key(), "a key of type DSA"),
    ],
)
def test_a_key_type_certsmith_does_not_sign_is_refused_naming_it_and_what_it_signs(
    public_key: Any, described: str
) -> None:
    with pytest.raises(RequestRefused) as refused:
        requests.public_key(requests.parse(_pkix(public_key)))
    assert refused.value.reason == "UnsupportedKeyType"
    assert f"spec.pkixPublicKey holds {described}" in refused.value.message
    assert "ECDSAP256" in refused.value.message


def test_an_ed448_csr_is_refused_as_an_unsupported_key_type() -> None:
    key = ed448.Ed448PrivateKey.generate()
    found = body(pod_requests.new_key("ECDSAP256"))
    found["spec"]["stubPKCS10Request"] = base64.b64encode(pod_requests.stub_csr(key)).decode()
    with pytest.raises(
        RequestRefused, match=r"spec\.stubPKCS10Request holds a key of type Ed448"
    ) as refused:
        requests.public_key(requests.parse(found))
    assert refused.value.reason == "UnsupportedKeyType"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "neither stubPKCS10Request nor pkixPublicKey"),
        ({"stubPKCS10Request": "%%%"}, "spec.stubPKCS10Request is not base64-encoded bytes"),
        ({"stubPKCS10Request": 7}, "spec.stubPKCS10Request is not base64-encoded bytes"),
        ({"stubPKCS10Request": base64.b64encode(b"junk").decode()}, "cannot be read"),
        ({"pkixPublicKey": base64.b64encode(b"junk").decode()}, "cannot be read"),
    ],
)
def test_a_request_without_a_readable_key_is_an_invalid_request(
    spec: dict[str, Any], message: str
) -> None:
    found = body(pod_requests.new_key("ECDSAP256"))
    for field in ("stubPKCS10Request", "pkixPublicKey", "proofOfPossession"):
        found["spec"].pop(field, None)
    found["spec"].update(spec)
    with pytest.raises(RequestRefused, match=message) as refused:
        requests.public_key(requests.parse(found))
    assert refused.value.reason == "InvalidRequest"
