"""CertificateRequests (enrolment by CSR) on a real apiserver with the real operator: a
device's own key signed when every name is its namespace's, a foreign name waiting for a
person with the verb `approve`, deny final, bad CSRs refused naming the field."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from kubernetes import client

from tests import csrs
from tests.integration import certs
from tests.integration.conftest import OperatorProcess
from tests.support import REPO_ROOT, kubectl, kubectl_path, wait_for

pytestmark = pytest.mark.integration

GROUP, VERSION, PLURAL = "certsmith.dev", "v1alpha1", "certificaterequests"
PLUGIN = Path(sys.executable).parent / "kubectl-certsmith"
RBAC = REPO_ROOT / "manifests" / "rbac.yaml"


def create(api_client: client.ApiClient, body: dict[str, Any]) -> dict[str, Any]:
    objects = client.CustomObjectsApi(api_client)
    namespace = body["metadata"]["namespace"]
    created: dict[str, Any] = objects.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body
    )
    return created


def get(api_client: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return found


def ready(body: dict[str, Any]) -> dict[str, Any]:
    return certs.condition(body) or {}


def wait_ready_reason(
    api_client: client.ApiClient, namespace: str, name: str, reason: str, timeout: float = 20
) -> dict[str, Any]:
    """The request once its Ready condition has `reason`."""
    return wait_for(
        lambda: (body := get(api_client, namespace, name))
        and ready(body).get("reason") == reason
        and body,
        timeout=timeout,
        what=f"CertificateRequest {namespace}/{name} Ready reason {reason}",
    )


def plugin(kubeconfig: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PLUGIN), "--kubeconfig", kubeconfig, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def as_user(kubeconfig: str, user: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    """kubectl impersonating `user` (Impersonate-User), as a namespace user would run it;
    None: as the cluster admin of the kubeconfig."""
    impersonate = [f"--as={user}"] if user else []
    return subprocess.run(
        [kubectl_path(), "--kubeconfig", kubeconfig, *impersonate, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def set_condition(
    kubeconfig: str, user: str | None, namespace: str, name: str, conditions: list[dict[str, str]]
) -> subprocess.CompletedProcess[str]:
    """Write status.conditions through the status subresource as `user`."""
    patch = {"status": {"conditions": conditions}}
    return as_user(
        kubeconfig,
        user,
        *("patch", f"{PLURAL}.{GROUP}", name, "-n", namespace, "--subresource=status"),
        *("--type=merge", "-p", json.dumps(patch)),
    )


def decision(kind: str, reason: str = "ByHand") -> dict[str, str]:
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": "by hand",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }


@pytest.fixture(scope="module")
def users(kubeconfig: str, operator: OperatorProcess) -> Iterator[dict[str, str]]:
    """manifests/rbac.yaml applied; `carol` may approve (certsmith-approver), `mallory` may
    write requests' status but not approve (a role of her own), `dev` is a namespace editor
    (the built-in `edit`, which aggregates certsmith-edit) everywhere."""
    kubectl(kubeconfig, "apply", "-f", str(RBAC))
    suffix = uuid.uuid4().hex[:6]
    made = [
        ("clusterrolebinding", f"carol-{suffix}", "--clusterrole=certsmith-approver", "carol"),
        ("clusterrolebinding", f"dev-{suffix}", "--clusterrole=edit", "dev"),
        ("clusterrolebinding", f"mallory-{suffix}", f"--clusterrole=status-{suffix}", "mallory"),
    ]
    kubectl(
        kubeconfig,
        *("create", "clusterrole", f"status-{suffix}", "--verb=get,patch,update"),
        f"--resource={PLURAL}.{GROUP}/status,{PLURAL}.{GROUP}",
    )
    for kind, name, role, user in made:
        kubectl(kubeconfig, "create", kind, name, role, f"--user={user}")

    def in_effect() -> bool:
        checks = [
            ("carol", "approve", f"certificateauthorities.{GROUP}/cluster-root"),
            ("mallory", "patch", f"{PLURAL}.{GROUP}", "--subresource=status"),
            ("dev", "create", f"{PLURAL}.{GROUP}"),
        ]
        return all(
            as_user(kubeconfig, user, "auth", "can-i", verb, *what, "-n", "default").returncode == 0
            for user, verb, *what in checks
        )

    wait_for(in_effect, timeout=30, what="the test users' RBAC in effect")
    yield {"approver": "carol", "writer": "mallory", "editor": "dev"}
    for kind, name, _, _ in made:
        kubectl(kubeconfig, "delete", kind, name, check=False)
    kubectl(kubeconfig, "delete", "clusterrole", f"status-{suffix}", check=False)


def test_own_names_are_approved_and_signed_for_the_devices_key(
    api_client: client.ApiClient, running_operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    key = csrs.ecdsa_key()
    own = f"cam-1.{namespace}.svc"
    pem = csrs.csr_pem(
        key,
        common_name=own,
        dns_names=[own],
        uris=[f"spiffe://cluster.local/ns/{namespace}/sa/cam"],
        extensions=[x509.BasicConstraints(ca=True, path_length=None)],
    )
    create(api_client, csrs.request_body("cam-1", namespace, pem, duration="24h"))
    body = wait_ready_reason(api_client, namespace, "cam-1", "Issued")
    status = body["status"]
    approved = certs.condition(body, "Approved") or {}
    assert (approved.get("status"), approved.get("reason")) == ("True", "AutoApproved")
    assert ready(body)["status"] == "True"
    chain = x509.load_pem_x509_certificates(status["certificate"].encode())
    leaf, intermediate = chain
    assert leaf.public_key() == key.public_key()
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds() == 24 * 3600 + 60
    assert status["serialNumber"] == format(leaf.serial_number, "x")
    for file, data in (
        ("leaf.pem", leaf.public_bytes(serialization.Encoding.PEM)),
        ("intermediate.pem", intermediate.public_bytes(serialization.Encoding.PEM)),
        ("ca.pem", status["ca"].encode()),
    ):
        (tmp_path / file).write_bytes(data)
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", "ca.pem", "-untrusted", "intermediate.pem", "leaf.pem"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    events = [
        e.reason
        for e in client.CoreV1Api(api_client).list_namespaced_event(namespace).items
        if e.involved_object.name == "cam-1" and e.involved_object.kind == "CertificateRequest"
    ]
    assert events == ["Issued"]


def test_a_name_granted_by_the_authority_is_approved_automatically(
    api_client: client.ApiClient, running_operator: OperatorProcess, namespace: str
) -> None:
    """The test namespaces' grant (conftest: *.example.com, 10.0.0.0/8) counts as for a
    Certificate; a name beside it that is not granted makes the request wait."""
    granted = csrs.csr_pem(
        csrs.ecdsa_key(), dns_names=["gw.example.com"], ip_addresses=["10.1.2.3"]
    )
    create(api_client, csrs.request_body("granted", namespace, granted))
    body = wait_ready_reason(api_client, namespace, "granted", "Issued")
    assert (certs.condition(body, "Approved") or {}).get("reason") == "AutoApproved"
    beyond = csrs.csr_pem(csrs.ecdsa_key(), dns_names=["gw.example.com", "gw.example.org"])
    create(api_client, csrs.request_body("beyond", namespace, beyond))
    body = wait_ready_reason(api_client, namespace, "beyond", "Pending")
    assert "'gw.example.org'" in ready(body)["message"]
    assert "'gw.example.com'" not in ready(body)["message"]


def test_a_foreign_name_waits_and_an_approver_gets_it_signed(
    api_client: client.ApiClient,
    kubeconfig: str,
    running_operator: OperatorProcess,
    namespace: str,
    users: dict[str, str],
) -> None:
    foreign = "db.some-other-namespace.svc"
    pem = csrs.csr_pem(csrs.ecdsa_key(), dns_names=[f"gw.{namespace}.svc", foreign])
    create(api_client, csrs.request_body("gw", namespace, pem))
    body = wait_ready_reason(api_client, namespace, "gw", "Pending")
    assert certs.condition(body, "Approved") is None
    assert f"'{foreign}'" in ready(body)["message"]
    assert f"'gw.{namespace}.svc'" not in ready(body)["message"]
    assert "certificate" not in body["status"]

    # The requester (a namespace editor) may create requests but not write their status.
    refused = set_condition(kubeconfig, users["editor"], namespace, "gw", [decision("Approved")])
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower(), refused.stderr
    # Someone who may write the status but lacks the verb: the policy refuses, naming it.
    refused = set_condition(kubeconfig, users["writer"], namespace, "gw", [decision("Approved")])
    assert refused.returncode != 0
    assert "mallory may not approve or deny CertificateRequests of CertificateAuthority" in (
        refused.stderr
    )
    assert "verb approve on certificateauthorities.certsmith.dev/cluster-root" in refused.stderr
    # Nor may she write the other decision, or get around it by writing Ready.
    assert set_condition(kubeconfig, "mallory", namespace, "gw", [decision("Denied")]).returncode
    assert certs.condition(get(api_client, namespace, "gw"), "Approved") is None

    approved = set_condition(kubeconfig, users["approver"], namespace, "gw", [decision("Approved")])
    assert approved.returncode == 0, approved.stderr
    body = wait_ready_reason(api_client, namespace, "gw", "Issued")
    leaf = x509.load_pem_x509_certificates(body["status"]["certificate"].encode())[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [f"gw.{namespace}.svc", foreign]
    assert (certs.condition(body, "Approved") or {}).get("reason") == "ByHand"


def test_deny_is_final_and_nothing_is_ever_signed(
    api_client: client.ApiClient,
    kubeconfig: str,
    running_operator: OperatorProcess,
    namespace: str,
) -> None:
    pem = csrs.csr_pem(csrs.ecdsa_key(), dns_names=["stolen.other.svc"])
    create(api_client, csrs.request_body("lost", namespace, pem))
    wait_ready_reason(api_client, namespace, "lost", "Pending")
    denied = plugin(
        kubeconfig, "deny", "lost", "-n", namespace, "--reason", "DeviceLost", "--message", "gone"
    )
    assert denied.returncode == 0, denied.stderr
    assert denied.stdout.strip() == "certificaterequest lost denied"
    body = wait_ready_reason(api_client, namespace, "lost", "Denied")
    assert ready(body)["message"] == "denied: gone"
    assert (certs.condition(body, "Denied") or {}).get("reason") == "DeviceLost"

    again = plugin(kubeconfig, "approve", "lost", "-n", namespace)
    assert again.returncode == 1
    assert "is denied, which is final" in again.stderr
    # Past the plugin, the CRD keeps it: neither both, nor Denied withdrawn.
    both = set_condition(
        kubeconfig, None, namespace, "lost", [decision("Denied"), decision("Approved")]
    )
    assert "Approved or Denied, never both" in both.stderr
    withdrawn = set_condition(kubeconfig, None, namespace, "lost", [decision("Approved")])
    assert "Denied is final" in withdrawn.stderr
    assert "certificate" not in get(api_client, namespace, "lost")["status"]


def test_spec_is_immutable(
    api_client: client.ApiClient, kubeconfig: str, running_operator: OperatorProcess, namespace: str
) -> None:
    pem = csrs.csr_pem(csrs.ecdsa_key(), dns_names=[f"a.{namespace}.svc"])
    create(api_client, csrs.request_body("fixed", namespace, pem))
    body = wait_ready_reason(api_client, namespace, "fixed", "Issued")
    serial = body["status"]["serialNumber"]
    other = csrs.request_value(csrs.csr_pem(csrs.ecdsa_key(), dns_names=[f"b.{namespace}.svc"]))
    for patch in ({"spec": {"duration": "1h"}}, {"spec": {"request": other}}):
        edited = kubectl(
            kubeconfig,
            *("patch", f"{PLURAL}.{GROUP}", "fixed", "-n", namespace),
            *("--type=merge", "-p", json.dumps(patch)),
            check=False,
        )
        assert edited.returncode != 0
        assert "spec is immutable" in edited.stderr
    # Metadata stays editable, and nothing is signed again.
    labelled = kubectl(
        kubeconfig, "label", f"{PLURAL}.{GROUP}", "fixed", "-n", namespace, "site=lab", check=False
    )
    assert labelled.returncode == 0, labelled.stderr
    assert get(api_client, namespace, "fixed")["status"]["serialNumber"] == serial


def _bad_signature() -> bytes:
    pem = csrs.csr_pem(csrs.ecdsa_key(), common_name="aaaa.x.svc")
    return csrs.tampered(pem, b"aaaa.x", b"bbbb.x")


@pytest.mark.parametrize(
    ("request_value", "says"),
    [
        ("not base64!", "spec.request"),
        (
            csrs.request_value(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            "spec.request: holds a PEM CERTIFICATE",
        ),
        (csrs.request_value(_bad_signature()), "spec.request: the CSR's signature does not verify"),
        (
            csrs.request_value(
                csrs.csr_pem(
                    rsa.generate_private_key(public_exponent=65537, key_size=1024),
                    common_name="a.x.svc",
                )
            ),
            "spec.request: the CSR's key is an RSA 1024-bit key",
        ),
        (
            csrs.request_value(
                csrs.csr_pem(csrs.ecdsa_key(), dns_names=[f"d{i}.x.svc" for i in range(2000)])
            ),
            "spec.request: subjectAltName DNS names: has 2000 entries (max 1000)",
        ),
    ],
)
def test_bad_csrs_are_refused_at_creation_naming_the_field(
    kubeconfig: str,
    running_operator: OperatorProcess,
    namespace: str,
    request_value: str,
    says: str,
) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CertificateRequest",
        "metadata": {"name": "bad", "namespace": namespace},
        "spec": {"request": request_value},
    }
    answer = certs.kubectl_apply(kubeconfig, namespace, body)
    assert answer.returncode != 0
    assert says in answer.stderr, answer.stderr
    assert (
        kubectl(kubeconfig, "get", f"{PLURAL}.{GROUP}", "-n", namespace, "-o", "name").stdout == ""
    )


def test_a_bad_csr_admitted_while_the_webhook_was_down_is_never_signed(
    api_client: client.ApiClient, validating_webhook_down: None, namespace: str
) -> None:
    create(api_client, csrs.request_body("weak", namespace, _bad_signature()))
    body = wait_ready_reason(api_client, namespace, "weak", "InvalidRequest")
    assert "spec.request: the CSR's signature does not verify" in ready(body)["message"]
    assert certs.condition(body, "Approved") is None
    assert "certificate" not in body["status"]


def test_a_missing_authority_is_said_and_an_approval_made_while_the_operator_was_down_is_signed(
    api_client: client.ApiClient,
    kubeconfig: str,
    running_operator: OperatorProcess,
    namespace: str,
) -> None:
    pem = csrs.csr_pem(csrs.ecdsa_key(), dns_names=[f"s.{namespace}.svc"])
    create(api_client, csrs.request_body("lost-ca", namespace, pem, issuerRef={"name": "nope"}))
    body = wait_ready_reason(api_client, namespace, "lost-ca", "IssuerNotReady")
    assert "CertificateAuthority nope does not exist" in ready(body)["message"]

    foreign = csrs.csr_pem(csrs.ecdsa_key(), dns_names=["web.elsewhere.svc"])
    create(api_client, csrs.request_body("later", namespace, foreign))
    wait_ready_reason(api_client, namespace, "later", "Pending")
    running_operator.stop()
    try:
        approved = plugin(kubeconfig, "approve", "later", "-n", namespace)
        assert approved.returncode == 0, approved.stderr
    finally:
        running_operator.start()
        running_operator.wait_serving(api_client)
    body = wait_ready_reason(api_client, namespace, "later", "Issued", timeout=30)
    assert (certs.condition(body, "Approved") or {}).get("reason") == "KubectlCertsmith"
