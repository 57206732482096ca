"""CertificateRequests, pure: the CSR read and judged (enrolment.csr), approval and the
status that hands out the certificate (enrolment.decision), the plugin's approve/deny."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa

from certsmith.api import conditions, model
from certsmith.authorities.authority import AuthorityMaterial
from certsmith.certificates import isolation
from certsmith.cli import decide
from certsmith.cli.api import CliError
from certsmith.enrolment import csr, decision
from certsmith.enrolment.decision import Stage
from certsmith.pki import ca, inspect
from tests import csrs

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
KEY = csrs.ecdsa_key()
OWN = csrs.csr_pem(KEY, common_name="cam-1.devices.svc", dns_names=["cam-1.devices.svc"])


def spec(pem: bytes, **more: Any) -> dict[str, Any]:
    return {"request": csrs.request_value(pem), **more}


def test_a_csr_is_read_into_its_key_and_names() -> None:
    pem = csrs.csr_pem(
        KEY,
        common_name="gw.partner.example",
        dns_names=["gw.partner.example"],
        ip_addresses=["10.0.0.7"],
        uris=["https://partner.example/gw"],
        emails=["ops@partner.example"],
    )
    parsed = csr.parse_request(spec(pem, duration="720h", issuerRef={"name": "partners"}))
    wanted = KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    found = parsed.public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert found == wanted
    certificate = parsed.certificate
    assert certificate.common_name == "gw.partner.example"
    assert certificate.dns_names == ("gw.partner.example",)
    assert certificate.ip_addresses == ("10.0.0.7",)
    assert certificate.uris == ("https://partner.example/gw",)
    assert certificate.email_addresses == ("ops@partner.example",)
    assert certificate.duration == timedelta(hours=720)
    assert certificate.issuer_name == "partners"
    assert certificate.usages == model.DEFAULT_USAGES
    assert (certificate.private_key.algorithm, certificate.private_key.size) == ("ECDSA", 256)


def test_defaults_are_a_certificates() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    parsed = csr.parse_request(spec(csrs.csr_pem(rsa_key, common_name="a.devices.svc")))
    assert parsed.certificate.duration == model.DEFAULT_DURATION
    assert parsed.certificate.issuer_name == model.DEFAULT_ISSUER
    assert parsed.certificate.usages == model.DEFAULT_RSA_USAGES


def test_an_ed25519_key_is_signed_with_a_certificates_ed25519_usages() -> None:
    pem = csrs.csr_pem(ed25519.Ed25519PrivateKey.generate(), common_name="a.devices.svc")
    parsed = csr.parse_request(spec(pem))
    assert isinstance(parsed.public_key, ed25519.Ed25519PublicKey)
    assert parsed.certificate.private_key.algorithm == "Ed25519"
    assert parsed.certificate.usages == model.DEFAULT_USAGES


def _dsa() -> bytes:
    key = dsa.generate_private_key(key_size=2048)
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name.from_rfc4514_string("CN=a.devices.svc")
    )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _weak_rsa() -> bytes:
    return csrs.csr_pem(
        rsa.generate_private_key(public_exponent=65537, key_size=1024), common_name="a.b.svc"
    )


def _certificate_pem() -> bytes:
    key_pair = ca.build_root(common_name="x", now=NOW, lifetime=timedelta(days=1))
    return key_pair.certificate.public_bytes(serialization.Encoding.PEM)


def _bad_signature() -> bytes:
    pem = csrs.csr_pem(KEY, common_name="aaaa.devices.svc")
    return csrs.tampered(pem, b"aaaa.devices", b"bbbb.devices")


@pytest.mark.parametrize(
    ("request_spec", "field", "says"),
    [
        ({}, "spec.request", "is required"),
        ({"request": "-----BEGIN CERTIFICATE REQUEST-----"}, "spec.request", "is not base64"),
        ({"request": base64.b64encode(b"hello").decode()}, "spec.request", "no PEM certificate"),
        (spec(_certificate_pem()), "spec.request", "holds a PEM CERTIFICATE;"),
        (
            {"request": csrs.request_value(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n")},
            "spec.request",
            "is not a readable PKCS#10 request",
        ),
        (spec(_bad_signature()), "spec.request", "signature does not verify"),
        (spec(_weak_rsa()), "spec.request", "the CSR's key is an RSA 1024-bit key"),
        (
            spec(csrs.csr_pem(csrs.rsa_exponent_3_key(), common_name="a.b.svc")),
            "spec.request",
            "the CSR's key is an RSA key with public exponent 3 (publicExponent must be 65537",
        ),
        (spec(_dsa()), "spec.request", "the CSR's key is a key of type DSA; certsmith signs RSA"),
        (
            spec(csrs.csr_pem(ec.generate_private_key(ec.SECP256K1()), common_name="a.b.svc")),
            "spec.request",
            "an ECDSA key on curve secp256k1",
        ),
        (spec(csrs.csr_pem(KEY)), "spec.request", "the CSR names nothing"),
        (
            spec(csrs.csr_pem(KEY, dns_names=[f"d{i}.devices.svc" for i in range(1001)])),
            "spec.request",
            "subjectAltName DNS names: has 1001 entries (max 1000)",
        ),
        (
            spec(csrs.csr_pem(KEY, dns_names=["ok.devices.svc", "bad..name"])),
            "spec.request",
            "subjectAltName DNS name 1: 'bad..name' is not a valid DNS name",
        ),
        (
            spec(csrs.csr_pem(KEY, dns_names=["a.devices.svc", "a.devices.svc"])),
            "spec.request",
            "subjectAltName DNS name 1: 'a.devices.svc' duplicates subjectAltName DNS name[0]",
        ),
        (
            spec(
                csrs.csr_pem(
                    KEY, other_names=[x509.DirectoryName(x509.Name.from_rfc4514_string("CN=x"))]
                )
            ),
            "spec.request",
            "holds a directory name CN=x; certsmith signs DNS names",
        ),
        (
            spec(csrs.csr_pem(KEY, common_name="not a name")),
            "spec.request",
            "the subject's commonName: 'not a name' is neither a DNS name",
        ),
        (spec(OWN, duration="30s"), "spec.duration", "must be from 1m to 100 years"),
        (spec(OWN, duration="876001h"), "spec.duration", "must be from 1m to 100 years"),
        (
            spec(OWN, usages=["key encipherment"]),
            "spec.usages[0]",
            "'key encipherment' needs an RSA key (the CSR's key is ECDSA)",
        ),
        (spec(OWN, usages=["cert sign"]), "spec.usages[0]", "needs a CA certificate"),
        (spec(OWN, issuerRef={"name": "Bad_Name"}), "spec.issuerRef.name", "DNS-1123"),
    ],
)
def test_bad_requests_are_refused_naming_the_field(
    request_spec: dict[str, Any], field: str, says: str
) -> None:
    with pytest.raises(model.InvalidSpec) as refused:
        csr.parse_request(request_spec)
    assert refused.value.field == field
    assert says in refused.value.message


@pytest.fixture(scope="module")
def authority(root: ca.CAKeyPair, intermediate: ca.CAKeyPair) -> AuthorityMaterial:
    grant = isolation.Grant(
        selector={"matchLabels": {"team": "partners"}}, dns_names=("*.partner.example",)
    )
    return AuthorityMaterial(
        name="cluster-root",
        root=root,
        intermediate=intermediate,
        trusted_roots=(root.certificate,),
        grants=(grant,),
    )


@pytest.mark.parametrize(
    ("namespace", "labels", "names", "needing"),
    [
        ("devices", {}, ["cam-1.devices.svc", "*.devices.svc.cluster.local"], []),
        ("devices", {}, ["cam-1.shop.svc"], ["cam-1.shop.svc"]),
        ("devices", {}, ["gw.partner.example"], ["gw.partner.example"]),
        ("devices", {"team": "partners"}, ["gw.partner.example"], []),
        ("devices", {"team": "partners"}, ["gw.partner.example", "db.shop.svc"], ["db.shop.svc"]),
        # The apiserver's names are never default's own: a person approves them, or nobody.
        ("default", {}, ["web.default.svc", "kubernetes.default.svc"], ["kubernetes.default.svc"]),
        ("default", {}, ["*.default.svc.cluster.local"], ["*.default.svc.cluster.local"]),
    ],
)
def test_approval_needs_names_the_namespace_may_not_carry(
    authority: AuthorityMaterial,
    namespace: str,
    labels: dict[str, str],
    names: list[str],
    needing: list[str],
) -> None:
    parsed = csr.parse_request(spec(csrs.csr_pem(KEY, dns_names=names)))
    violations = decision.names_needing_approval(
        parsed,
        namespace=namespace,
        namespace_labels=labels,
        grants=authority.grants,
        trust_domain="cluster.local",
    )
    assert [v.value for v in violations] == needing


def test_the_commonname_and_spiffe_ids_are_judged_too(authority: AuthorityMaterial) -> None:
    pem = csrs.csr_pem(
        KEY, common_name="api.shop.svc", uris=["spiffe://cluster.local/ns/devices/sa/cam"]
    )
    violations = decision.names_needing_approval(
        csr.parse_request(spec(pem)),
        namespace="devices",
        namespace_labels={},
        grants=authority.grants,
        trust_domain="cluster.local",
    )
    assert [v.value for v in violations] == ["api.shop.svc"]
    message = decision.pending_message(
        violations, namespace="devices", name="cam", authority="cluster-root"
    )
    assert "'api.shop.svc' (namespace devices may name its own services" in message
    assert "verb approve on certificateauthorities/cluster-root" in message
    assert "kubectl certsmith approve cam -n devices" in message


def _status(*entries: tuple[str, str, str]) -> dict[str, Any]:
    return {"conditions": [{"type": t, "status": s, "reason": r} for t, s, r in entries]}


@pytest.mark.parametrize(
    ("status", "stage"),
    [
        (None, Stage.NEW),
        (_status(("Ready", "False", "Pending")), Stage.NEW),
        (_status(("Ready", "False", "IssuerNotReady")), Stage.NEW),
        (_status(("Approved", "True", "KubectlCertsmith")), Stage.APPROVED),
        (_status(("Approved", "True", "x"), ("Ready", "False", "Pending")), Stage.APPROVED),
        (_status(("Approved", "True", "AutoApproved"), ("Ready", "True", "Issued")), Stage.DONE),
        (_status(("Denied", "True", "KubectlCertsmith")), Stage.DENIED),
        (_status(("Denied", "True", "x"), ("Ready", "False", "Denied")), Stage.DONE),
        (_status(("Ready", "False", "InvalidRequest")), Stage.DONE),
        (_status(("Ready", "False", "PolicyDenied")), Stage.DONE),
        (_status(("Approved", "False", "x")), Stage.NEW),
        (_status(("Ready", "False", "DecisionFailed")), Stage.NEW),
        # A certificate present is never signed again, whatever Ready says.
        ({**_status(("Approved", "True", "x")), "certificate": "PEM"}, Stage.DONE),
        ({**_status(("Ready", "False", "Pending")), "certificate": "PEM"}, Stage.DONE),
        ({"certificate": "PEM"}, Stage.DONE),
    ],
)
def test_stage_is_read_from_the_conditions(status: dict[str, Any] | None, stage: Stage) -> None:
    assert decision.stage(status) is stage


def test_auto_approved_is_certsmiths_reason_only() -> None:
    assert decision.auto_approved(_status(("Approved", "True", "AutoApproved")))
    assert not decision.auto_approved(_status(("Approved", "True", "KubectlCertsmith")))
    assert not decision.auto_approved(None)


def test_signing_certifies_the_csrs_key_for_its_names_only(
    authority: AuthorityMaterial, intermediate: ca.CAKeyPair
) -> None:
    pem = csrs.csr_pem(
        KEY,
        common_name="cam-1.devices.svc",
        dns_names=["cam-1.devices.svc"],
        extensions=[
            x509.BasicConstraints(ca=True, path_length=None),
            x509.NameConstraints(
                permitted_subtrees=[x509.DNSName("example")], excluded_subtrees=None
            ),
        ],
    )
    parsed = csr.parse_request(spec(pem, duration="48h", usages=["client auth"]))
    signed = decision.sign(
        parsed, authority=authority, current=None, approve=True, generation=1, now=NOW
    )
    leaf = signed.leaf
    assert leaf.public_key() == KEY.public_key()
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    with pytest.raises(x509.ExtensionNotFound):
        leaf.extensions.get_extension_for_class(x509.NameConstraints)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["cam-1.devices.svc"]
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
    assert leaf.not_valid_after_utc == NOW + timedelta(hours=48)
    assert leaf.issuer == intermediate.certificate.subject
    status = signed.status
    chain = x509.load_pem_x509_certificates(status["certificate"].encode())
    assert chain == [leaf, intermediate.certificate]
    assert status["ca"] == authority.bundle_pem.decode()
    assert status["notAfter"] == "2026-06-03T12:00:00Z"
    assert status["serialNumber"] == inspect.serial_hex(leaf)
    found = status["conditions"]
    assert conditions.is_true(found, "Ready") and conditions.is_true(found, "Approved")
    assert decision.auto_approved(status)


def test_a_long_duration_ends_with_the_intermediate(
    authority: AuthorityMaterial, intermediate: ca.CAKeyPair
) -> None:
    parsed = csr.parse_request(spec(OWN, duration="876000h"))
    signed = decision.sign(
        parsed, authority=authority, current=None, approve=False, generation=1, now=NOW
    )
    assert signed.leaf.not_valid_after_utc == intermediate.certificate.not_valid_after_utc
    assert conditions.find_condition(signed.status["conditions"], "Approved") is None


def test_signing_keeps_a_persons_approval() -> None:
    current = [{"type": "Approved", "status": "True", "reason": "KubectlCertsmith"}]
    status = decision.not_ready_status(
        current, reason="IssuerNotReady", message="gone", generation=2, now=NOW
    )
    assert [(c["type"], c["status"], c["reason"]) for c in status["conditions"]] == [
        ("Approved", "True", "KubectlCertsmith"),
        ("Ready", "False", "IssuerNotReady"),
    ]


# --- kubectl certsmith approve|deny ------------------------------------------------------


def _request(*entries: tuple[str, str, str]) -> dict[str, Any]:
    return {"metadata": {"name": "gw"}, "status": _status(*entries)}


@pytest.mark.parametrize(
    ("body", "approve", "written"),
    [
        (_request(), True, ["Approved"]),
        (_request(("Ready", "False", "Pending")), True, ["Approved", "Ready"]),
        (_request(("Ready", "False", "Pending")), False, ["Denied", "Ready"]),
    ],
)
def test_the_plugin_writes_the_decision(
    body: dict[str, Any], approve: bool, written: list[str]
) -> None:
    status = decide.decided_status(body, approve=approve, reason="Checked", message="ok", now=NOW)
    assert [c["type"] for c in status["conditions"]] == written
    decided = conditions.find_condition(status["conditions"], written[0])
    assert decided == {
        "type": written[0],
        "status": "True",
        "reason": "Checked",
        "message": "ok",
        "lastTransitionTime": "2026-06-01T12:00:00Z",
    }


@pytest.mark.parametrize(
    ("body", "approve", "error", "says"),
    [
        (_request(("Approved", "True", "x")), True, decide.AlreadyDecided, "approved already"),
        (_request(("Denied", "True", "x")), False, decide.AlreadyDecided, "denied already"),
        (_request(("Denied", "True", "x")), True, CliError, "is denied, which is final"),
        (_request(("Approved", "True", "x")), False, CliError, "is approved, which is final"),
    ],
)
def test_the_plugin_never_changes_a_decision(
    body: dict[str, Any], approve: bool, error: type[Exception], says: str
) -> None:
    with pytest.raises(error, match=says):
        decide.decided_status(body, approve=approve, reason="R", message="m", now=NOW)


@pytest.mark.parametrize(
    ("reason", "ok"),
    [
        ("KubectlCertsmith", True),
        ("Partner_OK", True),
        ("bad reason", False),
        ("", False),
        ("AutoApproved", False),  # certsmith's own
    ],
)
def test_reason_is_a_condition_reason(reason: str, ok: bool) -> None:
    if ok:
        assert decide.check_reason(reason) == reason
    else:
        with pytest.raises(CliError, match="--reason"):
            decide.check_reason(reason)


RSA_PSS_CSR = b"""-----BEGIN CERTIFICATE REQUEST-----
MIICwzCCAXYCAQAwHDEaMBgGA1UEAwwRY2FtLTEuZGV2aWNlcy5zdmMwggEgMAsG
CSqGSIb3DQEBCgOCAQ8AMIIBCgKCAQEAuZb4sDUUUwn6KeZT6ZOl8N8k740RQ8Rw
SM6hL8q3vNLobA7pNrvNyYZIC0XVXZ/jd43X6wXx8RRA4xRzQQMHt4En2vZFB5u8
NVWndjfAAN4bVuz6m1Do4NabG3IEnWbHQJgcZ4qtwFP8nYmvA2pS9WNoe6gx8o0X
hPkAbJzMgsZaKq4bLmp3WqV5knPuCBXiuYZCtcX6gWgI3DNR1m4FK8tv7/6hhoPG
/OhnH0x4Iy0+GYLtaJogulqc8KeAJrm6sbS+Tgowzj7IUCgpQu8ywNiu82uCYFj9
RgHLIcqO2s+wAr2eOs2rdgQx3JHJH3WOEa7tIvcTa16j7e6A54CSOwIDAQABoC8w
LQYJKoZIhvcNAQkOMSAwHjAcBgNVHREEFTATghFjYW0tMS5kZXZpY2VzLnN2YzBC
BgkqhkiG9w0BAQowNaAPMA0GCWCGSAFlAwQCAQUAoRwwGgYJKoZIhvcNAQEIMA0G
CWCGSAFlAwQCAQUAogQCAgDeA4IBAQCShhLImtEZpSXw3B1xIy1uTW9RBok7g9Gs
sGF+qc5jmI8TUbCyBxpJ11CnKiHTkPc8Up28rd5AFeAOghM10TIacusY+8Axm8UI
udUSadQGo7P6YcpAnEiyYENSqqkE35yngszDjkFgntD3INaZI9hpciqh61DXH/Mn
MAE892xqK263JUtTWgXAJ4hlotw3tVt8GRfEQufFNVaN/GmZWAi2NhR56+UosEi/
1GcmD0bzKlHuuXAFEOyEcgUOm1G9rx+1vo8t2lQL5fmWX0gYC25WfkOAcKj5rvHr
oqhzlNs9jrQwxb+A7bo4uHxDfZnpdB+0KfIFlTnRO5G/Gkool6EV
-----END CERTIFICATE REQUEST-----
"""
"""`openssl req -newkey rsa-pss -pkeyopt rsa_keygen_bits:2048`: an id-RSASSA-PSS key."""
_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_OWN_SAN = csrs.der_san_dns("cam-1.devices.svc")


@pytest.mark.parametrize(
    ("pem", "says"),
    [
        (
            csrs.crafted_csr(KEY, common_name="cam-1.devices.svc", extensions=[_OWN_SAN] * 2),
            "is not a readable PKCS#10 request: it has the extension subjectAltName twice",
        ),
        (
            csrs.crafted_csr(
                KEY, common_name="cam-1.devices.svc", extensions=[csrs.DER_KEY_USAGE] * 2
            ),
            "is not a readable PKCS#10 request: it has the extension keyUsage twice",
        ),
        (
            csrs.crafted_csr(KEY, common_name="cam-1.devices.svc", version=1),
            "is not a readable PKCS#10 request: 1 is not a valid CSR version",
        ),
        (
            csrs.crafted_csr(
                KEY,
                common_name="cam-1.devices.svc",
                extensions=[
                    csrs.der_extension(
                        csrs.SAN_OID, csrs.tlv(0x30, csrs.tlv(0x82, b"k\xe4m.x.svc"))
                    )
                ],
            ),
            "the CSR's extensions cannot be read: malformed DER (invalid value at "
            "subject_alternative_name / 0 / GeneralName::DNSName)",
        ),
        (
            csrs.crafted_csr(
                KEY,
                common_name="cam-1.devices.svc",
                extensions=[
                    csrs.der_extension(csrs.SAN_OID, csrs.tlv(0x30, csrs.tlv(0x87, b"\n\0\0\1\1")))
                ],
            ),
            "does not appear to be an IPv4 or IPv6 address",
        ),
        (
            csrs.crafted_csr(KEY, common_name="cam-1.devices.svc", hash_name="sha1"),
            "the CSR's signature algorithm SHA1 is not accepted: sign it with SHA-256, "
            "SHA-384 or SHA-512",
        ),
        (
            csrs.crafted_csr(_RSA, common_name="cam-1.devices.svc", hash_name="md5"),
            "the CSR's signature algorithm MD5 is not accepted",
        ),
        (
            RSA_PSS_CSR,
            "the CSR's key is an RSA-PSS key (id-RSASSA-PSS); certsmith signs RSA (2048",
        ),
        (
            KEY.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
            + OWN,
            "holds a PEM EC PRIVATE KEY: never send the private key",
        ),
        (
            OWN
            + KEY.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            "holds a PEM PRIVATE KEY: never send the private key",
        ),
        (
            OWN + OWN,
            "must hold exactly one PEM block (-----BEGIN CERTIFICATE REQUEST-----) and "
            "nothing else; it holds 2 (CERTIFICATE REQUEST, CERTIFICATE REQUEST)",
        ),
        (b"Certificate Request:\n" + OWN, "and nothing else; it holds text around it"),
        (
            OWN.replace(b"-----END CERTIFICATE REQUEST-----", b""),
            "no -----END CERTIFICATE REQUEST-----",
        ),
    ],
    ids=[
        "duplicate-san",
        "duplicate-key-usage",
        "version-1",
        "bad-dns-bytes",
        "bad-ip-length",
        "sha1",
        "md5",
        "rsa-pss",
        "ec-private-key",
        "pkcs8-private-key",
        "two-csrs",
        "text-around",
        "no-end",
    ],
)
def test_malformed_or_unsafe_csrs_are_invalid_naming_spec_request(pem: bytes, says: str) -> None:
    """Whatever cryptography raises reading untrusted bytes is an InvalidSpec of
    spec.request, never an exception of its own; a hash or key certsmith refuses is named."""
    with pytest.raises(model.InvalidSpec) as refused:
        csr.parse_request(spec(pem))
    assert refused.value.field == "spec.request"
    assert says in refused.value.message


def test_an_rsa_csr_with_whitespace_around_its_block_is_accepted() -> None:
    pem = csrs.crafted_csr(_RSA, common_name="cam-1.devices.svc")
    assert csr.parse_request(spec(b"\n" + pem + b"\n\n")).certificate.common_name == (
        "cam-1.devices.svc"
    )


def test_an_ip_range_in_the_san_is_named_as_one() -> None:
    pem = csrs.crafted_csr(
        KEY,
        common_name="cam-1.devices.svc",
        extensions=[
            csrs.der_extension(
                csrs.SAN_OID, csrs.tlv(0x30, csrs.tlv(0x87, bytes([10, 0, 0, 0, 255, 0, 0, 0])))
            )
        ],
    )
    with pytest.raises(model.InvalidSpec) as refused:
        csr.parse_request(spec(pem))
    assert refused.value.message == (
        "the CSR's subjectAltName holds an IP range 10.0.0.0/8 (only single addresses are "
        "signed); certsmith signs DNS names, IP addresses, URIs and email addresses only"
    )


def test_the_plural_of_a_san_ip_address_is_spelt_right() -> None:
    pem = csrs.csr_pem(KEY, ip_addresses=[f"10.0.{i // 250}.{i % 250}" for i in range(1001)])
    with pytest.raises(model.InvalidSpec) as refused:
        csr.parse_request(spec(pem))
    assert refused.value.message.startswith("subjectAltName IP addresses: has 1001 entries")


def _issued(
    ready: tuple[str, str], not_after: str | None = "2026-06-02T12:00:00Z"
) -> dict[str, Any]:
    status: dict[str, Any] = {"certificate": "PEM", **_status(("Ready", *ready))}
    if not_after is not None:
        status["notAfter"] = not_after
    return status


@pytest.mark.parametrize(
    ("status", "until"),
    [
        (_issued(("True", "Issued")), datetime(2026, 6, 2, 12, 0, tzinfo=UTC)),
        (_issued(("False", "Expired")), None),
        (_issued(("True", "Issued"), not_after=None), None),
        (_status(("Ready", "False", "Pending")), None),
        (None, None),
    ],
)
def test_only_an_issued_request_expires(
    status: dict[str, Any] | None, until: datetime | None
) -> None:
    assert decision.issued_until(status) == until


def test_the_expired_message_says_when_and_what_to_do() -> None:
    assert decision.expired_message(datetime(2026, 6, 2, 12, 0, tzinfo=UTC)) == (
        "the certificate expired at 2026-06-02T12:00:00Z: the device enrols again with a new "
        "CSR in a new CertificateRequest"
    )
    assert decision.stage(_issued(("False", "Expired"))) is Stage.DONE


def test_a_chain_is_judged_against_the_trusted_roots(
    root: ca.CAKeyPair, intermediate: ca.CAKeyPair, authority: AuthorityMaterial
) -> None:
    signed = decision.sign(
        csr.parse_request(spec(OWN)),
        authority=authority,
        current=None,
        approve=True,
        generation=1,
        now=NOW,
    )
    chain = signed.status["certificate"]
    other = ca.build_root(common_name="other", now=NOW, lifetime=timedelta(days=1))
    assert decision.chains_to(chain, [root.certificate])
    assert decision.chains_to(chain, [other.certificate, root.certificate])
    assert not decision.chains_to(chain, [other.certificate])
    assert not decision.chains_to(chain, [])
    assert decision.chains_to("not PEM", [other.certificate])
    assert decision.root_retired_message("partners").startswith(
        "the certificate chains to a root CertificateAuthority partners no longer trusts "
        "(a root rotation ended, or the authority or its parent was re-created with a new "
        "root): peers refuse it; the device enrols again with a new CSR"
    )
