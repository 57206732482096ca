"""Issuance benchmark: N Certificates applied at once to the apiserver profile.

Prints the time until all are Ready, certificates per second, p50/p99 apply→Ready,
apiserver writes per certificate (from the apiserver's own apiserver_request_total) and
the operator's peak RSS; then the median apply→Ready of sequential Certificates.

    .venv/bin/python bench/issuance.py [--count 1000] [--sequential 20]

Uses the cluster in CERTSMITH_KUBECONFIG, or brings the apiserver profile up (and down).
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

GROUP, VERSION, PLURAL = "certsmith.dev", "v1alpha1", "certificates"


def certificate(name: str, namespace: str) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Certificate",
        "metadata": {"name": name},
        "spec": {"secretName": f"{name}-tls", "dnsNames": [f"{name}.{namespace}.svc"]},
    }


class ReadyWatcher:
    """Records when each Certificate in a namespace is first seen Ready.

    One watch resumed from the last resourceVersion it saw: a watch restarted without one
    lists every object again, which at 10,000 Certificates costs this process (and the
    apiserver) seconds per restart and delays what it records."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.ready_at: dict[str, float] = {}
        self._api, self._namespace = api, namespace
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        objects = client.CustomObjectsApi(self._api)
        resource_version = ""
        while not self._stop.is_set():
            stream = watch.Watch().stream(
                objects.list_namespaced_custom_object,
                GROUP,
                VERSION,
                self._namespace,
                PLURAL,
                timeout_seconds=5,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
            )
            try:
                for event in stream:
                    body = event["object"]
                    resource_version = body["metadata"]["resourceVersion"]
                    if event["type"] == "BOOKMARK":
                        continue
                    self._seen(body)
            except client.ApiException as error:
                if error.status != 410:
                    raise
                resource_version = ""  # expired: list again

    def _seen(self, body: dict) -> None:
        name = body["metadata"]["name"]
        conditions = (body.get("status") or {}).get("conditions", [])
        if name not in self.ready_at and any(
            c["type"] == "Ready" and c["status"] == "True" for c in conditions
        ):
            self.ready_at[name] = time.monotonic()

    def wait(self, names: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while any(n not in self.ready_at for n in names):
            if time.monotonic() > deadline:
                missing = [n for n in names if n not in self.ready_at]
                raise SystemExit(f"{len(missing)} Certificates not Ready after {timeout}s")
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()


def run(api: client.ApiClient, operator_pid: int, count: int, sequential: int) -> None:
    core = client.CoreV1Api(api)
    objects = client.CustomObjectsApi(api)
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    watcher = ReadyWatcher(api, namespace)
    time.sleep(1)

    names = [f"c{i:05d}" for i in range(count)]
    applied_at: dict[str, float] = {}

    def apply(name: str) -> None:
        objects.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, certificate(name, namespace)
        )
        applied_at[name] = time.monotonic()

    writes_before = harness.writes_so_far(api)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(apply, names))
    watcher.wait(names, timeout=max(120, count / 10))
    elapsed = max(watcher.ready_at.values()) - started
    time.sleep(2)  # let trailing writes (events) land before counting
    writes = harness.writes_so_far(api) - writes_before - count  # minus the bench's own creates
    latencies = sorted((watcher.ready_at[n] - applied_at[n]) * 1000 for n in names)

    print(f"certificates:            {count}")
    print(f"all Ready after:         {elapsed:.2f} s")
    print(f"throughput:              {count / elapsed:.1f} certificates/s")
    print(
        f"apply→Ready p50 / p99:   {statistics.median(latencies):.0f} ms / "
        f"{harness.percentile_ms(latencies, 0.99):.0f} ms"
    )
    print(f"apiserver writes/cert:   {writes / count:.2f}")
    print(f"operator peak RSS:       {harness.peak_rss_mib(operator_pid):.0f} MiB")

    sequential_ms = []
    for i in range(sequential):
        name = f"seq{i:03d}"
        apply(name)
        watcher.wait([name], timeout=30)
        sequential_ms.append((watcher.ready_at[name] - applied_at[name]) * 1000)
    if sequential_ms:
        print(
            f"sequential apply→Ready:  median {statistics.median(sequential_ms):.0f} ms "
            f"over {sequential}"
        )
    watcher.stop()
    core.delete_namespace(namespace)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--sequential", type=int, default=20)
    parser.add_argument(
        "--no-webhooks",
        action="store_true",
        help="run the operator without admission webhooks (isolates issuance from admission)",
    )
    args = parser.parse_args()

    with harness.running_operator(webhooks=not args.no_webhooks, name="bench") as running:
        run(running.api, running.operator_pid, args.count, args.sequential)


if __name__ == "__main__":
    main()
