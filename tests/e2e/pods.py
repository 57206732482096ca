"""Pods the e2e tests run: the demo image's curl, opted in to certsmith's injection, and
the demo manifests (demo/*.yaml)."""

from __future__ import annotations

from collections.abc import Sequence

from kubernetes import client

from tests.support import REPO_ROOT, kubectl, wait_for

DEMO_IMAGE = "certsmith/mtls-demo:dev"
# The authority whose root the e2e session rotates under pod certificates (conftest).
ROTATING_AUTHORITY = "pods-e2e"
PEERS = ("pc-a", "pc-b")
"""The pods of demo/pod-certificates.yaml: each serves mTLS and calls the other."""


def opted_in_curl_pod(
    name: str,
    *,
    annotations: dict[str, str],
    command: Sequence[str] = ("sleep", "infinity"),
    service_account: str | None = None,
    secret_mounts: dict[str, str] | None = None,
) -> client.V1Pod:
    """A pod the mutating webhook gives a certificate (`annotations` say which); extra
    Secrets in `secret_mounts` (Secret name → path) are mounted too."""
    mounts = secret_mounts or {}
    return client.V1Pod(
        metadata=client.V1ObjectMeta(
            name=name, labels={"certsmith.dev/inject": "true"}, annotations=annotations
        ),
        spec=client.V1PodSpec(
            service_account_name=service_account,
            termination_grace_period_seconds=1,
            containers=[
                client.V1Container(
                    name="curl",
                    image=DEMO_IMAGE,
                    image_pull_policy="IfNotPresent",
                    command=list(command),
                    volume_mounts=[
                        client.V1VolumeMount(name=secret, mount_path=path)
                        for secret, path in mounts.items()
                    ]
                    or None,
                )
            ],
            volumes=[
                client.V1Volume(name=secret, secret=client.V1SecretVolumeSource(secret_name=secret))
                for secret in mounts
            ]
            or None,
        ),
    )


def pod_ready(api: client.ApiClient, namespace: str, name: str) -> bool:
    pod = client.CoreV1Api(api).read_namespaced_pod(name, namespace)
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def apply_demo_manifest(
    kubeconfig: str, manifest: str, namespace: str, *, replace: dict[str, str] | None = None
) -> None:
    """`kubectl apply` demo/<manifest> with its NAMESPACE placeholder replaced, and each
    `replace` key by its value."""
    text = (REPO_ROOT / "demo" / manifest).read_text().replace("NAMESPACE", namespace)
    for old, new in (replace or {}).items():
        text = text.replace(old, new)
    applied = kubectl(kubeconfig, "apply", "-f", "-", input=text, check=False)
    assert applied.returncode == 0, applied.stderr


def cluster_trust_bundle(api: client.ApiClient, authority: str) -> str:
    """The PEM roots of `authority`'s ClusterTrustBundle (README: ClusterTrustBundles)."""
    bundle = client.CustomObjectsApi(api).get_cluster_custom_object(
        "certificates.k8s.io", "v1", "clustertrustbundles", f"certsmith.dev:{authority}:roots"
    )
    return str(bundle["spec"]["trustBundle"])


def peer_log(kubeconfig: str, namespace: str, pod: str) -> list[str]:
    """A peer's calls (its `client` container): "<time> ok ..." or "<time> fail <why>"."""
    return kubectl(kubeconfig, "-n", namespace, "logs", pod, "-c", "client").stdout.splitlines()


def start_peers(
    kubeconfig: str,
    api: client.ApiClient,
    namespace: str,
    *,
    replace: dict[str, str] | None = None,
) -> dict[str, int]:
    """demo/pod-certificates.yaml applied, both peers Ready and calling each other; how many
    lines each log had then. Calls made before the other peer listened failed to connect:
    what a test judges starts after those lines."""
    apply_demo_manifest(kubeconfig, "pod-certificates.yaml", namespace, replace=replace)
    for pod in PEERS:
        wait_for(
            lambda pod=pod: pod_ready(api, namespace, pod),
            timeout=180,
            what=f"{pod} Ready with its pod certificate",
            interval=1,
        )
    for pod in PEERS:
        wait_for(
            lambda pod=pod: sum(
                " ok " in f" {line} " for line in peer_log(kubeconfig, namespace, pod)
            )
            >= 3,
            timeout=90,
            what=f"{pod} completing mTLS calls",
            interval=1,
        )
    return {pod: len(peer_log(kubeconfig, namespace, pod)) for pod in PEERS}
