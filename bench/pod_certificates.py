"""Pod-certificate benchmark: N PodCertificateRequests created at once, as kubelets create
them, against the apiserver profile with the operator running.

Prints the time until all are Issued, requests signed per second, p50/p99 create→Issued,
apiserver writes per request and the operator's peak RSS. There is no kubelet in the
apiserver profile: the bench makes a Node object, N pods bound to it (their creation is not
measured), and the requests with keys it made itself (ECDSA P-256), in the shape the served
API version takes (v1: stubPKCS10Request; v1beta1 on 1.35: pkixPublicKey + proofOfPossession).

    .venv/bin/python bench/pod_certificates.py [--count 1000]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from kubernetes import client, watch

import harness
from tests import pod_requests

GROUP, PLURAL, SIGNER = (
    "certificates.k8s.io",
    "podcertificaterequests",
    "certsmith.dev/cluster-root",
)


def served_version(api: client.ApiClient) -> str:
    for version in ("v1", "v1beta1"):
        try:
            found = client.CustomObjectsApi(api).get_api_resources(GROUP, version)
        except client.ApiException:
            continue
        if any(r.name == PLURAL for r in found.resources):
            return version
    raise SystemExit("this apiserver serves no PodCertificateRequest API")


def request_body(
    api: client.ApiClient, version: str, pod: client.V1Pod, node: client.V1Node
) -> dict:
    """The request kubelet would make for `pod` (tests.pod_requests, shared with the tests)."""
    return pod_requests.request_body(
        name=f"{pod.metadata.name}-pcr",
        namespace=pod.metadata.namespace,
        signer=SIGNER,
        pod=api.sanitize_for_serialization(pod),
        key=pod_requests.new_key("ECDSAP256"),
        shape=pod_requests.STUB if version == "v1" else pod_requests.PKIX,
        node_uid=node.metadata.uid,
        max_expiration_seconds=86400,
        api_version=f"{GROUP}/{version}",
    )


class IssuedWatcher:
    """Records when each request in a namespace is first seen Issued (or refused)."""

    def __init__(self, api: client.ApiClient, namespace: str, version: str) -> None:
        self.issued_at: dict[str, float] = {}
        self.refused: dict[str, str] = {}
        self._api, self._namespace, self._version = api, namespace, version
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        objects = client.CustomObjectsApi(self._api)
        while not self._stop.is_set():
            for event in watch.Watch().stream(
                objects.list_namespaced_custom_object,
                GROUP,
                self._version,
                self._namespace,
                PLURAL,
                timeout_seconds=5,
            ):
                body = event["object"]
                name = body["metadata"]["name"]
                for condition in (body.get("status") or {}).get("conditions") or []:
                    if condition["status"] != "True":
                        continue
                    if condition["type"] == "Issued":
                        self.issued_at.setdefault(name, time.monotonic())
                    elif condition["type"] in ("Denied", "Failed"):
                        self.refused[name] = f"{condition['type']} {condition.get('reason')}"

    def wait(self, names: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while any(n not in self.issued_at for n in names):
            if self.refused:
                raise SystemExit(f"refused: {dict(list(self.refused.items())[:3])}")
            if time.monotonic() > deadline:
                missing = sum(n not in self.issued_at for n in names)
                raise SystemExit(f"{missing} requests not Issued after {timeout}s")
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()


def prepare(api: client.ApiClient, count: int) -> tuple[str, client.V1Node, list]:
    """A namespace with N pods bound to a Node object."""
    core = client.CoreV1Api(api)
    namespace = f"bench-pcr-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    node = core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=f"{namespace}-node")))
    deadline = time.monotonic() + 60
    while True:  # pods wait for the default ServiceAccount kube-controller-manager creates
        try:
            core.read_namespaced_service_account("default", namespace)
            break
        except client.ApiException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)

    def pod(i: int) -> client.V1Pod:
        body = client.V1Pod(
            metadata=client.V1ObjectMeta(name=f"p{i:05d}", labels={"app": "bench"}),
            spec=client.V1PodSpec(
                node_name=node.metadata.name,
                containers=[client.V1Container(name="c", image="bench")],
            ),
        )
        return core.create_namespaced_pod(namespace, body)

    with ThreadPoolExecutor(max_workers=16) as pool:
        pods = list(pool.map(pod, range(count)))
    return namespace, node, pods


def run(api: client.ApiClient, operator_pid: int, count: int) -> None:
    version = served_version(api)
    namespace, node, pods = prepare(api, count)
    bodies = [request_body(api, version, pod, node) for pod in pods]
    watcher = IssuedWatcher(api, namespace, version)
    time.sleep(1)
    objects = client.CustomObjectsApi(api)
    created_at: dict[str, float] = {}

    def create(body: dict) -> None:
        made = objects.create_namespaced_custom_object(GROUP, version, namespace, PLURAL, body)
        created_at[made["metadata"]["name"]] = time.monotonic()

    writes_before = harness.writes_so_far(api)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(create, bodies))
    names = list(created_at)
    watcher.wait(names, timeout=max(120, count / 10))
    elapsed = max(watcher.issued_at.values()) - started
    time.sleep(2)  # let trailing writes land before counting
    writes = harness.writes_so_far(api) - writes_before - count  # minus the bench's creates
    latencies = [(watcher.issued_at[n] - created_at[n]) * 1000 for n in names]
    print(f"API:                     {GROUP}/{version}")
    print(f"pod certificate requests:{count:>6}")
    print(f"all Issued after:        {elapsed:.2f} s")
    print(f"throughput:              {count / elapsed:.1f} requests signed/s")
    print(
        f"create→Issued p50 / p99: {statistics.median(latencies):.0f} ms / "
        f"{harness.percentile_ms(latencies, 0.99):.0f} ms"
    )
    print(f"apiserver writes/request:{writes / count:>6.2f}")
    print(f"operator peak RSS:       {harness.peak_rss_mib(operator_pid):.0f} MiB")
    watcher.stop()
    client.CoreV1Api(api).delete_namespace(namespace)
    client.CoreV1Api(api).delete_node(node.metadata.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()
    with harness.running_operator(webhooks=True, name="bench-pod-certificates") as running:
        run(running.api, running.operator_pid, args.count)


if __name__ == "__main__":
    main()
