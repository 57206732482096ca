"""End-to-end checks of the kind cluster itself, before any operator runs on it.

- A locally built image (tests/e2e/images/echo) serves a fixed answer from a 2-replica
  Deployment behind a Service; a separate pod resolves the Service by DNS name, gets its
  ClusterIP and the answer through it; a pod with a readiness probe becomes Ready.
- kubelet refreshes a Secret mounted in a running pod after the Secret changes; the test
  prints how long that took (certificate rotation relies on it).

Each test has its own namespace, deleted afterwards. Nothing can be pulled here: every pod
uses the echo image, loaded into the node, with imagePullPolicy Never.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.support import REPO_ROOT, kubectl, wait_for

pytestmark = pytest.mark.e2e

ECHO_DIR = Path(__file__).resolve().parent / "images" / "echo"
ANSWER = (ECHO_DIR / "answer").read_text().strip()
ECHO_PORT = 8080
# kubelet's default sync period is 1 min and its Secret cache adds up to its TTL; the
# reference measured 74 s once. Leave room for both, and then some.
SECRET_REFRESH_TIMEOUT = 240.0


def _echo_tag() -> str:
    digest = hashlib.sha256()
    for path in sorted(ECHO_DIR.iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return f"certsmith/e2e-echo:{digest.hexdigest()[:12]}"


@pytest.fixture(scope="module")
def e2e_api(kube_kubeconfig_e2e: str) -> client.ApiClient:
    return config.new_client_from_config(config_file=kube_kubeconfig_e2e)


@pytest.fixture(scope="module")
def echo_image(kube_kubeconfig_e2e: str) -> str:
    """The echo image, built from its Dockerfile and loaded into the cluster's node."""
    tag = _echo_tag()
    subprocess.run(
        [str(REPO_ROOT / "hack" / "kind-cluster"), "load-image", tag, str(ECHO_DIR)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return tag


@pytest.fixture
def e2e_namespace(e2e_api: client.ApiClient) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(e2e_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name, grace_period_seconds=0)


def _echo_container(
    image: str, *, probe: bool, command: list[str] | None = None
) -> client.V1Container:
    readiness = None
    if probe:
        readiness = client.V1Probe(
            http_get=client.V1HTTPGetAction(path="/answer", port=ECHO_PORT),
            period_seconds=1,
            failure_threshold=3,
        )
    return client.V1Container(
        name="echo",
        image=image,
        image_pull_policy="Never",
        command=command,
        ports=[client.V1ContainerPort(container_port=ECHO_PORT)],
        readiness_probe=readiness,
    )


def _pod(name: str, container: client.V1Container, **spec: object) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"test": name}),
        spec=client.V1PodSpec(containers=[container], termination_grace_period_seconds=1, **spec),
    )


