"""Subordinate CertificateAuthorities with name constraints (spec.parentRef,
spec.nameConstraints) on the real apiserver: what certsmith refuses to sign, what real
verifiers (openssl, Go's crypto/x509, Python's cryptography) refuse of a leaf made by hand
with the subordinate's key, and how a subordinate follows its parent."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification
from cryptography.x509.oid import NameOID
from kubernetes import client

from certsmith.pki import inspect, keys
from tests import csrs, pod_requests
from tests.integration import certs, pod_certs
from tests.integration import test_revocation as revocation
from tests.integration import test_revocation_faults as revocation_faults
from tests.integration.conftest import OPERATOR_NAMESPACE, TEST_GRANT_LABEL
from tests.integration.discovery import served_version
from tests.support import wait_for

pytestmark = pytest.mark.integration

CA_API = ("certsmith.dev", "v1alpha1", "certificateauthorities")
ZONE = {
    "permitted": {"dnsDomains": ["partner.example"], "ipRanges": ["10.20.0.0/16"]},
    "excluded": {"dnsDomains": ["internal.partner.example"]},
}
# The test namespaces' grant on the subordinate: names isolation allows, so that what
# refuses the outside ones is the name constraints alone.
GRANTS = {
    "grants": [
        {
            "namespaceSelector": {"matchLabels": {TEST_GRANT_LABEL: "true"}},
            "dnsNames": [
                "partner.example",
                "*.partner.example",
                "*.eu.partner.example",
                "*.us.partner.example",
                "*.internal.partner.example",
                "*.other.example",
            ],
            "ipRanges": ["10.0.0.0/8"],
        }
    ]
}
GO_VERIFY = """package main

import (
\t"crypto/x509"
\t"encoding/pem"
\t"fmt"
\t"os"
)

func load(path string) []*x509.Certificate {
\tdata, _ := os.ReadFile(path)
\tvar out []*x509.Certificate
\tfor {
\t\tvar block *pem.Block
\t\tblock, data = pem.Decode(data)
\t\tif block == nil {
\t\t\treturn out
\t\t}
\t\tc, err := x509.ParseCertificate(block.Bytes)
\t\tif err != nil {
\t\t\tpanic(err)
\t\t}
\t\tout = append(out, c)
\t}
}

func main() {
\troots, intermediates := x509.NewCertPool(), x509.NewCertPool()
\tfor _, c := range load(os.Args[1]) {
\t\troots.AddCert(c)
\t}
\tfor _, c := range load(os.Args[2]) {
\t\tintermediates.AddCert(c)
\t}
\tleaf := load(os.Args[3])[0]
\t_, err := leaf.Verify(x509.VerifyOptions{
\t\tRoots: roots, Intermediates: intermediates, DNSName: os.Args[4],
\t\tKeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
\t})
\tif err != nil {
\t\tfmt.Println(err)
\t\tos.Exit(1)
\t}
\tfmt.Println("ok")
}
"""


def get_authority(api_client: client.ApiClient, name: str) -> dict[str, Any] | None:
    try:
        return client.CustomObjectsApi(api_client).get_cluster_custom_object(*CA_API, name)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise


def create_authority(api_client: client.ApiClient, name: str, **spec: Any) -> None:
    certs.create_authority(api_client, name, **spec)


def patch_authority(api_client: client.ApiClient, name: str, body: dict[str, Any]) -> None:
    client.CustomObjectsApi(api_client).patch_cluster_custom_object(*CA_API, name, body)


def delete_authority(api_client: client.ApiClient, name: str) -> None:
    client.CustomObjectsApi(api_client).delete_cluster_custom_object(*CA_API, name)
    wait_for(lambda: get_authority(api_client, name) is None, timeout=15, what=f"{name} gone")


def ready_condition(api_client: client.ApiClient, name: str) -> dict[str, Any]:
    body = get_authority(api_client, name) or {}
    return certs.condition(body) or {}


def wait_authority(
    api_client: client.ApiClient, name: str, status: str, reason: str, timeout: float = 40
) -> dict[str, Any]:
    """The authority's Ready condition once it has `status` and `reason`; failing, the
    condition it has instead."""
    try:
        return wait_for(
            lambda: (c := ready_condition(api_client, name)).get("status") == status
            and c.get("reason") == reason
            and c,
            timeout=timeout,
            what=f"CertificateAuthority {name} Ready={status} ({reason})",
        )
    except AssertionError as error:
        raise AssertionError(f"{error}; it has {ready_condition(api_client, name)}") from None


def ca_pair(api_client: client.ApiClient, secret: str) -> tuple[x509.Certificate, Any]:
    sec = client.CoreV1Api(api_client).read_namespaced_secret(secret, OPERATOR_NAMESPACE)
    certificate = x509.load_pem_x509_certificates(certs.secret_bytes(sec, "tls.crt"))[0]
    key = keys.load_private_key(certs.secret_bytes(sec, "tls.key"))
    return certificate, key


def pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def certificate(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "certsmith.dev/v1alpha1",
        "kind": "Certificate",
        "metadata": {"name": name},
        "spec": {"secretName": f"{name}-tls", **spec},
    }


def hand_made_leaf(issuer: x509.Certificate, issuer_key: Any, dns_name: str) -> x509.Certificate:
    """A leaf signed with the subordinate's intermediate key directly, as someone holding
    that key (not certsmith) would make it: nothing checks its name before signing."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
        .sign(issuer_key, keys.signature_hash(issuer_key))
    )


