"""`kubectl certsmith` against the real apiserver and the real operator, run as a user runs it."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from kubernetes import client

from certsmith.pki import inspect
from tests.integration import certs
from tests.support import kubectl, kubectl_path, wait_for

pytestmark = pytest.mark.integration

# The console script installed next to the interpreter running the tests (the venv's bin).
BIN_DIR = Path(sys.executable).parent
PLUGIN = BIN_DIR / "kubectl-certsmith"
RENEW_ANNOTATION = "certsmith.dev/renew-requested-at"
ROTATE_ANNOTATION = "certsmith.dev/rotate-requested-at"


def plugin(kubeconfig: str, *args: str) -> subprocess.CompletedProcess[str]:
    assert PLUGIN.exists(), f"{PLUGIN} is missing: run pip install -e '.[dev]'"
    return subprocess.run(
        [str(PLUGIN), "--kubeconfig", kubeconfig, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


ready = certs.wait_ready


def row(text: str, first: str) -> list[str]:
    """The cells of the table row starting with `first` (cells are 2+ spaces apart)."""
    for line in text.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in:\n{text}")


def certificates_in(sec: client.V1Secret, key: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(certs.secret_bytes(sec, key))


@pytest.fixture
def other_namespace(api_client: client.ApiClient) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(api_client)
    labels = {"certsmith.dev/test-grants": "true"}  # may use example.com names
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
    )
    yield name
    core.delete_namespace(name)


def test_renew_gives_a_new_serial_through_the_operator(
    api_client, namespace, running_operator, kubeconfig
):
    certs.create(api_client, namespace, certs.certificate("web", dnsNames=["web.example.com"]))
    old = ready(api_client, namespace, "web")["status"]["serialNumber"]

    result = plugin(kubeconfig, "renew", "web", "-n", namespace, "--wait", "--timeout", "30s")

    assert result.returncode == 0, result.stderr
    body = ready(api_client, namespace, "web")
    new = body["status"]["serialNumber"]
    assert new != old
    assert f"Certificate {namespace}/web renewed: serial {old} → {new}" in result.stdout
    # The Secret really holds the new certificate, issued by the operator for this request.
    sec = certs.secret(api_client, namespace, "web-tls")
    assert inspect.serial_hex(certs.leaf_of(sec)) == new
    requested = body["metadata"]["annotations"][RENEW_ANNOTATION]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", requested)
    assert abs(datetime.fromisoformat(requested) - datetime.now(UTC)) < timedelta(minutes=1)
    assert sec.metadata.annotations[RENEW_ANNOTATION] == requested
    assert f"Certificate {namespace}/web: renewal requested at {requested}" in result.stdout
    renewed = [e for e in certs.events_for(api_client, namespace, "web") if e.reason == "Renewed"]
    assert renewed and new in renewed[-1].message


def test_renew_all_renews_every_certificate_in_the_namespace_and_no_other(
    api_client, namespace, other_namespace, running_operator, kubeconfig
):
    names = ("a", "b", "c")
    for name in names:
        certs.create(api_client, namespace, certs.certificate(name, dnsNames=[f"{name}.example"]))
    certs.create(
        api_client, other_namespace, certs.certificate("elsewhere", commonName="x.example")
    )
    before = {name: ready(api_client, namespace, name)["status"]["serialNumber"] for name in names}
    elsewhere = ready(api_client, other_namespace, "elsewhere")["status"]["serialNumber"]

    result = plugin(kubeconfig, "renew", "--all", "-n", namespace, "--wait")

    assert result.returncode == 0, result.stderr
    for name in names:
        after = certs.get(api_client, namespace, name)["status"]["serialNumber"]
        assert after != before[name]
        assert f"Certificate {namespace}/{name} renewed: serial {before[name]} → {after}" in (
            result.stdout
        )
    untouched = certs.get(api_client, other_namespace, "elsewhere")
    assert untouched["status"]["serialNumber"] == elsewhere
    assert RENEW_ANNOTATION not in (untouched["metadata"].get("annotations") or {})


def test_status_lists_a_broken_certificate_with_its_reason_and_exits_1(
    api_client, namespace, running_operator, kubeconfig, validating_webhook_down
):
    # Admitted only because the validating webhook is down, as after an outage.
    certs.create(api_client, namespace, certs.certificate("broken", dnsNames=["bad..name"]))
    certs.create(api_client, namespace, certs.certificate("web", dnsNames=["web.example.com"]))
    web = ready(api_client, namespace, "web")
    wait_for(
        lambda: (certs.condition(certs.get(api_client, namespace, "broken")) or {}).get("reason")
        == "InvalidSpec",
        timeout=15,
        what="broken Certificate reported InvalidSpec",
    )

    result = plugin(kubeconfig, "status", "-n", namespace)

    assert result.returncode == 1, result.stderr
    not_ready, expiring, apis = result.stdout.split("\n\n")
    assert apis.splitlines()[0] == "Pod-certificate APIs:"
    assert not_ready.splitlines()[0] == (
        f"1 of 2 Certificates in namespace {namespace} are not Ready:"
    )
    broken = row(not_ready, "broken")
    assert broken[:4] == ["broken", namespace, "False", "InvalidSpec"]
    assert "'bad..name' is not a valid DNS name" in broken[4]
    assert "web" not in [re.split(r"\s{2,}", line)[0] for line in not_ready.splitlines()]
    assert row(expiring, "web")[:3] == ["web", namespace, web["status"]["notAfter"]]

    as_json = json.loads(plugin(kubeconfig, "status", "-n", namespace, "-o", "json").stdout)
    assert as_json["allReady"] is False
    assert [(c["name"], c["reason"]) for c in as_json["notReady"]] == [("broken", "InvalidSpec")]

    # Through kubectl itself: the plugin is found on PATH as `kubectl certsmith`.
    env = {**os.environ, "PATH": f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}"}
    via_kubectl = subprocess.run(
        [kubectl_path(), "certsmith", "status", "-n", namespace, "--kubeconfig", kubeconfig],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert via_kubectl.returncode == 1, via_kubectl.stderr
    assert row(via_kubectl.stdout, "broken")[3] == "InvalidSpec"

    client.CustomObjectsApi(api_client).delete_namespaced_custom_object(
        certs.GROUP, certs.VERSION, namespace, certs.PLURAL, "broken"
    )
    wait_for(
        lambda: plugin(kubeconfig, "status", "-n", namespace).returncode == 0,
        timeout=15,
        what="status to exit 0 once the broken Certificate is gone",
    )
    assert plugin(kubeconfig, "status", "-n", namespace).stdout.startswith(
        f"All 1 Certificates in namespace {namespace} are Ready."
    )


def test_inspect_shows_names_fingerprints_verification_and_the_pod_mounting_it(
    api_client, namespace, running_operator, kubeconfig
):
    certs.create(
        api_client,
        namespace,
        certs.certificate(
            "web",
            dnsNames=[f"web.{namespace}.svc"],
            ipAddresses=["10.0.0.10"],
            uris=[f"spiffe://cluster.local/ns/{namespace}/sa/web"],
            emailAddresses=["ops@example.com"],
            usages=["digital signature", "server auth"],
        ),
    )
    ready(api_client, namespace, "web")
    # No kubelet on this tier: the Pod stays Pending, but it exists and mounts the Secret.
    client.CoreV1Api(api_client).create_namespaced_pod(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "app"},
            "spec": {
                "containers": [
                    {
                        "name": "server",
                        "image": "registry.invalid/app:1",
                        "volumeMounts": [{"name": "tls", "mountPath": "/etc/tls"}],
                    }
                ],
                "volumes": [{"name": "tls", "secret": {"secretName": "web-tls"}}],
            },
        },
    )

    result = plugin(kubeconfig, "inspect", "web", "-n", namespace)

    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert f"DNS names:          web.{namespace}.svc" in text
    assert "IP addresses:       10.0.0.10" in text
    assert f"URIs:               spiffe://cluster.local/ns/{namespace}/sa/web" in text
    assert "Email addresses:    ops@example.com" in text
    assert "Key:                ECDSA P-256 (256 bits)" in text
    assert "Extended key usage: server auth" in text
    sec = certs.secret(api_client, namespace, "web-tls")
    leaf, intermediate = certificates_in(sec, "tls.crt")
    (root,) = certificates_in(sec, "ca.crt")
    for cert in (leaf, intermediate, root):
        assert f"SHA-256:    {inspect.fingerprint_sha256(cert)}" in text
    assert f"Serial:     {inspect.serial_hex(leaf)}" in text
    assert "verifies: yes" in text
    assert row(text, "app") == ["app", "Pending", "tls", "secret", "server:/etc/tls"]
    # The private key is never shown, in any form.
    assert sec.data["tls.key"] not in text
    assert "PRIVATE KEY" not in text

    report = json.loads(plugin(kubeconfig, "inspect", "web", "-n", namespace, "-o", "json").stdout)
    assert [c["sha256Fingerprint"] for c in report["chain"]] == [
        inspect.fingerprint_sha256(leaf),
        inspect.fingerprint_sha256(intermediate),
    ]
    assert report["verification"]["verifies"] is True
    assert [m["pod"] for m in report["mountedBy"]] == ["app"]
    assert base64.b64decode(sec.data["tls.key"]).decode() not in json.dumps(report)


def test_inspect_and_renew_name_what_is_missing(
    api_client, namespace, running_operator, kubeconfig
):
    missing = plugin(kubeconfig, "inspect", "nope", "-n", namespace)
    assert missing.returncode == 1
    assert missing.stderr.strip() == f'error: Certificate "nope" in namespace {namespace} not found'

    # Its issuer does not exist, so its Secret never will: inspect says so, and why.
    certs.create(
        api_client,
        namespace,
        certs.certificate("orphan", commonName="orphan", issuerRef={"name": "no-such-ca"}),
    )
    wait_for(
        lambda: (certs.condition(certs.get(api_client, namespace, "orphan")) or {}).get("reason")
        == "IssuerNotReady",
        timeout=15,
        what="orphan Certificate reported IssuerNotReady",
    )
    orphan = plugin(kubeconfig, "inspect", "orphan", "-n", namespace)
    assert orphan.returncode == 1
    assert orphan.stderr.strip() == (
        f'error: Secret "orphan-tls" (spec.secretName of Certificate "orphan") not found in '
        f"namespace {namespace}; the Certificate is Ready=False "
        "(IssuerNotReady: CertificateAuthority no-such-ca does not exist)"
    )

    renew_missing = plugin(kubeconfig, "renew", "nope", "-n", namespace)
    assert renew_missing.returncode == 1
    assert f'Certificate "nope" in namespace {namespace} not found' in renew_missing.stderr
    assert "Traceback" not in renew_missing.stderr


def test_ca_status_shows_cluster_root_ready_with_its_root_fingerprint(
    api_client, running_operator, kubeconfig
):
    fingerprint = kubectl(
        kubeconfig, "get", "ca", "cluster-root", "-o", "jsonpath={.status.root.fingerprint}"
    ).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", fingerprint)

    result = plugin(kubeconfig, "ca", "status")

    cells = row(result.stdout, "cluster-root")
    assert cells[1] == "True"
    assert fingerprint.startswith(cells[2]) and len(cells[2]) == 16
    authorities = client.CustomObjectsApi(api_client).list_cluster_custom_object(
        certs.GROUP, certs.VERSION, "certificateauthorities"
    )["items"]
    all_ready = all(
        (certs.condition(ca) or {}).get("status") == "True" for ca in authorities
    )  # another test may have left a failing authority behind: the exit code must say so
    assert result.returncode == (0 if all_ready else 1), result.stderr

    items = json.loads(plugin(kubeconfig, "ca", "status", "-o", "json").stdout)["items"]
    (root,) = [item for item in items if item["name"] == "cluster-root"]
    assert root["root"]["fingerprint"] == fingerprint


@pytest.fixture
def spare_authority(api_client: client.ApiClient, running_operator) -> Iterator[str]:
    """An authority of the test's own: a rotation request must not touch cluster-root."""
    name = f"t-rotate-{uuid.uuid4().hex[:8]}"
    objects = client.CustomObjectsApi(api_client)
    certs.create_authority(api_client, name)
    yield name
    objects.delete_cluster_custom_object(certs.GROUP, certs.VERSION, "certificateauthorities", name)
    client.CoreV1Api(api_client).delete_collection_namespaced_secret(
        "certsmith", label_selector=f"certsmith.dev/authority={name}"
    )


def test_ca_rotate_records_the_request_on_the_authority(api_client, spare_authority, kubeconfig):
    result = plugin(kubeconfig, "ca", "rotate", spare_authority)

    assert result.returncode == 0, result.stderr
    body = client.CustomObjectsApi(api_client).get_cluster_custom_object(
        certs.GROUP, certs.VERSION, "certificateauthorities", spare_authority
    )
    requested = body["metadata"]["annotations"][ROTATE_ANNOTATION]
    assert abs(datetime.fromisoformat(requested) - datetime.now(UTC)) < timedelta(minutes=1)
    assert result.stdout.startswith(
        f"CertificateAuthority {spare_authority}: root rotation requested at {requested}"
    )

    missing = plugin(kubeconfig, "ca", "rotate", "no-such-authority")
    assert missing.returncode == 1
    assert missing.stderr.strip() == 'error: CertificateAuthority "no-such-authority" not found'
