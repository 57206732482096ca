"""CertificateRequests (enrolment by CSR) on a real apiserver with the real operator: a
device's own key signed when every name is its namespace's, a foreign name waiting for a
person with the verb `approve`, deny final, bad CSRs refused naming the field."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from kubernetes import client

from certsmith.pki import inspect
from tests import csrs
from tests.integration import certs
from tests.integration.conftest import OPERATOR_NAMESPACE, OperatorProcess, authority_ready
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


def add_condition(
    api_client: client.ApiClient,
    kubeconfig: str,
    user: str | None,
    namespace: str,
    name: str,
    condition: dict[str, str],
) -> subprocess.CompletedProcess[str]:
    """Add `condition` to the request's conditions as `user`, keeping the others (as the
    plugin does), on the resourceVersion read."""
    body = get(api_client, namespace, name)
    kept = [
        c
        for c in (body.get("status") or {}).get("conditions") or []
        if c["type"] != condition["type"]
    ]
    patch = {
        "metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
        "status": {"conditions": [*kept, condition]},
    }
    return as_user(
        kubeconfig,
        user,
        *("patch", f"{PLURAL}.{GROUP}", name, "-n", namespace, "--subresource=status"),
        *("--type=merge", "-p", json.dumps(patch)),
    )


def patch_status(
    kubeconfig: str, user: str | None, namespace: str, name: str, kind: str, patch: Any
) -> subprocess.CompletedProcess[str]:
    """A `kind` (merge, json) patch of the status subresource as `user`."""
    return as_user(
        kubeconfig,
        user,
        *("patch", f"{PLURAL}.{GROUP}", name, "-n", namespace, "--subresource=status"),
        *(f"--type={kind}", "-p", json.dumps(patch)),
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
    assert status["serialNumber"] == inspect.serial_hex(leaf)
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
    listed = plugin(kubeconfig, "status", "-n", namespace)
    waiting = f"1 CertificateRequests in namespace {namespace} wait for a decision"
    assert waiting in listed.stdout, listed.stdout + listed.stderr
    assert any(
        line.split()[:3] == ["gw", namespace, "cluster-root"] for line in listed.stdout.splitlines()
    )

    # The requester (a namespace editor) may create requests but not write their status.
    refused = set_condition(kubeconfig, users["editor"], namespace, "gw", [decision("Approved")])
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower(), refused.stderr
    # Someone who may write the status but lacks the verb: the policy refuses, naming it.
    refused = add_condition(
        api_client, kubeconfig, users["writer"], namespace, "gw", decision("Approved")
    )
    assert refused.returncode != 0
    assert "mallory may not approve or deny CertificateRequests of CertificateAuthority" in (
        refused.stderr
    )
    assert "verb approve on certificateauthorities.certsmith.dev/cluster-root" in refused.stderr
    # Nor may she write the other decision, or get around it by writing Ready.
    assert set_condition(kubeconfig, "mallory", namespace, "gw", [decision("Denied")]).returncode
    assert certs.condition(get(api_client, namespace, "gw"), "Approved") is None

    approved = add_condition(
        api_client, kubeconfig, users["approver"], namespace, "gw", decision("Approved")
    )
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


def _serial(api_client: client.ApiClient, namespace: str, name: str) -> str | None:
    return (get(api_client, namespace, name).get("status") or {}).get("serialNumber")


def test_a_decision_and_a_certificate_can_never_be_removed_not_even_by_emptying_status(
    api_client: client.ApiClient,
    kubeconfig: str,
    running_operator: OperatorProcess,
    namespace: str,
    users: dict[str, str],
) -> None:
    """The policy judges the whole old and new objects: emptying the status (merge null,
    JSON remove) or dropping the decision is refused to everyone, the approver and the
    cluster admin too; so a denied request stays denied and a signed one is signed once."""
    pem = csrs.csr_pem(csrs.ecdsa_key(), dns_names=["t-ip.elsewhere.svc"])
    create(api_client, csrs.request_body("t-ip", namespace, pem))
    wait_ready_reason(api_client, namespace, "t-ip", "Pending")
    denied = plugin(kubeconfig, "deny", "t-ip", "-n", namespace)
    assert denied.returncode == 0, denied.stderr
    wait_ready_reason(api_client, namespace, "t-ip", "Denied")
    final = "the Approved or Denied decision is final: it cannot be removed or changed"
    for user in (users["approver"], None):
        for kind, patch in (
            ("merge", {"status": None}),
            ("json", [{"op": "remove", "path": "/status"}]),
        ):
            refused = patch_status(kubeconfig, user, namespace, "t-ip", kind, patch)
            assert refused.returncode != 0 and final in refused.stderr, (user, kind, refused.stderr)
        ready_only = [
            c
            for c in get(api_client, namespace, "t-ip")["status"]["conditions"]
            if c["type"] == "Ready"
        ]
        dropped = set_condition(kubeconfig, user, namespace, "t-ip", ready_only)
        # The CRD's transition rule sees this one first (it sees a status that remains).
        assert dropped.returncode != 0 and "Denied is final" in dropped.stderr, dropped.stderr
    assert (certs.condition(get(api_client, namespace, "t-ip"), "Denied") or {}).get(
        "status"
    ) == "True"

    own = csrs.csr_pem(csrs.ecdsa_key(), dns_names=[f"once.{namespace}.svc"])
    create(api_client, csrs.request_body("once", namespace, own))
    serial = wait_ready_reason(api_client, namespace, "once", "Issued")["status"]["serialNumber"]
    emptied = patch_status(kubeconfig, None, namespace, "once", "merge", {"status": None})
    assert emptied.returncode != 0
    assert (
        "status.certificate: a request is signed once" in emptied.stderr or final in emptied.stderr
    )
    removed = patch_status(
        kubeconfig,
        None,
        namespace,
        "once",
        "json",
        [{"op": "remove", "path": "/status/certificate"}],
    )
    assert "status.certificate: a request is signed once" in removed.stderr, removed.stderr
    waiting = csrs.csr_pem(csrs.ecdsa_key(), dns_names=["w.elsewhere.svc"])
    create(api_client, csrs.request_body("waits", namespace, waiting))
    pending = wait_ready_reason(api_client, namespace, "waits", "Pending")
    running_operator.stop()
    running_operator.start()
    running_operator.wait_serving(api_client)
    time.sleep(5)  # the new term's listing judged both again
    assert _serial(api_client, namespace, "once") == serial
    # Judged again at the start, a pending request is left as it was, not announced again.
    assert get(api_client, namespace, "waits")["status"] == pending["status"]
    announced = [
        e.count or 1
        for e in client.CoreV1Api(api_client).list_namespaced_event(namespace).items
        if e.involved_object.name == "waits" and e.reason == "ApprovalPending"
    ]
    assert announced == [1]


def test_only_certsmith_writes_the_certificate_ca_and_ready(
    api_client: client.ApiClient,
    kubeconfig: str,
    running_operator: OperatorProcess,
    namespace: str,
    users: dict[str, str],
) -> None:
    """A status writer without `sign` (even an approver) may only add the decision: a
    forged certificate, ca or Ready is refused, so what the device downloads is certsmith's
    (RBAC verb `sign` on the authority, only in certsmith's ClusterRole)."""
    own = csrs.csr_pem(csrs.ecdsa_key(), dns_names=[f"cam.{namespace}.svc"])
    create(api_client, csrs.request_body("cam", namespace, own))
    issued = wait_ready_reason(api_client, namespace, "cam", "Issued")
    evil = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    only_decision = "may only add the Approved or Denied condition"
    for user in (users["approver"], users["writer"]):
        forged = patch_status(kubeconfig, user, namespace, "cam", "merge", {"status": {"ca": evil}})
        assert forged.returncode != 0 and f"status: {user} {only_decision}" in forged.stderr, (
            forged.stderr
        )
        assert "verb sign on certificateauthorities.certsmith.dev/cluster-root" in forged.stderr
    assert get(api_client, namespace, "cam")["status"]["ca"] == issued["status"]["ca"]

    foreign = csrs.csr_pem(csrs.ecdsa_key(), dns_names=["db.some-other-namespace.svc"])
    create(api_client, csrs.request_body("wait", namespace, foreign))
    wait_ready_reason(api_client, namespace, "wait", "Pending")
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "Issued",
        "message": "forged",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    forged_status = {
        "status": {"certificate": evil, "notAfter": "2099-01-01T00:00:00Z", "conditions": [ready]}
    }
    forged = patch_status(kubeconfig, users["writer"], namespace, "wait", "merge", forged_status)
    assert forged.returncode != 0 and only_decision in forged.stderr, forged.stderr
    # An approver adding a Ready of their own with the decision is refused too.
    body = get(api_client, namespace, "wait")
    both = set_condition(
        kubeconfig, users["approver"], namespace, "wait", [decision("Approved"), ready]
    )
    assert both.returncode != 0 and only_decision in both.stderr, both.stderr
    assert "certificate" not in get(api_client, namespace, "wait")["status"]
    assert (
        get(api_client, namespace, "wait")["metadata"]["resourceVersion"]
        == body["metadata"]["resourceVersion"]
    )
    approved = add_condition(
        api_client, kubeconfig, users["approver"], namespace, "wait", decision("Approved")
    )
    assert approved.returncode == 0, approved.stderr
    signed = wait_ready_reason(api_client, namespace, "wait", "Issued")
    assert signed["status"]["certificate"].startswith("-----BEGIN CERTIFICATE-----\nMII")


def test_auto_approved_is_certsmiths_reason_and_refused_from_a_person(
    api_client: client.ApiClient,
    kubeconfig: str,
    running_operator: OperatorProcess,
    namespace: str,
    users: dict[str, str],
) -> None:
    foreign = csrs.csr_pem(csrs.ecdsa_key(), dns_names=["db.some-other-namespace.svc"])
    create(api_client, csrs.request_body("auto", namespace, foreign))
    wait_ready_reason(api_client, namespace, "auto", "Pending")
    refused = add_condition(
        api_client,
        kubeconfig,
        users["approver"],
        namespace,
        "auto",
        decision("Approved", "AutoApproved"),
    )
    assert refused.returncode != 0
    assert "status.conditions: reason AutoApproved is certsmith's own" in refused.stderr, (
        refused.stderr
    )
    by_plugin = plugin(kubeconfig, "approve", "auto", "-n", namespace, "--reason", "AutoApproved")
    assert by_plugin.returncode == 2
    assert "--reason AutoApproved is certsmith's own" in by_plugin.stderr
    assert certs.condition(get(api_client, namespace, "auto"), "Approved") is None


def bind_in_effect(
    kubeconfig: str, namespace: str, cluster_role: str, can_i: tuple[str, ...]
) -> None:
    """A RoleBinding of `cluster_role` to erin in `namespace`, once `kubectl auth can-i
    *can_i` says yes for her there."""
    kubectl(
        kubeconfig,
        *("create", "rolebinding", f"erin-{cluster_role}", "-n", namespace),
        *(f"--clusterrole={cluster_role}", "--user=erin"),
    )
    wait_for(
        lambda: as_user(kubeconfig, "erin", "auth", "can-i", *can_i, "-n", namespace).returncode
        == 0,
        timeout=30,
        what=f"erin's {cluster_role} in {namespace} in effect",
    )


def test_a_namespace_approver_decides_in_their_namespace_only(
    api_client: client.ApiClient,
    kubeconfig: str,
    running_operator: OperatorProcess,
    namespace: str,
    users: dict[str, str],
) -> None:
    """A RoleBinding of certsmith-approver in a namespace (docs/rbac.md): the policy's
    authorizer check names the request's namespace."""
    core = client.CoreV1Api(api_client)
    other = f"{namespace}-b"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=other)))
    try:
        bind_in_effect(
            kubeconfig,
            namespace,
            "certsmith-approver",
            ("approve", f"certificateauthorities.{GROUP}/cluster-root"),
        )
        for where in (namespace, other):
            pem = csrs.csr_pem(csrs.ecdsa_key(), dns_names=["gw.partner.example.org"])
            create(api_client, csrs.request_body("gw", where, pem))
            wait_ready_reason(api_client, where, "gw", "Pending")
        allowed = add_condition(
            api_client, kubeconfig, "erin", namespace, "gw", decision("Approved")
        )
        assert allowed.returncode == 0, allowed.stderr
        wait_ready_reason(api_client, namespace, "gw", "Issued")
        kubectl(
            kubeconfig,
            "create",
            "clusterrole",
            f"read-{other}",
            "--verb=get,patch",
            f"--resource={PLURAL}.{GROUP},{PLURAL}.{GROUP}/status",
        )
        bind_in_effect(
            kubeconfig,
            other,
            f"read-{other}",
            ("patch", f"{PLURAL}.{GROUP}", "--subresource=status"),
        )
        elsewhere = add_condition(api_client, kubeconfig, "erin", other, "gw", decision("Approved"))
        assert elsewhere.returncode != 0
        assert (
            "erin may not approve or deny CertificateRequests of CertificateAuthority "
            f"cluster-root in namespace {other}" in elsewhere.stderr
        ), elsewhere.stderr
    finally:
        kubectl(kubeconfig, "delete", "clusterrole", f"read-{other}", check=False)
        core.delete_namespace(other)