def openssl_verify(
    directory: Path, root_pem: bytes, chain: list[x509.Certificate], dns_name: str
) -> subprocess.CompletedProcess[str]:
    """`openssl verify` of chain[0] for `dns_name` with `root_pem` the only trust anchor."""
    (directory / "root.pem").write_bytes(root_pem)
    (directory / "untrusted.pem").write_bytes(pem(*chain[1:]))
    (directory / "leaf.pem").write_bytes(pem(chain[0]))
    return subprocess.run(
        [
            "openssl",
            "verify",
            "-verify_hostname",
            dns_name,
            "-CAfile",
            str(directory / "root.pem"),
            "-untrusted",
            str(directory / "untrusted.pem"),
            str(directory / "leaf.pem"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def go_verify(
    directory: Path, root_pem: bytes, chain: list[x509.Certificate], dns_name: str
) -> subprocess.CompletedProcess[str]:
    """Go's crypto/x509 Verify of chain[0] for `dns_name`, `root_pem` the only root."""
    (directory / "verify.go").write_text(GO_VERIFY)
    (directory / "root.pem").write_bytes(root_pem)
    (directory / "untrusted.pem").write_bytes(pem(*chain[1:]))
    (directory / "leaf.pem").write_bytes(pem(chain[0]))
    if not (directory / "verify").exists():
        subprocess.run(
            [shutil.which("go") or "go", "build", "-o", "verify", "verify.go"],
            cwd=directory,
            check=True,
            capture_output=True,
            env={**os.environ, "GO111MODULE": "off", "CGO_ENABLED": "0"},
        )
    return subprocess.run(
        [
            str(directory / "verify"),
            str(directory / "root.pem"),
            str(directory / "untrusted.pem"),
            str(directory / "leaf.pem"),
            dns_name,
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def python_verify(root: x509.Certificate, chain: list[x509.Certificate], dns_name: str) -> None:
    """cryptography's verifier (rustls-webpki rules); VerificationError when refused."""
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store([root]))
        .build_server_verifier(x509.DNSName(dns_name))
    )
    verifier.verify(chain[0], chain[1:])


@pytest.fixture
def names(api_client, running_operator) -> Iterator[tuple[str, str]]:
    """(parent, subordinate) names of the test's own; both and their CA Secrets removed after."""
    suffix = uuid.uuid4().hex[:8]
    pair = (f"parent-{suffix}", f"partner-{suffix}")
    yield pair
    for name in reversed(pair):
        if get_authority(api_client, name) is not None:
            delete_authority(api_client, name)
        client.CoreV1Api(api_client).delete_collection_namespaced_secret(
            OPERATOR_NAMESPACE, label_selector=f"certsmith.dev/authority={name}"
        )


@pytest.fixture
def partner(api_client, names) -> tuple[str, str]:
    """A parent with its own root and a Ready subordinate constrained to ZONE."""
    parent, sub = names
    create_authority(api_client, parent)
    wait_authority(api_client, parent, "True", "Ready")
    create_authority(
        api_client, sub, parentRef={"name": parent}, nameConstraints=ZONE, policy=GRANTS
    )
    wait_authority(api_client, sub, "True", "Ready")
    return parent, sub


def test_a_subordinate_signs_inside_its_zone_under_the_parents_root_and_verifiers_enforce_it(
    api_client, namespace, partner, tmp_path
):
    parent, sub = partner
    parent_root, _ = ca_pair(api_client, f"{parent}-root")
    intermediate, intermediate_key = ca_pair(api_client, f"{sub}-intermediate")
    # The subordinate's CA certificate: signed by the parent's root, constraints critical.
    assert inspect.issued_by(intermediate, parent_root)
    extension = intermediate.extensions.get_extension_for_class(x509.NameConstraints)
    assert extension.critical
    assert [n.value for n in extension.value.permitted_subtrees or []] == [
        "partner.example",
        ipaddress.ip_network("10.20.0.0/16"),
    ]
    status = (get_authority(api_client, sub) or {})["status"]
    assert status["root"]["fingerprint"] == inspect.fingerprint_sha256(parent_root)
    assert status["trustedRoots"] == [inspect.fingerprint_sha256(parent_root)]

    # certsmith signs inside the zone; the leaf verifies with the parent's root alone.
    certs.create(
        api_client,
        namespace,
        certificate(
            "inside",
            issuerRef={"name": sub},
            dnsNames=["api.partner.example"],
            ipAddresses=["10.20.1.2"],
        ),
    )
    certs.wait_ready(api_client, namespace, "inside", timeout=30)
    secret = certs.secret(api_client, namespace, "inside-tls")
    chain = x509.load_pem_x509_certificates(certs.secret_bytes(secret, "tls.crt"))
    assert certs.secret_bytes(secret, "ca.crt") == pem(parent_root)
    root_pem = pem(parent_root)
    result = openssl_verify(tmp_path, root_pem, chain, "api.partner.example")
    assert result.returncode == 0, result.stdout + result.stderr
    python_verify(parent_root, chain, "api.partner.example")

    # A leaf made by hand with the subordinate's key for a name outside its zone, or in
    # an excluded subtree: every verifier refuses it, whoever signed it.
    for name, openssl_error, go_error in (
        ("api.other.example", "permitted subtree violation", "not permitted by any constraint"),
        ("db.internal.partner.example", "excluded subtree violation", "is excluded by constraint"),
    ):
        forged = [hand_made_leaf(intermediate, intermediate_key, name), intermediate]
        result = openssl_verify(tmp_path, root_pem, forged, name)
        assert result.returncode != 0
        assert openssl_error in result.stdout + result.stderr
        with pytest.raises(verification.VerificationError):
            python_verify(parent_root, forged, name)
        if shutil.which("go"):
            refused = go_verify(tmp_path, root_pem, forged, name)
            assert refused.returncode == 1 and go_error in refused.stdout, refused.stdout
    if shutil.which("go"):
        accepted = go_verify(tmp_path, root_pem, chain, "api.partner.example")
        assert accepted.stdout.strip() == "ok", accepted.stdout + accepted.stderr


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"dnsNames": ["api.other.example"]}, "spec.dnsNames[0]: 'api.other.example' is outside"),
        (
            {"dnsNames": ["db.internal.partner.example"]},
            "spec.dnsNames[0]: 'db.internal.partner.example' is in an excluded subtree",
        ),
        ({"ipAddresses": ["10.21.0.1"]}, "spec.ipAddresses[0]: '10.21.0.1' is outside"),
    ],
)
def test_names_outside_the_zone_are_refused_at_admission(
    api_client, namespace, partner, spec, field
):
    _, sub = partner
    with pytest.raises(client.ApiException) as refused:
        certs.create(api_client, namespace, certificate("outside", issuerRef={"name": sub}, **spec))
    assert refused.value.status == 403
    assert field in refused.value.body and f"CertificateAuthority {sub}" in refused.value.body


