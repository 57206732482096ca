"""Kubernetes CertificateSigningRequests, pure (enrolment.signing_requests): which CSRs are
certsmith's to answer, the requester and the names it may obtain, usages and lifetime, the
Failed answer and the signed chain."""

from __future__ import annotations

import base64
import dataclasses
import functools
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from certsmith.authorities.authority import AuthorityMaterial
from certsmith.authorities.pod_certificates import Settings
from certsmith.certificates import isolation
from certsmith.enrolment import signing_requests as sr
from certsmith.enrolment.signing_requests import Refusal, ServiceAccount, Stage
from certsmith.pki import ca, inspect
from certsmith.pki import name_constraints as nc
from tests import csrs

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TRUST_DOMAIN = "cluster.local"
KEY = csrs.ecdsa_key()
WEB = "system:serviceaccount:shop:web"
WEB_ID = "spiffe://cluster.local/ns/shop/sa/web"
PARTNERS = {"team": "partners"}


@pytest.fixture(scope="module")
def authority(root: ca.CAKeyPair, intermediate: ca.CAKeyPair) -> AuthorityMaterial:
    grants = (
        isolation.Grant(
            selector={"matchLabels": {"team": "partners"}},
            dns_names=("*.partner.example",),
            uris=("spiffe://partner.example/*",),
        ),
        # Istio's RA mode: istiod asks for every workload's SPIFFE ID.
        isolation.Grant(
            selector={"matchLabels": {"kubernetes.io/metadata.name": "istio-system"}},
            uris=("spiffe://cluster.local/ns/*",),
        ),
    )
    return AuthorityMaterial(
        name="cluster-root",
        root=root,
        intermediate=intermediate,
        trusted_roots=(root.certificate,),
        grants=grants,
        pod_certificates=Settings(max_duration=timedelta(hours=24)),
    )