@pytest.mark.parametrize(
    ("pem", "says"),
    [
        (
            csrs.crafted_csr(
                csrs.ecdsa_key(),
                common_name="cam.x.svc",
                extensions=[csrs.der_san_dns("cam.x.svc")] * 2,
            ),
            "spec.request: is not a readable PKCS#10 request: it has the extension "
            "subjectAltName twice",
        ),
        (
            csrs.crafted_csr(
                csrs.ecdsa_key(), common_name="cam.x.svc", extensions=[csrs.DER_KEY_USAGE] * 2
            ),
            "spec.request: is not a readable PKCS#10 request: it has the extension keyUsage twice",
        ),
        (
            csrs.crafted_csr(csrs.ecdsa_key(), common_name="cam.x.svc", version=1),
            "spec.request: is not a readable PKCS#10 request: 1 is not a valid CSR version",
        ),
        (
            csrs.crafted_csr(csrs.ecdsa_key(), common_name="cam.x.svc", hash_name="sha1"),
            "spec.request: the CSR's signature algorithm SHA1 is not accepted",
        ),
        (
            (
                lambda key: key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
                + csrs.csr_pem(key, common_name="cam.x.svc")
            )(csrs.ecdsa_key()),
            "spec.request: holds a PEM PRIVATE KEY: never send the private key",
        ),
    ],
    ids=["duplicate-san", "duplicate-key-usage", "version-1", "sha1", "private-key"],
)
def test_malformed_csrs_are_refused_and_invalid_when_admitted_anyway(
    api_client: client.ApiClient,
    kubeconfig: str,
    running_operator: OperatorProcess,
    namespace: str,
    pem: bytes,
    says: str,
    request: pytest.FixtureRequest,
) -> None:
    """Refused by the webhook naming spec.request; created while admission is off, the
    operator marks it InvalidRequest with the same reason (never an exception, never left
    without a status)."""
    body = csrs.request_body("odd", namespace, pem)
    answer = certs.kubectl_apply(kubeconfig, namespace, body)
    assert answer.returncode != 0 and says in answer.stderr, answer.stderr
    request.getfixturevalue("validating_webhook_down")
    create(api_client, body)
    invalid = wait_ready_reason(api_client, namespace, "odd", "InvalidRequest")
    assert says in ready(invalid)["message"]
    assert "certificate" not in invalid["status"]