def test_names_outside_the_zone_are_refused_before_signing_without_the_webhook(
    api_client, namespace, partner, validating_webhook_down
):
    _, sub = partner
    certs.create(
        api_client,
        namespace,
        certificate("outside", issuerRef={"name": sub}, dnsNames=["api.other.example"]),
    )
    cond = wait_for(
        lambda: (c := certs.condition(certs.get(api_client, namespace, "outside")))
        and c["status"] == "False"
        and c,
        timeout=20,
        what="a verdict",
    )
    assert cond["reason"] == "NameConstraints"
    assert cond["message"].startswith("spec.dnsNames[0]: 'api.other.example' is outside")
    with pytest.raises(client.ApiException) as missing:
        certs.secret(api_client, namespace, "outside-tls")
    assert missing.value.status == 404


def test_a_certificate_request_outside_the_zone_is_refused_even_if_approved(
    api_client, namespace, partner
):
    _, sub = partner
    pem_csr = csrs.csr_pem(csrs.ecdsa_key(), dns_names=["gw.other.example"])
    client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        "certsmith.dev",
        "v1alpha1",
        namespace,
        "certificaterequests",
        csrs.request_body("gw", namespace, pem_csr, issuerRef={"name": sub}),
    )

    def verdict() -> dict[str, Any] | None:
        body = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
            "certsmith.dev", "v1alpha1", namespace, "certificaterequests", "gw"
        )
        cond = certs.condition(body)
        return cond if cond and cond.get("reason") == "PolicyDenied" else None

    cond = wait_for(verdict, timeout=20, what="PolicyDenied")
    assert cond["message"].startswith("spec.request: 'gw.other.example' is outside")


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"nameConstraints": {"permitted": {"ipRanges": ["10.0.0.1/8"]}}}, "CIDR block"),
        ({"nameConstraints": {"permitted": {"ipRanges": ["banana"]}}}, "CIDR block"),
        ({"nameConstraints": {"permitted": {"dnsDomains": ["*.partner.example"]}}}, "DNS domain"),
        ({"nameConstraints": {"excluded": {"dnsDomains": ["10.1.2.3"]}}}, "DNS domain"),
        ({"nameConstraints": {"permitted": {"uriDomains": ["https://x.example"]}}}, "no scheme"),
        (
            {"nameConstraints": {"permitted": {"emailAddresses": ["@@@"]}}},
            "spec.nameConstraints.permitted.emailAddresses[0]: Invalid value",
        ),
        ({"nameConstraints": {}}, "spec.nameConstraints: list at least one subtree"),
        ({"nameConstraints": {"permitted": {"dnsDomains": []}}}, "at least one subtree"),
        # The 422's cause names the field (fieldPath), not `<nil>`.
        ({"parentRef": {"name": "SELF"}}, '"field":"spec.parentRef.name"'),
        (
            {"parentRef": {"name": "cluster-root"}, "rootSecretRef": {"name": "x"}},
            '"field":"spec.rootSecretRef"',
        ),
    ],
)
def test_invalid_constraints_and_parents_are_refused_at_admission(api_client, names, spec, words):
    _, sub = names
    if spec.get("parentRef", {}).get("name") == "SELF":
        spec = {"parentRef": {"name": sub}}
    with pytest.raises(client.ApiException) as refused:
        create_authority(api_client, sub, **spec)
    assert refused.value.status == 422
    assert words in refused.value.body


