"""cert-manager and certsmith side by side: the same N Certificates applied at once to each.

Runs cert-manager (CERT_MANAGER_VERSION in hack/versions.env, built by
hack/build-cert-manager: every default controller, a CA ClusterIssuer, no webhook), then
certsmith with its admission on (as users run it), each on a fresh apiserver profile
(hack/cluster down, then up: empty etcd, same flags), with the same writers creating the
same Certificates (dnsNames, ECDSA P-256 keys, a P-256 CA). Prints one table: all Ready,
p50/p99/max apply→Ready, apiserver writes per certificate (and how many were Events), the
controller's peak RSS, and CPU per certificate of the controller, kube-apiserver and etcd
(/proc, over the burst); the last column is cert-manager ÷ certsmith, so above 1 certsmith
is that many times faster or cheaper.

    .venv/bin/python bench/compare.py [--count 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from kubernetes import client, config

import harness
from certsmith.pki.ca import build_root
from issuance import certificate as certsmith_certificate

CERT_MANAGER_CERTIFICATES = harness.Resource("cert-manager.io", "v1", "certificates")
ISSUER = "bench-ca"
# Where cert-manager keeps a ClusterIssuer's Secret (its --cluster-resource-namespace).
ISSUER_NAMESPACE = "kube-system"
PROFILE_PROCESSES = ("kube-apiserver", "etcd")


def cert_manager_certificate(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": name},
        "spec": {
            "secretName": f"{name}-tls",
            "dnsNames": [f"{name}.{namespace}.svc"],
            # certsmith's default key; cert-manager's own default is RSA 2048.
            "privateKey": {"algorithm": "ECDSA", "size": 256},
            "issuerRef": {"name": ISSUER, "kind": "ClusterIssuer", "group": "cert-manager.io"},
        },
    }


@dataclass(frozen=True)
class Result:
    """One operator's burst and its peak RSS (MiB)."""

    burst: harness.Burst
    peak_rss_mib: float


@contextlib.contextmanager
def fresh_profile() -> Iterator[str]:
    """A new apiserver profile (empty etcd) for the duration; yields its kubeconfig."""
    harness.hack("cluster", "down")
    try:
        yield harness.hack("cluster", "up")
    finally:
        harness.hack("cluster", "down")


def create_ca_issuer(api: client.ApiClient, kubectl: list[str]) -> None:
    """A ClusterIssuer `bench-ca` of kind CA over a fresh ECDSA P-256 root."""
    root = build_root(common_name="bench-ca", now=datetime.now(UTC), lifetime=timedelta(days=3650))
    key = root.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    certificate = root.certificate.public_bytes(serialization.Encoding.PEM)
    client.CoreV1Api(api).create_namespaced_secret(
        ISSUER_NAMESPACE,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=ISSUER),
            type="kubernetes.io/tls",
            string_data={"tls.crt": certificate.decode(), "tls.key": key.decode()},
        ),
    )
    client.CustomObjectsApi(api).create_cluster_custom_object(
        "cert-manager.io",
        "v1",
        "clusterissuers",
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "ClusterIssuer",
            "metadata": {"name": ISSUER},
            "spec": {"ca": {"secretName": ISSUER}},
        },
    )


