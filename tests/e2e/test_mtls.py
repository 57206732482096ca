"""The product's proof: two pods on kind talk mutual TLS with certsmith's certificates.

nginx (ssl_verify_client on) and curl from the demo image (demo/image), deployed from
demo/mtls.yaml with the operator running in-cluster from the Dockerfile and manifests/.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import pytest
from kubernetes import client

from tests import builders
from tests.builders import GROUP, VERSION
from tests.e2e.pods import apply_demo_manifest, opted_in_curl_pod, pod_ready
from tests.support import kubectl, wait_for

pytestmark = pytest.mark.e2e

KUBELET_REFRESH_TIMEOUT = 240  # kubelet refreshed mounted Secrets in 74-86 s here
LINE = re.compile(r"^\S+ (ok|fail) ?(.*)$")


def certificate(api: client.ApiClient, namespace: str, name: str) -> dict:
    return client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "certificates", name
    )


def serial_of(api: client.ApiClient, namespace: str, name: str) -> str | None:
    return (certificate(api, namespace, name).get("status") or {}).get("serialNumber")


def client_log(kubeconfig: str, namespace: str, pod: str = "mtls-client") -> list[str]:
    return kubectl(kubeconfig, "-n", namespace, "logs", pod).stdout.splitlines()


def exec_in(kubeconfig: str, namespace: str, pod: str, *command: str) -> str:
    result = kubectl(kubeconfig, "-n", namespace, "exec", pod, "--", *command, check=False)
    return result.stdout + result.stderr


@pytest.fixture
def demo(certsmith_installed, e2e_client, e2e_namespace):
    apply_demo_manifest(certsmith_installed, "mtls.yaml", e2e_namespace)
    wait_for(
        lambda: pod_ready(e2e_client, e2e_namespace, "mtls-client"),
        timeout=180,
        what="mtls-client Ready",
        interval=1,
    )
    wait_for(
        lambda: sum(
            " ok " in f" {line} " for line in client_log(certsmith_installed, e2e_namespace)
        )
        >= 3,
        timeout=60,
        what="client completing mTLS requests",
        interval=1,
    )
    return e2e_namespace


def test_pods_talk_mutual_tls(certsmith_installed, e2e_client, demo):
    namespace, kubeconfig = demo, certsmith_installed
    server_serial = serial_of(e2e_client, namespace, "mtls-server")
    client_serial = serial_of(e2e_client, namespace, "mtls-client")
    ok = [line for line in client_log(kubeconfig, namespace) if " ok " in line]
    last = ok[-1]
    # The client verified the server by the Service's DNS name against ca.crt (curl's
    # default), and the server saw the client's identity from its certificate.
    assert f"server_serial={server_serial}" in last
    assert f"client_serial={client_serial.upper()}" in last
    assert f"client_san_dn=CN=mtls-client.{namespace}.svc" in last

    url = f"https://mtls-server.{namespace}.svc:8443/"
    tls = "/var/run/certsmith/tls"
    no_cert = exec_in(
        kubeconfig, namespace, "mtls-client", "curl", "-sS", "--cacert", f"{tls}/ca.crt", url
    )
    assert "400 No required SSL certificate was sent" in no_cert

    # A name the server's certificate does not carry fails verification.
    pod_ip = (
        client.CoreV1Api(e2e_client)
        .list_namespaced_pod(namespace, label_selector="app=mtls-server")
        .items[0]
        .status.pod_ip
    )
    wrong_name = exec_in(
        kubeconfig,
        namespace,
        "mtls-client",
        "curl",
        "-sS",
        "--cacert",
        f"{tls}/ca.crt",
        "--cert",
        f"{tls}/tls.crt",
        "--key",
        f"{tls}/tls.key",
        f"https://{pod_ip}:8443/",
    )
    assert "no alternative certificate subject name matches" in wrong_name


def test_certificate_from_another_authority_is_refused(certsmith_installed, e2e_client, demo):
    namespace, kubeconfig = demo, certsmith_installed
    objects = client.CustomObjectsApi(e2e_client)
    authority = f"other-{namespace}"
    objects.create_cluster_custom_object(
        GROUP, VERSION, "certificateauthorities", builders.authority(authority)
    )
    try:
        objects.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "certificates",
            builders.certificate(
                "rogue", commonName=f"rogue.{namespace}.svc", issuerRef={"name": authority}
            ),
        )
        wait_for(
            lambda: serial_of(e2e_client, namespace, "rogue"),
            timeout=60,
            what="rogue Certificate issued",
        )
        client.CoreV1Api(e2e_client).create_namespaced_pod(
            namespace,
            opted_in_curl_pod("rogue", annotations={"certsmith.dev/certificate": "rogue"}),
        )
        wait_for(
            lambda: pod_ready(e2e_client, namespace, "rogue"),
            timeout=120,
            what="rogue pod Ready",
            interval=1,
        )
        tls = "/var/run/certsmith/tls"
        answer = exec_in(
            kubeconfig,
            namespace,
            "rogue",
            "curl",
            "-sS",
            "--insecure",
            "--cert",
            f"{tls}/tls.crt",
            "--key",
            f"{tls}/tls.key",
            f"https://mtls-server.{namespace}.svc:8443/",
        )
        assert "400 The SSL certificate error" in answer
        assert "mtls ok" not in answer
    finally:
        objects.delete_cluster_custom_object(GROUP, VERSION, "certificateauthorities", authority)


def test_service_account_identity_pod_completes_mtls(certsmith_installed, e2e_client, demo):
    namespace, kubeconfig = demo, certsmith_installed
    core = client.CoreV1Api(e2e_client)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="reporting"))
    )
    created = time.monotonic()
    core.create_namespaced_pod(
        namespace,
        opted_in_curl_pod(
            "reporting",
            annotations={"certsmith.dev/identity": "service-account"},
            command=["call-mtls", f"https://mtls-server.{namespace}.svc:8443/", "1"],
            service_account="reporting",
        ),
    )
    wait_for(
        lambda: pod_ready(e2e_client, namespace, "reporting"),
        timeout=120,
        what="identity pod Ready",
        interval=0.5,
    )
    print(
        f"\nidentity pod: creation → Ready with its certificate mounted in "
        f"{time.monotonic() - created:.1f} s"
    )
    line = wait_for(
        lambda: next(
            (x for x in client_log(kubeconfig, namespace, "reporting") if " ok " in x), None
        ),
        timeout=30,
        what="identity pod completing mTLS",
        interval=1,
    )
    assert "client_san_dn= " in line or "client_san_dn=" in line
    spiffe = f"spiffe://cluster.local/ns/{namespace}/sa/reporting"
    identity = certificate(e2e_client, namespace, "reporting-identity")
    assert identity["spec"]["uris"] == [spiffe]


def test_rotation_under_traffic_fails_no_request(certsmith_installed, e2e_client, demo):
    namespace, kubeconfig = demo, certsmith_installed
    objects = client.CustomObjectsApi(e2e_client)
    before = {n: serial_of(e2e_client, namespace, n) for n in ("mtls-server", "mtls-client")}
    seen_before = len(client_log(kubeconfig, namespace))
    requested = datetime.now(UTC).isoformat()
    for name in before:
        objects.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "certificates",
            name,
            {"metadata": {"annotations": {"certsmith.dev/renew-requested-at": requested}}},
        )
    after = wait_for(
        lambda: all(serial_of(e2e_client, namespace, n) != before[n] for n in before)
        and {n: serial_of(e2e_client, namespace, n) for n in before},
        timeout=30,
        what="both certificates re-issued",
    )

    def both_rotated_in_traffic():
        lines = client_log(kubeconfig, namespace)[seen_before:]
        return any(
            f"server_serial={after['mtls-server']}" in line
            and f"client_serial={after['mtls-client'].upper()}" in line
            for line in lines
        )

    started = time.monotonic()
    wait_for(
        both_rotated_in_traffic,
        timeout=KUBELET_REFRESH_TIMEOUT,
        what="peers presenting the new certificates",
        interval=2,
    )
    time.sleep(3)
    window = client_log(kubeconfig, namespace)[seen_before:]
    failures = [line for line in window if " fail " in f" {line} "]
    print(
        f"\nrotation under traffic: {len(window)} requests over "
        f"{time.monotonic() - started:.0f} s until both peers used the new certificates, "
        f"{len(failures)} failed"
    )
    assert failures == []
    assert len(window) > 20


def test_root_rotation_under_traffic_fails_no_request(certsmith_installed, e2e_client, demo):
    """The whole chain of trust changes while the client keeps calling, several per second."""
    namespace, kubeconfig = demo, certsmith_installed
    objects = client.CustomObjectsApi(e2e_client)
    ca = ("certsmith.dev", "v1alpha1", "certificateauthorities", "cluster-root")
    before = {n: serial_of(e2e_client, namespace, n) for n in ("mtls-server", "mtls-client")}
    seen_before = len(client_log(kubeconfig, namespace))
    started = time.monotonic()
    # The delay must cover kubelet's refresh of mounted Secrets (74-90 s measured here).
    objects.patch_cluster_custom_object(
        *ca,
        {
            "metadata": {
                "annotations": {"certsmith.dev/rotate-requested-at": datetime.now(UTC).isoformat()}
            },
            "spec": {"rotation": {"propagationDelay": "120s"}},
        },
    )

    def phase() -> str:
        return (objects.get_cluster_custom_object(*ca).get("status") or {}).get("phase", "")

    wait_for(lambda: phase() != "Ready", timeout=30, what="rotation started")
    wait_for(lambda: phase() == "Ready", timeout=600, what="rotation finished", interval=2)
    rotated = time.monotonic() - started
    after = {n: serial_of(e2e_client, namespace, n) for n in before}
    assert all(after[n] != before[n] for n in before)

    def peers_on_new_root():
        lines = client_log(kubeconfig, namespace)[seen_before:]
        return any(
            f"server_serial={after['mtls-server']}" in line
            and f"client_serial={after['mtls-client'].upper()}" in line
            for line in lines
        )

    wait_for(
        peers_on_new_root, timeout=KUBELET_REFRESH_TIMEOUT, what="peers on the new root", interval=2
    )
    window = client_log(kubeconfig, namespace)[seen_before:]
    failures = [line for line in window if " fail " in f" {line} "]
    print(
        f"\nroot rotation under traffic: rotation took {rotated:.0f} s; {len(window)} requests, "
        f"{len(failures)} failed"
    )
    assert failures == []