def test_the_parent_is_fixed_at_creation(api_client, partner):
    parent, sub = partner
    for patch in ({"spec": {"parentRef": {"name": "cluster-root"}}}, {"spec": {"parentRef": None}}):
        with pytest.raises(client.ApiException) as refused:
            patch_authority(api_client, sub, patch)
        assert refused.value.status == 422
        assert "spec.parentRef: immutable" in refused.value.body
        assert '"field":"spec.parentRef"' in refused.value.body
    with pytest.raises(client.ApiException) as refused:
        patch_authority(api_client, parent, {"spec": {"parentRef": {"name": "cluster-root"}}})
    assert "spec.parentRef: immutable" in refused.value.body


def test_a_subordinate_waits_for_its_parent_and_follows_it_going_away(api_client, namespace, names):
    parent, sub = names
    create_authority(
        api_client, sub, parentRef={"name": parent}, nameConstraints=ZONE, policy=GRANTS
    )
    cond = wait_authority(api_client, sub, "False", "ParentNotReady")
    assert cond["message"].startswith(
        f"spec.parentRef.name: CertificateAuthority {parent} does not exist"
    )
    create_authority(api_client, parent)
    wait_authority(api_client, sub, "True", "Ready", timeout=20)
    certs.create(
        api_client,
        namespace,
        certificate("inside", issuerRef={"name": sub}, dnsNames=["api.partner.example"]),
    )
    certs.wait_ready(api_client, namespace, "inside", timeout=30)

    delete_authority(api_client, parent)
    cond = wait_authority(api_client, sub, "False", "ParentNotReady", timeout=20)
    assert parent in cond["message"]


def test_cycles_and_subordinates_of_subordinates_are_refused(api_client, names):
    a, b = names
    create_authority(api_client, a, parentRef={"name": b})
    create_authority(api_client, b, parentRef={"name": a})
    for name, other in ((a, b), (b, a)):
        cond = wait_authority(api_client, name, "False", "InvalidParent")
        assert f"CertificateAuthority {other} is itself a subordinate" in cond["message"]


def test_constraints_must_lie_within_the_parents(api_client, names):
    parent, sub = names
    create_authority(
        api_client, parent, nameConstraints={"permitted": {"dnsDomains": ["partner.example"]}}
    )
    wait_authority(api_client, parent, "True", "Ready")
    create_authority(
        api_client,
        sub,
        parentRef={"name": parent},
        nameConstraints={"permitted": {"dnsDomains": ["other.example"]}},
    )
    cond = wait_authority(api_client, sub, "False", "InvalidSpec")
    assert cond["message"].startswith(
        "spec.nameConstraints.permitted.dnsDomains[0]: 'other.example' is not within the "
        f"parent CertificateAuthority {parent}'s permitted partner.example"
    )