def test_ready_turns_false_at_not_after_also_across_a_restart(
    api_client: client.ApiClient, running_operator: OperatorProcess, namespace: str
) -> None:
    """Scheduled from a new term's listing (issued before the restart) and at signing
    (issued after it)."""

    def issue(name: str) -> dict[str, Any]:
        pem = csrs.csr_pem(csrs.ecdsa_key(), dns_names=[f"{name}.{namespace}.svc"])
        create(api_client, csrs.request_body(name, namespace, pem, duration="1m"))
        return wait_ready_reason(api_client, namespace, name, "Issued")

    issued = {"before": issue("before")}
    running_operator.stop()
    running_operator.start()
    running_operator.wait_serving(api_client)
    issued["after"] = issue("after")
    for name, was in issued.items():
        body = wait_ready_reason(api_client, namespace, name, "Expired", timeout=90)
        assert ready(body)["status"] == "False"
        assert ready(body)["message"].startswith(
            f"the certificate expired at {body['status']['notAfter']}: the device enrols again"
        )
        assert body["status"]["certificate"] == was["status"]["certificate"]


@pytest.fixture
def own_authority(api_client: client.ApiClient, running_operator: OperatorProcess) -> Iterator[str]:
    """A CertificateAuthority of the test's own (rotation propagationDelay 1s), Ready;
    removed with its CA Secrets after."""
    name = f"dev-{uuid.uuid4().hex[:8]}"
    certs.create_authority(api_client, name, rotation={"propagationDelay": "1s"})
    wait_for(lambda: authority_ready(api_client, name), timeout=30, what=f"{name} Ready")
    yield name
    objects = client.CustomObjectsApi(api_client)
    objects.delete_cluster_custom_object(GROUP, VERSION, "certificateauthorities", name)
    client.CoreV1Api(api_client).delete_collection_namespaced_secret(
        OPERATOR_NAMESPACE, label_selector=f"certsmith.dev/authority={name}"
    )


