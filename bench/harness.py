"""What every benchmark here shares: the apiserver profile, certsmith's CRDs, the operator
as a local process (as the integration tier runs it), and the apiserver's own counters.

Uses the cluster in CERTSMITH_KUBECONFIG, or brings the apiserver profile up (and down).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client, config

REPO_ROOT = Path(__file__).resolve().parent.parent
# The benchmarks build their objects with the tests' builders (tests/), as the tests do.
sys.path.insert(0, str(REPO_ROOT))
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE", "APPLY")


@dataclass(frozen=True)
class Running:
    api: client.ApiClient
    kubectl: list[str]
    operator_pid: int


def writes_so_far(api: client.ApiClient) -> int:
    """Mutating requests the apiserver has served, by its own counter."""
    text = api.call_api("GET", api.configuration.host + "/metrics", header_params={})
    total = 0
    for line in text.read().decode().splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        verb = re.search(r'verb="([A-Z]+)"', line)
        if verb and verb.group(1) in WRITE_VERBS:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process `pid` has used so far, from /proc/<pid>/stat
    (proc(5): utime and stime, fields 14 and 15, in clock ticks)."""
    # The command name (field 2) may hold spaces: count fields after its closing ")".
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cluster_pids() -> dict[str, int]:
    """The apiserver profile's processes by component (etcd, kube-apiserver,
    kube-controller-manager), from the pid files hack/cluster keeps in its state dir."""
    cache = Path(os.environ.get("CERTSMITH_CACHE", Path.home() / ".cache" / "certsmith"))
    state = Path(os.environ.get("CERTSMITH_STATE", cache / "state")) / "apiserver"
    return {path.stem: int(path.read_text()) for path in sorted(state.glob("*.pid"))}


def percentile_ms(latencies_ms: list[float], fraction: float) -> float:
    """The `fraction` (0.5, 0.99) quantile of `latencies_ms`, nearest rank."""
    ordered = sorted(latencies_ms)
    return ordered[max(0, int(len(ordered) * fraction + 0.5) - 1)]


def wait_for_authority(kubectl: list[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready = subprocess.run(
            [
                *kubectl,
                "get",
                "ca",
                "cluster-root",
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
            ],
            capture_output=True,
            text=True,
        )
        if ready.stdout == "True":
            return
        time.sleep(0.2)
    raise SystemExit("CertificateAuthority cluster-root not Ready after 60 s")


@contextlib.contextmanager
def running_operator(*, webhooks: bool, name: str) -> Iterator[Running]:
    """The operator started against the apiserver profile (brought up if needed) with the
    default authority Ready; its log in $TMPDIR/certsmith-<name>-operator.log."""
    kubeconfig = os.environ.get("CERTSMITH_KUBECONFIG")
    started_cluster = kubeconfig is None
    if started_cluster:
        out = subprocess.run(
            [REPO_ROOT / "hack" / "cluster", "up"], check=True, stdout=subprocess.PIPE, text=True
        ).stdout
        kubeconfig = out.strip().splitlines()[-1]
    assert kubeconfig is not None
    bin_dir = (
        subprocess.run(
            [REPO_ROOT / "hack" / "build-binaries"], check=True, stdout=subprocess.PIPE, text=True
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    kubectl = [f"{bin_dir}/kubectl", "--kubeconfig", kubeconfig]
    subprocess.run([*kubectl, "apply", "-f", REPO_ROOT / "crds"], check=True, capture_output=True)
    subprocess.run([*kubectl, "create", "namespace", "certsmith"], capture_output=True)
    subprocess.run(
        [*kubectl, "wait", "--for=condition=Established", "crd", "--all"],
        check=True,
        capture_output=True,
    )
    log_path = Path(tempfile.gettempdir()) / f"certsmith-{name}-operator.log"
    print(f"operator log:            {log_path}")
    with log_path.open("w") as log:
        operator = subprocess.Popen(
            [sys.executable, "-m", "certsmith"],
            env={
                **os.environ,
                "KUBECONFIG": kubeconfig,
                "CERTSMITH_NAMESPACE": "certsmith",
                # The apiserver runs on this host: it calls the webhooks on loopback, as users'
                # clusters call them through the Service, so each create pays for admission.
                "CERTSMITH_WEBHOOK_URL": "https://127.0.0.1:19443",
                "CERTSMITH_WEBHOOK_LISTEN_PORT": "19443",
                "CERTSMITH_WEBHOOK_CERT_DIR": str(Path(tempfile.gettempdir()) / "bench-webhook"),
                "CERTSMITH_METRICS_PORT": "19402",
                "CERTSMITH_HEALTH_PORT": "19081",
                "CERTSMITH_WEBHOOKS": "on" if webhooks else "off",
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        api = config.new_client_from_config(config_file=kubeconfig)
        wait_for_authority(kubectl)
        yield Running(api=api, kubectl=kubectl, operator_pid=operator.pid)
    finally:
        operator.terminate()
        operator.wait()
        if started_cluster:
            subprocess.run([REPO_ROOT / "hack" / "cluster", "down"], check=True)