def test_narrower_constraints_reissue_the_intermediate_and_its_leaves_or_refuse_them(
    api_client, namespace, partner
):
    _, sub = partner
    for name, dns in (("stays", "api.eu.partner.example"), ("leaves", "api.us.partner.example")):
        certs.create(
            api_client, namespace, certificate(name, issuerRef={"name": sub}, dnsNames=[dns])
        )
        certs.wait_ready(api_client, namespace, name, timeout=30)
    before, _ = ca_pair(api_client, f"{sub}-intermediate")
    serial = certs.leaf_of(certs.secret(api_client, namespace, "stays-tls")).serial_number

    patch_authority(
        api_client,
        sub,
        # A merge patch: null removes the other subtrees.
        {
            "spec": {
                "nameConstraints": {
                    "permitted": {"dnsDomains": ["eu.partner.example"], "ipRanges": None},
                    "excluded": None,
                }
            }
        },
    )
    after = wait_for(
        lambda: (c := ca_pair(api_client, f"{sub}-intermediate")[0]) != before and c,
        timeout=20,
        what="the intermediate re-issued",
    )
    extension = after.extensions.get_extension_for_class(x509.NameConstraints).value
    assert [n.value for n in extension.permitted_subtrees or []] == ["eu.partner.example"]
    reissued = wait_for(
        lambda: (leaf := certs.leaf_of(certs.secret(api_client, namespace, "stays-tls")))
        and leaf.serial_number != serial
        and leaf,
        timeout=30,
        what="the leaf inside re-issued",
    )
    assert inspect.issued_by(reissued, after)
    cond = wait_for(
        lambda: (c := certs.condition(certs.get(api_client, namespace, "leaves")))
        and c["reason"] == "NameConstraints"
        and c,
        timeout=30,
        what="the leaf outside refused",
    )
    assert "spec.dnsNames[0]: 'api.us.partner.example' is outside" in cond["message"]


def test_a_parent_root_rotation_moves_the_subordinate_and_its_leaves_without_a_gap(
    api_client, namespace, partner, tmp_path
):
    parent, sub = partner
    patch_authority(api_client, parent, {"spec": {"rotation": {"propagationDelay": "2s"}}})
    certs.create(
        api_client,
        namespace,
        certificate("inside", issuerRef={"name": sub}, dnsNames=["api.partner.example"]),
    )
    certs.wait_ready(api_client, namespace, "inside", timeout=30)
    old_root, _ = ca_pair(api_client, f"{parent}-root")
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    patch_authority(
        api_client,
        parent,
        {"metadata": {"annotations": {"certsmith.dev/rotate-requested-at": stamp}}},
    )

    def both_roots_shipped() -> bool:
        secret = certs.secret(api_client, namespace, "inside-tls")
        return len(x509.load_pem_x509_certificates(certs.secret_bytes(secret, "ca.crt"))) == 2

    # Overlap: the leaf still under the old root verifies with the bundle of both.
    wait_for(both_roots_shipped, timeout=30, what="both roots in the leaf's ca.crt")
    secret = certs.secret(api_client, namespace, "inside-tls")
    chain = x509.load_pem_x509_certificates(certs.secret_bytes(secret, "tls.crt"))
    bundle = certs.secret_bytes(secret, "ca.crt")
    result = openssl_verify(tmp_path, bundle, chain, "api.partner.example")
    assert result.returncode == 0, result.stdout + result.stderr

    def rotated() -> x509.Certificate | None:
        body = get_authority(api_client, parent) or {}
        status = body.get("status") or {}
        if status.get("phase") != "Ready" or len(status.get("trustedRoots") or []) != 1:
            return None
        root, _ = ca_pair(api_client, f"{parent}-root")
        return root if root != old_root else None

    new_root = wait_for(rotated, timeout=120, what="the parent's rotation finished")
    intermediate, _ = ca_pair(api_client, f"{sub}-intermediate")
    assert inspect.issued_by(intermediate, new_root)
    assert intermediate.extensions.get_extension_for_class(x509.NameConstraints).critical
    # The leaf moved before the old root was retired: it verifies with the new root alone.
    secret = certs.secret(api_client, namespace, "inside-tls")
    chain = x509.load_pem_x509_certificates(certs.secret_bytes(secret, "tls.crt"))
    result = openssl_verify(tmp_path, pem(new_root), chain, "api.partner.example")
    assert result.returncode == 0, result.stdout + result.stderr
    # The retired root leaves the subordinate's roots and its Secrets' ca.crt after the
    # parent's, as it leaves the parent's own Secrets.
    wait_for(
        lambda: (body := get_authority(api_client, sub) or {})
        and (body.get("status") or {}).get("trustedRoots")
        == [inspect.fingerprint_sha256(new_root)],
        timeout=20,
        what="the subordinate trusting the new root alone",
    )
    wait_for(
        lambda: certs.secret_bytes(certs.secret(api_client, namespace, "inside-tls"), "ca.crt")
        == pem(new_root),
        timeout=20,
        what="the leaf's ca.crt holding the new root alone",
    )
    wait_authority(api_client, sub, "True", "Ready")