def _pod_ready(core: client.CoreV1Api, namespace: str, name: str) -> bool:
    pod = core.read_namespaced_pod(name, namespace)
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def test_service_reached_by_dns_name_through_cluster_ip(
    e2e_api: client.ApiClient, echo_image: str, e2e_namespace: str
) -> None:
    core, apps = client.CoreV1Api(e2e_api), client.AppsV1Api(e2e_api)
    labels = {"app": "echo"}
    apps.create_namespaced_deployment(
        e2e_namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="echo"),
            spec=client.V1DeploymentSpec(
                replicas=2,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(
                        containers=[_echo_container(echo_image, probe=True)],
                        termination_grace_period_seconds=1,
                    ),
                ),
            ),
        ),
    )
    service = core.create_namespaced_service(
        e2e_namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="echo"),
            spec=client.V1ServiceSpec(
                selector=labels,
                ports=[client.V1ServicePort(port=80, target_port=ECHO_PORT)],
            ),
        ),
    )
    cluster_ip = service.spec.cluster_ip
    wait_for(
        lambda: (apps.read_namespaced_deployment("echo", e2e_namespace).status.ready_replicas or 0)
        == 2,
        timeout=120,
        interval=0.5,
        what="2 ready replicas of the echo Deployment",
    )

    # The client resolves the name itself (glibc → CoreDNS) and fetches through it; its
    # retries cover the moment before kube-proxy has programmed the new Service. (Debian's
    # busybox 1.35 wget crashes with -T, hence coreutils' timeout.)
    host = f"echo.{e2e_namespace}.svc.cluster.local"
    script = (
        "for i in $(seq 60); do "
        f"ip=$(getent hosts {host} | cut -d' ' -f1) && "
        f"body=$(timeout 5 busybox wget -q -O - http://{host}/answer) && break; sleep 1; done; "
        'echo "ip=$ip"; echo "body=$body"'
    )
    core.create_namespaced_pod(
        e2e_namespace,
        _pod(
            "client",
            _echo_container(echo_image, probe=False, command=["sh", "-c", script]),
            restart_policy="Never",
        ),
    )
    phase = wait_for(
        lambda: core.read_namespaced_pod("client", e2e_namespace).status.phase
        in ("Succeeded", "Failed")
        and core.read_namespaced_pod("client", e2e_namespace).status.phase,
        timeout=120,
        interval=0.5,
        what="the client pod to finish",
    )
    output = core.read_namespaced_pod_log("client", e2e_namespace)
    assert phase == "Succeeded", output
    assert f"ip={cluster_ip}\n" in output, output
    assert f"body={ANSWER}\n" in output, output

    core.create_namespaced_pod(
        e2e_namespace, _pod("probed", _echo_container(echo_image, probe=True))
    )
    wait_for(
        lambda: _pod_ready(core, e2e_namespace, "probed"),
        timeout=120,
        interval=0.5,
        what="the pod with a readiness probe to become Ready",
    )


def test_kubelet_refreshes_mounted_secret(
    e2e_api: client.ApiClient,
    echo_image: str,
    e2e_namespace: str,
    kube_kubeconfig_e2e: str,
    capsys: pytest.CaptureFixture[str],
    record_property: pytest.RecordProperty,
) -> None:
    core = client.CoreV1Api(e2e_api)
    core.create_namespaced_secret(
        e2e_namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name="rotating"), string_data={"value": "v1"}),
    )
    container = _echo_container(echo_image, probe=False, command=["sleep", "infinity"])
    container.volume_mounts = [client.V1VolumeMount(name="secret", mount_path="/etc/rotating")]
    core.create_namespaced_pod(
        e2e_namespace,
        _pod(
            "reader",
            container,
            volumes=[
                client.V1Volume(
                    name="secret", secret=client.V1SecretVolumeSource(secret_name="rotating")
                )
            ],
        ),
    )
    wait_for(
        lambda: _pod_ready(core, e2e_namespace, "reader"),
        timeout=120,
        interval=0.5,
        what="the reader pod to run",
    )

    def mounted() -> str:
        result = kubectl(
            kube_kubeconfig_e2e,
            "-n",
            e2e_namespace,
            "exec",
            "reader",
            "--",
            "cat",
            "/etc/rotating/value",
            check=False,
        )
        return result.stdout if result.returncode == 0 else ""

    assert wait_for(mounted, timeout=30, interval=0.5, what="the mounted Secret") == "v1"

    new_value = f"v2-{uuid.uuid4().hex[:8]}"
    core.patch_namespaced_secret("rotating", e2e_namespace, {"stringData": {"value": new_value}})
    changed_at = time.monotonic()
    wait_for(
        lambda: mounted() == new_value,
        timeout=SECRET_REFRESH_TIMEOUT,
        interval=1.0,
        what="kubelet to refresh the mounted Secret",
    )
    delay = time.monotonic() - changed_at
    record_property("secret_refresh_seconds", round(delay, 1))
    with capsys.disabled():  # shown even when the test passes
        print(f"\nkubelet refreshed the mounted Secret {delay:.1f}s after it changed")