@functools.cache
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def body(
    pem: bytes,
    *,
    username: str = WEB,
    usages: list[str] | None = None,
    status: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A CSR as kube-apiserver serves it (spec.username set from its creator)."""
    return {
        "metadata": {"name": "csr-1", "resourceVersion": "7"},
        "spec": {
            "signerName": "certsmith.dev/cluster-root",
            "request": csrs.request_value(pem),
            "usages": usages if usages is not None else ["digital signature", "server auth"],
            "username": username,
            **spec,
        },
        "status": status or {},
    }


SA_UID = "4f1c2d3e-0000-4000-8000-000000000001"
EXISTING = sr.RequesterObjects(
    namespace={"metadata": {"name": "shop"}},
    service_account={"metadata": {"name": "web", "namespace": "shop", "uid": SA_UID}},
)


def check(
    authority: AuthorityMaterial,
    csr_body: dict[str, Any],
    labels: dict[str, str] | None = None,
    requester: sr.RequesterObjects = EXISTING,
) -> sr.Checked | Refusal:
    return sr.check(
        csr_body,
        operator_namespace="certsmith",
        trust_domain=TRUST_DOMAIN,
        authority=authority,
        namespace_labels=labels or {},
        requester=requester,
    )


@pytest.mark.parametrize(
    ("signer", "authority"),
    [
        ("certsmith.dev/cluster-root", "cluster-root"),
        ("certsmith.dev/partners", "partners"),
        ("kubernetes.io/kube-apiserver-client", None),
        ("certsmith.devx/cluster-root", None),
        ("certsmith.dev/a/b", None),
        ("certsmith.dev/", None),
        (None, None),
    ],
)
def test_only_certsmiths_signers_are_its_own(signer: str | None, authority: str | None) -> None:
    csr_body = {"spec": {"signerName": signer}}
    assert sr.authority_of(csr_body) == authority
    assert sr.is_certsmiths(csr_body) is (authority is not None)


def _condition(kind: str, status: str = "True") -> dict[str, str]:
    return {"type": kind, "status": status, "reason": "R"}


@pytest.mark.parametrize(
    ("status", "stage"),
    [
        ({}, Stage.PENDING),
        ({"conditions": [_condition("Approved", "False")]}, Stage.PENDING),
        ({"conditions": [_condition("Approved")]}, Stage.SIGN),
        ({"conditions": [_condition("Approved"), _condition("Approved")]}, Stage.SIGN),
        ({"conditions": [_condition("Denied")]}, Stage.DONE),
        ({"conditions": [_condition("Approved"), _condition("Failed")]}, Stage.DONE),
        ({"conditions": [_condition("Approved")], "certificate": "PEM"}, Stage.DONE),
    ],
)
def test_stage_is_read_from_the_status(status: dict[str, Any], stage: str) -> None:
    assert sr.stage({"status": status}) == stage


@pytest.mark.parametrize(
    ("username", "account"),
    [
        (WEB, ServiceAccount("shop", "web")),
        ("system:serviceaccount:shop:", None),
        ("system:serviceaccount::web", None),
        ("system:serviceaccount:shop", None),
        ("system:serviceaccount:shop:web:x", None),
        ("alice", None),
        ("system:node:node-1", None),
        (None, None),
    ],
)
def test_the_requester_is_a_service_account_or_no_one(
    username: object, account: ServiceAccount | None
) -> None:
    assert sr.service_account(username) == account


@pytest.mark.parametrize(
    ("requested", "wanted"),
    [
        (["digital signature", "server auth"], ["digital signature", "server auth"]),
        (["signing", "digital signature", "client auth"], ["digital signature", "client auth"]),
        (["s/mime"], ["email protection"]),
        ([], []),
    ],
)
def test_usages_in_certsmiths_names(requested: list[str], wanted: list[str]) -> None:
    assert sr.certsmith_usages(requested) == wanted


@pytest.mark.parametrize(
    ("expiration", "lifetime"),
    [
        (None, timedelta(hours=24)),
        (600, timedelta(seconds=600)),
        (3600, timedelta(hours=1)),
        (86_400, timedelta(hours=24)),
        (10 * 86_400, timedelta(hours=24)),
        (60, timedelta(seconds=600)),
        (True, timedelta(hours=24)),
        ("3600", timedelta(hours=24)),
    ],
)
def test_lifetime_is_capped_by_the_authority(expiration: object, lifetime: timedelta) -> None:
    assert sr.lifetime(expiration, timedelta(hours=24)) == lifetime


@pytest.mark.parametrize(
    ("names", "labels"),
    [
        ({"uris": [WEB_ID]}, {}),
        ({"uris": [WEB_ID], "dns_names": ["web.shop.svc", "web.shop.svc.cluster.local"]}, {}),
        ({"dns_names": ["*.shop.svc"]}, {}),
        ({"common_name": "web.shop.svc", "dns_names": ["web.shop.svc"]}, {}),
        ({"dns_names": ["gw.partner.example"]}, {"team": "partners"}),
        ({"uris": ["spiffe://partner.example/gw"]}, {"team": "partners"}),
    ],
)
def test_a_service_account_obtains_its_own_names_and_granted_ones(
    authority: AuthorityMaterial, names: dict[str, Any], labels: dict[str, str]
) -> None:
    checked = check(authority, body(csrs.csr_pem(KEY, **names)), labels)
    assert isinstance(checked, sr.Checked), checked
    assert checked.requester == ServiceAccount("shop", "web")


def test_names_outside_a_subordinates_constraints_fail_though_the_requester_may_have_them(
    authority: AuthorityMaterial,
) -> None:
    """A grant allows gw.partner.example, but an authority constrained to zone.example
    cannot sign it: verifiers would refuse the leaf under its intermediate."""
    zoned = dataclasses.replace(
        authority,
        name_constraints=nc.NameConstraints(
            permitted=nc.Subtrees(dns_domains=("zone.example", "shop.svc"))
        ),
    )
    outside = check(zoned, body(csrs.csr_pem(KEY, dns_names=["gw.partner.example"])), PARTNERS)
    assert isinstance(outside, Refusal)
    assert outside.reason == sr.POLICY_DENIED
    assert "spec.request" in outside.message and "gw.partner.example" in outside.message
    assert "outside CertificateAuthority cluster-root" in outside.message
    inside = check(zoned, body(csrs.csr_pem(KEY, dns_names=["web.shop.svc"])))
    assert isinstance(inside, sr.Checked), inside


def test_a_grant_lets_istiod_obtain_workloads_spiffe_ids(authority: AuthorityMaterial) -> None:
    istiod = "system:serviceaccount:istio-system:istiod"
    pem = csrs.csr_pem(KEY, uris=[WEB_ID])
    labels = {"kubernetes.io/metadata.name": "istio-system"}
    assert isinstance(check(authority, body(pem, username=istiod), labels), sr.Checked)
    refused = check(authority, body(pem, username=istiod), {})
    assert isinstance(refused, Refusal) and refused.reason == sr.POLICY_DENIED


@pytest.mark.parametrize(
    ("csr_body", "reason", "says"),
    [
        (
            body(csrs.csr_pem(KEY, uris=[WEB_ID]), username="alice"),
            sr.REQUESTER_NOT_ALLOWED,
            "spec.username: 'alice' is not a service account",
        ),
        (
            body(csrs.csr_pem(KEY, uris=[WEB_ID]), username="system:serviceaccount:certsmith:x"),
            sr.POLICY_DENIED,
            "certsmith's own namespace",
        ),
        (
            body(csrs.csr_pem(KEY, uris=["spiffe://cluster.local/ns/shop/sa/admin"])),
            sr.POLICY_DENIED,
            "spec.request: subjectAltName URI 0: 'spiffe://cluster.local/ns/shop/sa/admin' is "
            "not allowed: service account shop/web may obtain only its own SPIFFE ID "
            f"{WEB_ID}",
        ),
        (
            body(csrs.csr_pem(KEY, uris=["spiffe://cluster.local/ns/bank/sa/web"])),
            sr.POLICY_DENIED,
            "spec.request: subjectAltName URI 0: 'spiffe://cluster.local/ns/bank/sa/web' is "
            "not allowed (namespace shop may name its own services and SPIFFE IDs only)",
        ),
        (
            body(csrs.csr_pem(KEY, dns_names=["web.shop.svc", "db.bank.svc"])),
            sr.POLICY_DENIED,
            "spec.request: subjectAltName DNS name 1: 'db.bank.svc' is not allowed",
        ),
        (
            body(
                csrs.csr_pem(KEY, dns_names=["kubernetes.default.svc"]),
                username="system:serviceaccount:default:default",
            ),
            sr.POLICY_DENIED,
            "spec.request: subjectAltName DNS name 0: 'kubernetes.default.svc' is not allowed (a "
            "name of the cluster's apiserver, Service default/kubernetes, is no namespace's own",
        ),
        (
            body(csrs.csr_pem(KEY, dns_names=["gw.partner.example"])),
            sr.POLICY_DENIED,
            "'gw.partner.example' is not allowed",
        ),
        (
            body(csrs.csr_pem(KEY, common_name="db.bank.svc")),
            sr.POLICY_DENIED,
            "spec.request: the subject's commonName: 'db.bank.svc' is not allowed",
        ),
        (
            body(csrs.csr_pem(KEY, emails=["web@shop.example"])),
            sr.POLICY_DENIED,
            "email addresses need a grant",
        ),
        (
            body(csrs.csr_pem(KEY, uris=[WEB_ID]), usages=["digital signature", "cert sign"]),
            sr.UNSUPPORTED_USAGE,
            "spec.usages[1]: 'cert sign' needs a CA certificate",
        ),
        (
            body(csrs.csr_pem(KEY, uris=[WEB_ID]), usages=["server auth", "any"]),
            sr.UNSUPPORTED_USAGE,
            "spec.usages[1]: certsmith does not issue 'any'",
        ),
        (
            body(csrs.csr_pem(KEY, uris=[WEB_ID]), usages=["ipsec tunnel"]),
            sr.UNSUPPORTED_USAGE,
            "spec.usages[0]: certsmith does not issue 'ipsec tunnel'",
        ),
        (
            body(csrs.csr_pem(KEY, uris=[WEB_ID]), usages=["key encipherment"]),
            sr.UNSUPPORTED_USAGE,
            "spec.usages[0]: 'key encipherment' needs an RSA key (the CSR's key is ECDSA)",
        ),
        (
            body(
                csrs.csr_pem(
                    rsa.generate_private_key(public_exponent=65537, key_size=1024), uris=[WEB_ID]
                )
            ),
            sr.INVALID_REQUEST,
            "spec.request: the CSR's key is an RSA 1024-bit key",
        ),
        (
            body(csrs.tampered(csrs.csr_pem(KEY, dns_names=["aaa.shop.svc"]), b"aaa", b"bbb")),
            sr.INVALID_REQUEST,
            "spec.request: the CSR's signature does not verify",
        ),
        (
            body(csrs.crafted_csr(KEY, common_name="web.shop.svc", hash_name="sha1")),
            sr.INVALID_REQUEST,
            "spec.request: the CSR's signature algorithm SHA1 is not accepted: sign it with "
            "SHA-256, SHA-384 or SHA-512",
        ),
        (
            body(csrs.crafted_csr(rsa_key(), common_name="web.shop.svc", hash_name="md5")),
            sr.INVALID_REQUEST,
            "spec.request: the CSR's signature algorithm MD5 is not accepted",
        ),
        (
            body(csrs.csr_pem(csrs.rsa_exponent_3_key(), uris=[WEB_ID])),
            sr.INVALID_REQUEST,
            "spec.request: the CSR's key is an RSA key with public exponent 3 (publicExponent "
            "must be 65537",
        ),
        (
            body(
                csrs.csr_pem(
                    KEY,
                    uris=[WEB_ID],
                    other_names=[x509.OtherName(x509.ObjectIdentifier("1.2.3.4"), b"\x0c\x01a")],
                )
            ),
            sr.INVALID_REQUEST,
            "spec.request: the CSR's subjectAltName holds an otherName 1.2.3.4; certsmith signs "
            "DNS names",
        ),
        (
            {**body(b""), "spec": {**body(b"")["spec"], "request": "bm90IGEgY3Ny"}},
            sr.INVALID_REQUEST,
            "spec.request: holds no PEM certificate request",
        ),
    ],
)
def test_what_policy_or_the_csr_refuses_fails_naming_the_field(
    authority: AuthorityMaterial, csr_body: dict[str, Any], reason: str, says: str
) -> None:
    refused = check(authority, csr_body)
    assert isinstance(refused, Refusal), refused
    assert refused.reason == reason
    assert says in refused.message
    assert not re.search(r"\bb['\"]", refused.message)  # no Python bytes repr


@pytest.mark.parametrize(
    ("uid", "requester", "says"),
    [
        (SA_UID, EXISTING, None),
        (None, EXISTING, None),  # impersonated: no uid recorded, the name counts
        ("", EXISTING, None),
        (
            SA_UID,
            sr.RequesterObjects(namespace=None, service_account=None),
            "spec.username: service account shop/web: its namespace shop does not exist; "
            "certsmith certifies only a service account that exists when the CSR is signed",
        ),
        (
            SA_UID,
            sr.RequesterObjects(
                namespace={"metadata": {"name": "shop", "deletionTimestamp": "2026-06-01T11:00Z"}},
                service_account=EXISTING.service_account,
            ),
            "spec.username: service account shop/web: its namespace shop is being deleted",
        ),
        (
            None,
            sr.RequesterObjects(namespace=EXISTING.namespace, service_account=None),
            "spec.username: service account shop/web does not exist; certsmith certifies only",
        ),
        (
            "0d9e8f7a-0000-4000-8000-000000000002",
            EXISTING,
            "spec.username: service account shop/web was deleted and created again since the "
            "CSR was made (spec.uid 0d9e8f7a-0000-4000-8000-000000000002, the ServiceAccount's "
            f"uid now {SA_UID})",
        ),
    ],
)
def test_a_requester_that_no_longer_exists_fails_the_csr(
    authority: AuthorityMaterial, uid: str | None, requester: sr.RequesterObjects, says: str | None
) -> None:
    spec = {} if uid is None else {"uid": uid}
    found = check(authority, body(csrs.csr_pem(KEY, uris=[WEB_ID]), **spec), requester=requester)
    if says is None:
        assert isinstance(found, sr.Checked)
        return
    assert isinstance(found, Refusal)
    assert (found.reason, found.message[: len(says)]) == (sr.REQUESTER_NOT_FOUND, says)


def test_signing_certifies_the_key_for_the_csrs_names_usages_and_lifetime(
    authority: AuthorityMaterial,
) -> None:
    pem = csrs.csr_pem(
        KEY,
        uris=[WEB_ID],
        dns_names=["web.shop.svc"],
        extensions=[x509.BasicConstraints(ca=True, path_length=None)],
    )
    csr_body = body(pem, usages=["signing", "client auth"], expirationSeconds=3600)
    checked = check(authority, csr_body)
    assert isinstance(checked, sr.Checked), checked
    signed = sr.sign(checked, authority=authority, now=NOW)
    chain = inspect.load_pem_certificates(base64.b64decode(signed.status["certificate"]))
    assert chain == [signed.leaf, authority.intermediate.certificate]
    leaf = signed.leaf
    assert leaf.public_key().public_numbers() == KEY.public_key().public_numbers()
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [WEB_ID]
    assert san.get_values_for_type(x509.DNSName) == ["web.shop.svc"]
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    extended = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(extended) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == timedelta(hours=1) + ca.BACKDATE


def test_failed_keeps_the_approval_and_replaces_an_earlier_failed() -> None:
    approved = {"type": "Approved", "status": "True", "reason": "KubectlApprove"}
    status = sr.failed_status(
        [approved, {"type": "Failed", "status": "True", "reason": "Old"}],
        Refusal(sr.POLICY_DENIED, "x" * 40_000),
        NOW,
    )
    assert [c["type"] for c in status["conditions"]] == ["Approved", "Failed"]
    failed = status["conditions"][1]
    assert failed["reason"] == sr.POLICY_DENIED
    assert len(failed["message"]) == 32 * 1024
    assert failed["lastUpdateTime"] == failed["lastTransitionTime"] == "2026-06-01T12:00:00Z"


def test_an_unknown_authority_names_the_signer() -> None:
    refusal = sr.unknown_authority("gone")
    assert refusal.reason == sr.AUTHORITY_NOT_FOUND
    assert refusal.message.startswith("spec.signerName: certsmith.dev/gone names ")