def test_a_rotation_requested_on_a_subordinate_is_refused(api_client, partner):
    parent, sub = partner
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    patch_authority(
        api_client, sub, {"metadata": {"annotations": {"certsmith.dev/rotate-requested-at": stamp}}}
    )

    def refused() -> list[str]:
        events = client.CoreV1Api(api_client).list_namespaced_event("default").items
        return [
            e.message
            for e in events
            if e.involved_object.name == sub and e.reason == "RotationRefused"
        ]

    messages = wait_for(refused, timeout=20, what="RotationRefused")
    assert f"request the rotation on CertificateAuthority {parent}" in messages[0]


def test_pod_certificates_of_a_subordinate_stay_inside_its_zone(
    api_client, namespace, names, tmp_path
):
    version = served_version(api_client, pod_certs.PLURAL)
    assert version, "the apiserver serves no podcertificaterequests (feature gates off?)"
    parent, sub = names
    create_authority(api_client, parent)
    wait_authority(api_client, parent, "True", "Ready")
    own_zone = {
        "permitted": {
            "dnsDomains": [f"{namespace}.svc", f"{namespace}.svc.cluster.local"],
            "uriDomains": ["cluster.local"],
        }
    }
    create_authority(api_client, sub, parentRef={"name": parent}, nameConstraints=own_zone)
    wait_authority(api_client, sub, "True", "Ready")
    node = f"sub-node-{uuid.uuid4().hex[:6]}"
    pod_certs.create_node(api_client, node)
    try:
        pod_certs.create_service_account(api_client, namespace, "web")
        pod_certs.create_service(api_client, namespace, "web", {"app": "web"})
        pod = pod_certs.create_pod(
            api_client, namespace, "web-0", node=node, service_account="web", labels={"app": "web"}
        )

        def request(name: str) -> dict[str, Any]:
            body = pod_requests.request_body(
                name=name,
                namespace=namespace,
                signer=f"certsmith.dev/{sub}",
                pod=pod,
                key=pod_requests.new_key("ECDSAP256"),
                shape=pod_certs.shape_of(version),
            )
            pod_certs.create_request(api_client, version, body)
            return pod_certs.wait_answered(api_client, version, namespace, name, timeout=20)

        inside = request("inside")
        condition = pod_certs.answer(inside)
        assert condition is not None and condition["type"] == "Issued", condition["message"]
        parent_root, _ = ca_pair(api_client, f"{parent}-root")
        verdict = pod_certs.openssl_verify(
            pod_certs.chain_of(inside), pem(parent_root), "sslserver"
        )
        assert verdict.strip().endswith("OK"), verdict

        before, _ = ca_pair(api_client, f"{sub}-intermediate")
        patch_authority(api_client, sub, {"spec": {"nameConstraints": ZONE}})
        wait_for(
            lambda: ca_pair(api_client, f"{sub}-intermediate")[0] != before,
            timeout=20,
            what="the intermediate re-issued",
        )
        # The change is in force once the status says so: the Secret is written first, then
        # the authority signs with it (in between, a request is signed as before the edit).
        generation = (get_authority(api_client, sub) or {})["metadata"]["generation"]
        wait_for(
            lambda: ready_condition(api_client, sub).get("observedGeneration") == generation,
            timeout=20,
            what="the authority's status observing the edit",
        )
        condition = pod_certs.answer(request("outside"))
        assert condition is not None and condition["type"] == "Denied", condition
        assert condition["reason"] == "PolicyDenied"
        assert f"web.{namespace}.svc' is outside CertificateAuthority {sub}" in condition["message"]
    finally:
        client.CoreV1Api(api_client).delete_node(node)