@contextlib.contextmanager
def running_cert_manager(kubeconfig: str, home: Path) -> Iterator[harness.Running]:
    """cert-manager's controller (built in `home` by hack/build-cert-manager) against the
    cluster of `kubeconfig`, with its CRDs and the ClusterIssuer Ready; its log in
    $TMPDIR/certsmith-compare-cert-manager.log."""
    kubectl = harness.kubectl_command(kubeconfig)
    subprocess.run([*kubectl, "apply", "-f", home / "crds"], check=True, capture_output=True)
    subprocess.run(
        [*kubectl, "wait", "--for=condition=Established", "crd", "--all"],
        check=True,
        capture_output=True,
    )
    api = config.new_client_from_config(config_file=kubeconfig)
    create_ca_issuer(api, kubectl)
    log_path = Path(tempfile.gettempdir()) / "certsmith-compare-cert-manager.log"
    print(f"cert-manager log:        {log_path}")
    with log_path.open("w") as log:
        controller = subprocess.Popen(
            [
                home / "bin" / "cert-manager-controller",
                "-kubeconfig",
                # Authenticated as certsmith is (harness.service_account_kubeconfig).
                harness.service_account_kubeconfig(kubeconfig, "cert-manager"),
                "-cluster-resource-namespace",
                ISSUER_NAMESPACE,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        harness.wait_ready(kubectl, "clusterissuer", ISSUER)
        yield harness.Running(api=api, kubectl=kubectl, operator_pid=controller.pid)
    finally:
        controller.terminate()
        controller.wait()


def measure(
    running: harness.Running,
    resource: harness.Resource,
    body: Callable[[str, str], dict[str, Any]],
    count: int,
) -> Result:
    """`count` Certificates created at once in a new namespace, until all are Ready."""
    api = running.api
    namespace = harness.new_namespace(api)
    watcher = harness.ReadyWatcher(api, namespace, resource)
    cluster = harness.cluster_pids()
    pids = {"operator": running.operator_pid, **{p: cluster[p] for p in PROFILE_PROCESSES}}
    bodies = [body(f"c{i:05d}", namespace) for i in range(count)]
    burst = harness.run_burst(api, watcher, namespace, resource, bodies, pids)
    watcher.stop()
    return Result(burst=burst, peak_rss_mib=harness.peak_rss_mib(running.operator_pid))


# --- the table (pure) --------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One figure of both runs; lower is better for every figure, so the ratio
    cert-manager ÷ certsmith says how many times better certsmith does."""

    label: str
    cert_manager: float
    certsmith: float
    unit: str
    digits: int = 1

    def ratio(self) -> float:
        return self.cert_manager / self.certsmith if self.certsmith else float("inf")


def rows(cert_manager: Result, certsmith: Result) -> list[Row]:
    """The figures the issue compares, from two results of the same `count`."""

    def both(figure: Callable[[Result], float]) -> tuple[float, float]:
        return figure(cert_manager), figure(certsmith)

    def cpu_ms(process: str) -> Callable[[Result], float]:
        return lambda r: r.burst.per_object(r.burst.cpu_seconds[process]) * 1000

    return [
        Row("all created", *both(lambda r: r.burst.all_created_seconds), "s", 2),
        Row("all Ready", *both(lambda r: r.burst.all_ready_seconds), "s", 2),
        Row("apply→Ready p50", *both(lambda r: percentile_s(r, 0.5)), "s", 2),
        Row("apply→Ready p99", *both(lambda r: percentile_s(r, 0.99)), "s", 2),
        Row("apply→Ready max", *both(lambda r: r.burst.latencies_ms[-1] / 1000), "s", 2),
        Row("apiserver writes / cert", *both(lambda r: r.burst.per_object(r.burst.writes)), "", 2),
        Row(
            "  of them Events",
            *both(lambda r: r.burst.per_object(r.burst.event_writes)),
            "",
            2,
        ),
        Row("controller peak RSS", *both(lambda r: r.peak_rss_mib), "MiB", 0),
        Row("CPU / cert: controller", *both(cpu_ms("operator")), "ms"),
        Row("CPU / cert: kube-apiserver", *both(cpu_ms("kube-apiserver")), "ms"),
        Row("CPU / cert: etcd", *both(cpu_ms("etcd")), "ms"),
        Row(
            "CPU / cert: all three",
            *both(lambda r: sum(cpu_ms(p)(r) for p in ("operator", *PROFILE_PROCESSES))),
            "ms",
        ),
    ]


def percentile_s(result: Result, fraction: float) -> float:
    return harness.percentile_ms(result.burst.latencies_ms, fraction) / 1000


def format_table(table: list[Row], count: int) -> str:
    """The rows as a Markdown table; all Ready also shows certificates/s for `count`."""

    def cell(row: Row, value: float) -> str:
        text = f"{value:.{row.digits}f} {row.unit}".rstrip()
        if row.label == "all Ready" and value > 0:
            text += f" ({count / value:.1f}/s)"
        return text

    lines = [
        f"| N = {count} | cert-manager | certsmith (admission on) | cert-manager ÷ certsmith |",
        "|---|---|---|---|",
    ]
    for row in table:
        ratio = f"{row.ratio():.1f}x" if math.isfinite(row.ratio()) else "∞"
        lines.append(
            f"| {row.label} | {cell(row, row.cert_manager)} | {cell(row, row.certsmith)} "
            f"| {ratio} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()

    home = Path(harness.hack("build-cert-manager"))
    print(f"cert-manager:            {home}", file=sys.stderr)
    with fresh_profile() as kubeconfig, running_cert_manager(kubeconfig, home) as running:
        cert_manager = measure(
            running, CERT_MANAGER_CERTIFICATES, cert_manager_certificate, args.count
        )
    with (
        fresh_profile() as kubeconfig,
        harness.running_operator(webhooks=True, name="compare", kubeconfig=kubeconfig) as running,
    ):
        certsmith = measure(
            running, harness.CERTSMITH_CERTIFICATES, certsmith_certificate, args.count
        )
    print(format_table(rows(cert_manager, certsmith), args.count))
    print(
        "Costs run from the first create until no write but Lease renewals landed for "
        f"{harness.QUIET_SECONDS:.0f} s: "
        f"{cert_manager.burst.settled_seconds:.0f} s after all were Ready for cert-manager, "
        f"{certsmith.burst.settled_seconds:.0f} s for certsmith."
    )


if __name__ == "__main__":
    main()