def test_a_root_rotation_tells_requests_under_the_retired_root_to_enrol_again(
    api_client: client.ApiClient, namespace: str, own_authority: str
) -> None:
    objects = client.CustomObjectsApi(api_client)

    def authority() -> dict[str, Any]:
        found: dict[str, Any] = objects.get_cluster_custom_object(
            GROUP, VERSION, "certificateauthorities", own_authority
        )
        return found

    pem = csrs.csr_pem(csrs.ecdsa_key(), dns_names=[f"old.{namespace}.svc"])
    create(api_client, csrs.request_body("old", namespace, pem, issuerRef={"name": own_authority}))
    issued = wait_ready_reason(api_client, namespace, "old", "Issued")
    old_roots = authority()["status"]["trustedRoots"]
    objects.patch_cluster_custom_object(
        GROUP,
        VERSION,
        "certificateauthorities",
        own_authority,
        {
            "metadata": {
                "annotations": {"certsmith.dev/rotate-requested-at": "2030-01-01T00:00:00Z"}
            }
        },
    )
    wait_for(
        lambda: (status := authority().get("status") or {}).get("phase") == "Ready"
        and status.get("trustedRoots") not in (None, old_roots)
        and len(status["trustedRoots"]) == 1,
        timeout=90,
        what=f"{own_authority}'s rotation ended",
    )
    body = wait_ready_reason(api_client, namespace, "old", "RootRetired", timeout=30)
    assert ready(body)["message"].startswith(
        f"the certificate chains to a root CertificateAuthority {own_authority} no longer trusts"
    )
    assert body["status"]["certificate"] == issued["status"]["certificate"]
    # The event is posted after the status write: waited for, not read once.
    wait_for(
        lambda: "RootRetired"
        in [
            e.reason
            for e in client.CoreV1Api(api_client).list_namespaced_event(namespace).items
            if e.involved_object.name == "old" and e.involved_object.kind == "CertificateRequest"
        ],
        timeout=15,
        what="a RootRetired event on the request",
    )
    # A new CSR is signed under the new root.
    again = csrs.csr_pem(csrs.ecdsa_key(), dns_names=[f"old.{namespace}.svc"])
    create(
        api_client, csrs.request_body("new", namespace, again, issuerRef={"name": own_authority})
    )
    renewed = wait_ready_reason(api_client, namespace, "new", "Issued")
    intermediate = x509.load_pem_x509_certificates(renewed["status"]["certificate"].encode())[-1]
    root = x509.load_pem_x509_certificate(renewed["status"]["ca"].encode())
    intermediate.verify_directly_issued_by(root)