def test_uri_domains_leading_periods_and_wildcards_over_excluded_names(
    api_client, namespace, names, tmp_path
):
    """URI constraints and leading-period DNS subtrees (valid RFC 5280 forms OpenSSL and Go
    accept) give a Ready authority whose leaves stay Ready; a wildcard covering an excluded
    name is refused on every path, as Go and cryptography would refuse its chain."""
    parent, sub = names
    create_authority(api_client, parent)
    wait_authority(api_client, parent, "True", "Ready")
    grants = {
        "grants": [
            {
                **GRANTS["grants"][0],
                "uris": ["https://*.partner.example/*", "https://evil.partner.example/*"],
            }
        ]
    }
    create_authority(
        api_client,
        sub,
        parentRef={"name": parent},
        nameConstraints={
            "permitted": {"dnsDomains": [".partner.example"], "uriDomains": [".partner.example"]},
            "excluded": {"dnsDomains": ["internal.partner.example"]},
        },
        policy=grants,
    )
    wait_authority(api_client, sub, "True", "Ready")
    parent_root, _ = ca_pair(api_client, f"{parent}-root")

    certs.create(
        api_client,
        namespace,
        certificate(
            "zoned",
            issuerRef={"name": sub},
            dnsNames=["api.partner.example"],
            uris=["https://gw.partner.example/path"],
        ),
    )
    certs.wait_ready(api_client, namespace, "zoned", timeout=30)
    serial = certs.secret(api_client, namespace, "zoned-tls").metadata.annotations[
        "certsmith.dev/serial-number"
    ]
    chain = x509.load_pem_x509_certificates(
        certs.secret_bytes(certs.secret(api_client, namespace, "zoned-tls"), "tls.crt")
    )
    result = openssl_verify(tmp_path, pem(parent_root), chain, "api.partner.example")
    assert result.returncode == 0, result.stdout + result.stderr
    # Judged trusted by certsmith too: no re-issue follows.
    with pytest.raises(AssertionError):
        wait_for(
            lambda: certs.secret(api_client, namespace, "zoned-tls").metadata.annotations[
                "certsmith.dev/serial-number"
            ]
            != serial,
            timeout=6,
            what="a re-issue",
        )
    body = certs.get(api_client, namespace, "zoned")
    assert (certs.condition(body) or {}).get("status") == "True"
    assert not body["status"].get("failedIssuanceAttempts")

    with pytest.raises(client.ApiException) as refused:
        certs.create(
            api_client,
            namespace,
            certificate("wild", issuerRef={"name": sub}, dnsNames=["*.partner.example"]),
        )
    assert refused.value.status == 403
    assert "spec.dnsNames[0]: '*.partner.example' is in an excluded subtree" in refused.value.body

    pem_csr = csrs.csr_pem(csrs.ecdsa_key(), dns_names=["www.partner.example", "*.partner.example"])
    client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        "certsmith.dev",
        "v1alpha1",
        namespace,
        "certificaterequests",
        csrs.request_body("wild", namespace, pem_csr, issuerRef={"name": sub}),
    )

    def verdict() -> dict[str, Any] | None:
        body = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
            "certsmith.dev", "v1alpha1", namespace, "certificaterequests", "wild"
        )
        cond = certs.condition(body)
        return cond if cond and cond.get("reason") == "PolicyDenied" else None

    cond = wait_for(verdict, timeout=20, what="PolicyDenied")
    assert "'*.partner.example' is in an excluded subtree" in cond["message"]


def test_a_parent_rotation_waits_for_a_subordinate_that_cannot_sign(
    api_client, namespace, names, tmp_path
):
    """A subordinate whose spec is invalid for now still has leaves under the parent's old
    root: the parent's rotation names them as blockers and keeps the old root until they
    move, so they verify with the parent's bundle throughout."""
    parent, sub = names
    create_authority(
        api_client,
        parent,
        rotation={"propagationDelay": "2s"},
        nameConstraints={"permitted": {"dnsDomains": ["partner.example"]}},
    )
    wait_authority(api_client, parent, "True", "Ready")
    create_authority(
        api_client, sub, parentRef={"name": parent}, nameConstraints=ZONE, policy=GRANTS
    )
    wait_authority(api_client, sub, "True", "Ready")
    certs.create(
        api_client,
        namespace,
        certificate("inside", issuerRef={"name": sub}, dnsNames=["api.partner.example"]),
    )
    certs.wait_ready(api_client, namespace, "inside", timeout=30)
    old_root, _ = ca_pair(api_client, f"{parent}-root")
    # Outside the parent's constraints: InvalidSpec, the subordinate signs nothing for now.
    wider = {"permitted": {**ZONE["permitted"], "dnsDomains": ["partner.example", "x.example"]}}
    patch_authority(api_client, sub, {"spec": {"nameConstraints": wider}})
    wait_authority(api_client, sub, "False", "InvalidSpec")
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    patch_authority(
        api_client,
        parent,
        {"metadata": {"annotations": {"certsmith.dev/rotate-requested-at": stamp}}},
    )

    def blocked() -> dict[str, Any] | None:
        status = (get_authority(api_client, parent) or {}).get("status") or {}
        blockers = (status.get("rotation") or {}).get("blockers") or []
        return status if any("inside-tls" in line for line in blockers) else None

    status = wait_for(blocked, timeout=90, what="the subordinate's leaf named as a blocker")
    assert status["phase"] != "Ready"
    assert inspect.fingerprint_sha256(old_root) in status["trustedRoots"]
    assert status["rotation"]["leavesOnOldRoot"] >= 1
    # The leaf still verifies with the parent's published roots.
    chain = x509.load_pem_x509_certificates(
        certs.secret_bytes(certs.secret(api_client, namespace, "inside-tls"), "tls.crt")
    )
    result = openssl_verify(tmp_path, pem(old_root), chain, "api.partner.example")
    assert result.returncode == 0, result.stdout + result.stderr

    # Fixed, the subordinate moves its leaf under the new root and the rotation ends.
    patch_authority(api_client, sub, {"spec": {"nameConstraints": ZONE}})

    def rotated() -> x509.Certificate | None:
        body = get_authority(api_client, parent) or {}
        status = body.get("status") or {}
        if status.get("phase") != "Ready" or len(status.get("trustedRoots") or []) != 1:
            return None
        root, _ = ca_pair(api_client, f"{parent}-root")
        return root if root != old_root else None

    new_root = wait_for(rotated, timeout=120, what="the parent's rotation finished")
    chain = x509.load_pem_x509_certificates(
        certs.secret_bytes(certs.secret(api_client, namespace, "inside-tls"), "tls.crt")
    )
    result = openssl_verify(tmp_path, pem(new_root), chain, "api.partner.example")
    assert result.returncode == 0, result.stdout + result.stderr


