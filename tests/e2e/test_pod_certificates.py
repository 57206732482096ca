"""Kubernetes-native pod certificates on kind: kubelet makes each pod's key and asks
certsmith to sign it; pods mount only projected podCertificate and clusterTrustBundle
sources (demo/pod-certificates.yaml): no Secret, no certsmith label.

openssl and curl inside the pods judge the certificates, nginx demands client certificates.
"""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from tests.e2e.pods import (
    DEMO_IMAGE,
    PEERS,
    ROTATING_AUTHORITY,
    cluster_trust_bundle,
    peer_log,
    pod_ready,
    start_peers,
)
from tests.support import kubectl, wait_for

pytestmark = pytest.mark.e2e

SIGNER = "certsmith.dev/cluster-root"
TLS = "/var/run/certsmith/tls"
# The podCertificate source's userAnnotations key asking for more DNS names (README).
DNS_NAMES_KEY = "certsmith.dev/dns-names"


def exec_in(kubeconfig: str, namespace: str, pod: str, script: str) -> str:
    result = kubectl(
        kubeconfig,
        "-n",
        namespace,
        "exec",
        pod,
        "-c",
        "client",
        "--",
        "sh",
        "-c",
        script,
        check=False,
    )
    return result.stdout + result.stderr


def request_conditions(api: client.ApiClient, namespace: str) -> list[dict]:
    """The conditions of every PodCertificateRequest in `namespace`."""
    found = client.CustomObjectsApi(api).list_namespaced_custom_object(
        "certificates.k8s.io", "v1", namespace, "podcertificaterequests"
    )
    return [
        c for item in found["items"] for c in (item.get("status") or {}).get("conditions") or []
    ]


@pytest.fixture
def peers(certsmith_installed, e2e_client, e2e_namespace):
    """The namespace, and each peer's log length once both were calling each other."""
    return e2e_namespace, start_peers(certsmith_installed, e2e_client, e2e_namespace)


def test_pods_with_only_projected_pod_certificates_talk_mutual_tls_both_ways(
    certsmith_installed, e2e_client, peers
):
    (namespace, calling), kubeconfig = peers, certsmith_installed
    core = client.CoreV1Api(e2e_client)
    for name in PEERS:
        pod = core.read_namespaced_pod(name, namespace)
        assert not any(volume.secret for volume in pod.spec.volumes)
        assert not any(k.startswith("certsmith.dev/") for k in pod.metadata.labels or {})
        assert not any(k.startswith("certsmith.dev/") for k in pod.metadata.annotations or {})
    assert [s.metadata.name for s in core.list_namespaced_secret(namespace).items] == []

    for caller, callee in (PEERS, PEERS[::-1]):
        host = f"{callee}.{namespace}.svc"
        # The caller verifies the callee by its Service name against the ClusterTrustBundle
        # and presents its own chain; the callee's nginx verifies the caller's.
        answer = exec_in(
            kubeconfig,
            namespace,
            caller,
            f"openssl s_client -connect {host}:8443 -servername {host} -verify_hostname {host} "
            f"-verify_return_error -CAfile {TLS}/ca.crt -cert {TLS}/tls.crt "
            f"-cert_chain {TLS}/tls.crt -key {TLS}/tls.key </dev/null 2>/dev/null "
            "| openssl x509 -noout -ext subjectAltName",
        )
        assert f"URI:spiffe://cluster.local/ns/{namespace}/sa/{callee}" in answer, answer
        assert f"DNS:{host}" in answer and f"DNS:{host}.cluster.local" in answer, answer
        # A call takes up to curl's 3 s on a loaded host: wait for one after `calling`.
        lines = wait_for(
            lambda caller=caller: peer_log(kubeconfig, namespace, caller)[calling[caller] :],
            timeout=30,
            what=f"{caller} calling {callee} again",
            interval=1,
        )
        assert [line for line in lines if " fail " in f" {line} "] == []
        assert "mtls ok client_serial=" in lines[-1]

    conditions = request_conditions(e2e_client, namespace)
    assert conditions and all(c["type"] == "Issued" for c in conditions)


