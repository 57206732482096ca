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
from typing import Any

from kubernetes import client

import harness
from tests import builders

CERTIFICATES = harness.CERTSMITH_CERTIFICATES


def certificate(name: str, namespace: str) -> dict[str, Any]:
    """A Certificate for one in-cluster name (the default key, authority and lifetime)."""
    return builders.certificate(name, dnsNames=[f"{name}.{namespace}.svc"])


def run(api: client.ApiClient, operator_pid: int, count: int, sequential: int) -> None:
    namespace = harness.new_namespace(api)
    watcher = harness.ReadyWatcher(api, namespace, CERTIFICATES)
    bodies = [certificate(f"c{i:05d}", namespace) for i in range(count)]
    burst = harness.run_burst(
        api, watcher, namespace, CERTIFICATES, bodies, {"operator": operator_pid}
    )
    latencies = burst.latencies_ms

    print(f"certificates:            {count}")
    print(f"all Ready after:         {burst.all_ready_seconds:.2f} s")
    print(f"throughput:              {count / burst.all_ready_seconds:.1f} certificates/s")
    print(
        f"apply→Ready p50 / p99:   {statistics.median(latencies):.0f} ms / "
        f"{harness.percentile_ms(latencies, 0.99):.0f} ms"
    )
    print(f"apiserver writes/cert:   {burst.per_object(burst.writes):.2f}")
    print(f"operator peak RSS:       {harness.peak_rss_mib(operator_pid):.0f} MiB")

    sequential_ms = []
    for i in range(sequential):
        body = certificate(f"seq{i:03d}", namespace)
        applied_at = harness.create_all(api, namespace, CERTIFICATES, [body])
        name = body["metadata"]["name"]
        watcher.wait([name], timeout=30)
        sequential_ms.append((watcher.ready_at[name] - applied_at[name]) * 1000)
    if sequential_ms:
        print(
            f"sequential apply→Ready:  median {statistics.median(sequential_ms):.0f} ms "
            f"over {sequential}"
        )
    watcher.stop()
    client.CoreV1Api(api).delete_namespace(namespace)


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