def test_constraints_leaving_out_the_webhooks_names_are_refused_on_the_default_authority(
    api_client, running_operator
):
    """The default authority signs the operator's own webhook certificate: constraints
    that leave out its names make it InvalidSpec naming the field (not Ready while the
    webhook's certificate cannot be signed); removed, it is Ready again."""
    default = "cluster-root"
    patch_authority(
        api_client,
        default,
        {"spec": {"nameConstraints": {"permitted": {"dnsDomains": ["example.com"]}}}},
    )
    try:
        cond = wait_authority(api_client, default, "False", "InvalidSpec")
        assert cond["message"].startswith(
            "spec.nameConstraints: the default authority cluster-root signs the operator's "
            "webhook certificate"
        )
        assert "'certsmith-webhook' is outside" in cond["message"]
    finally:
        patch_authority(api_client, default, {"spec": {"nameConstraints": None}})
    wait_authority(api_client, default, "True", "Ready")


def test_a_subordinates_leaf_revoked_is_refused_by_a_crl_checking_verifier(
    api_client, kubeconfig, running_operator, namespace, names, tmp_path
):
    """Revocation reaches a subordinate's leaves: its CRL, signed by its own intermediate,
    lists the serial, and `openssl verify -crl_check_all` with its trust bundle (the
    parent's root and the CRLs) refuses that leaf and accepts another."""
    parent, sub = names
    create_authority(api_client, parent)
    wait_authority(api_client, parent, "True", "Ready")
    create_authority(
        api_client,
        sub,
        parentRef={"name": parent},
        nameConstraints=ZONE,
        policy=GRANTS,
        trustBundle={"configMapName": f"{sub}-ca"},
    )
    wait_authority(api_client, sub, "True", "Ready")
    for name in ("lost", "kept"):
        certs.create(
            api_client,
            namespace,
            certificate(name, issuerRef={"name": sub}, dnsNames=[f"{name}.partner.example"]),
        )
    for name in ("lost", "kept"):
        certs.wait_ready(api_client, namespace, name, timeout=30)
    lost = certs.secret_bytes(certs.secret(api_client, namespace, "lost-tls"), "tls.crt")
    kept = certs.secret_bytes(certs.secret(api_client, namespace, "kept-tls"), "tls.crt")
    serial = x509.load_pem_x509_certificates(lost)[0].serial_number

    result = revocation.plugin(
        kubeconfig, "revoke", "lost", "-n", namespace, "--no-reissue", "--wait"
    )
    assert result.returncode == 0, result.stdout + result.stderr

    def published() -> dict[str, str] | None:
        config_map = client.CoreV1Api(api_client).read_namespaced_config_map(f"{sub}-ca", namespace)
        data = dict(config_map.data or {})
        crls = revocation.crls_in(data.get("ca.crl", ""))
        listed = any(c.get_revoked_certificate_by_serial_number(serial) for c in crls)
        return data if listed else None

    bundle = wait_for(published, timeout=30, what="the serial in the subordinate's CRL")
    intermediate, _ = ca_pair(api_client, f"{sub}-intermediate")
    (crl,) = [
        c
        for c in revocation.crls_in(bundle["ca.crl"])
        if c.get_revoked_certificate_by_serial_number(serial)
    ]
    assert crl.issuer == intermediate.subject
    assert crl.is_signature_valid(intermediate.public_key())
    parent_root, _ = ca_pair(api_client, f"{parent}-root")
    assert bundle["ca.crt"].encode() == pem(parent_root)
    accepted, output = revocation_faults.openssl_verify(tmp_path, bundle, lost)
    assert not accepted and "certificate revoked" in output, output
    accepted, output = revocation_faults.openssl_verify(tmp_path, bundle, kept)
    assert accepted, output