def test_a_pod_cannot_obtain_a_certificate_naming_another_namespaces_service(
    certsmith_installed, e2e_client, peers
):
    namespace = peers[0]
    victim = f"pc-a.{namespace}.svc"
    core = client.CoreV1Api(e2e_client)
    other = f"{namespace}-other"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=other)))
    try:
        core.create_namespaced_pod(
            other,
            client.V1Pod(
                metadata=client.V1ObjectMeta(name="impostor"),
                spec=client.V1PodSpec(
                    termination_grace_period_seconds=1,
                    containers=[
                        client.V1Container(
                            name="client",
                            image=DEMO_IMAGE,
                            image_pull_policy="IfNotPresent",
                            command=["sleep", "infinity"],
                            volume_mounts=[client.V1VolumeMount(name="tls", mount_path=TLS)],
                        )
                    ],
                    volumes=[
                        client.V1Volume(
                            name="tls",
                            projected=client.V1ProjectedVolumeSource(
                                sources=[
                                    {
                                        "podCertificate": {
                                            "signerName": SIGNER,
                                            "keyType": "ECDSAP256",
                                            "credentialBundlePath": "credentials.pem",
                                            "userAnnotations": {DNS_NAMES_KEY: victim},
                                        }
                                    }
                                ]
                            ),
                        )
                    ],
                ),
            ),
        )
        denied = wait_for(
            lambda: next(
                (c for c in request_conditions(e2e_client, other) if c["type"] == "Denied"), None
            ),
            timeout=60,
            what="the impostor's request Denied",
        )
        assert denied["status"] == "True"
        assert victim in denied["message"], denied
        assert not any(c["type"] == "Issued" for c in request_conditions(e2e_client, other))
        assert not pod_ready(e2e_client, other, "impostor")
    finally:
        core.delete_namespace(other)


def test_root_rotation_under_traffic_moves_pod_certificates_to_the_new_root(
    certsmith_installed, e2e_client, pod_certificate_rotation
):
    """Requested when the e2e session began (tests/e2e/conftest.py), while two pods keep
    calling each other several times a second with their pod certificates."""
    rotation, kubeconfig = pod_certificate_rotation, certsmith_installed
    namespace = rotation.namespace
    objects = client.CustomObjectsApi(e2e_client)

    def phase() -> str:
        authority = objects.get_cluster_custom_object(
            "certsmith.dev", "v1alpha1", "certificateauthorities", ROTATING_AUTHORITY
        )
        return (authority.get("status") or {}).get("phase", "")

    def rotated() -> str | None:
        roots = cluster_trust_bundle(e2e_client, ROTATING_AUTHORITY)
        done = phase() == "Ready" and roots.count("BEGIN CERTIFICATE") == 1
        return roots if done and roots != rotation.old_roots else None

    # kubelet refreshes a pod certificate 10 min after signing at the earliest, plus its
    # jitter: the rotation waits for that (README: Pod certificates, root rotation).
    remaining = 40 * 60 - (time.monotonic() - rotation.requested_at)
    new_root = wait_for(rotated, timeout=max(remaining, 60), what="rotation done", interval=5)
    took = time.monotonic() - rotation.requested_at

    def on_new_root_only(pod: str) -> bool:
        # Its mounted bundle is the new root alone, and its own chain verifies against it.
        answer = exec_in(
            kubeconfig,
            namespace,
            pod,
            f"cat {TLS}/ca.crt; openssl verify -CAfile {TLS}/ca.crt -untrusted {TLS}/tls.crt "
            f"{TLS}/tls.crt",
        )
        return answer.startswith(new_root.strip()) and f"{TLS}/tls.crt: OK" in answer

    for pod in PEERS:
        wait_for(
            lambda pod=pod: on_new_root_only(pod),
            timeout=180,
            what=f"{pod} on the new root only",
            interval=5,
        )
    for caller, callee in (PEERS, PEERS[::-1]):
        lines = peer_log(kubeconfig, namespace, caller)[rotation.calling[caller] :]
        failures = [line for line in lines if " fail " in f" {line} "]
        print(
            f"\npod-certificate root rotation: {took:.0f} s; {caller} → {callee}: "
            f"{len(lines)} requests, {len(failures)} failed"
        )
        assert failures == []
        assert len(lines) > took  # several calls a second, all through the rotation
