"""What every benchmark here shares: the apiserver profile, certsmith's CRDs, the operator
as a local process (as the integration tier runs it), and the apiserver's own counters.

Uses the cluster in CERTSMITH_KUBECONFIG, or brings the apiserver profile up (and down).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

REPO_ROOT = Path(__file__).resolve().parent.parent
# The benchmarks build their objects with the tests' builders (tests/), as the tests do.
sys.path.insert(0, str(REPO_ROOT))
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE", "APPLY")
METRICS_PORT = 19402
"""Where the operator a bench starts serves /metrics."""


@dataclass(frozen=True)
class Running:
    api: client.ApiClient
    kubectl: list[str]
    operator_pid: int


@dataclass(frozen=True)
class Resource:
    """A namespaced custom resource a bench creates and waits on."""

    group: str
    version: str
    plural: str


CERTSMITH_CERTIFICATES = Resource("certsmith.dev", "v1alpha1", "certificates")


def writes_by_resource(api: client.ApiClient) -> Counter[str]:
    """Mutating requests the apiserver has served, by resource ("events", "secrets", ...),
    from its own apiserver_request_total."""
    text = api.call_api("GET", api.configuration.host + "/metrics", header_params={})
    writes: Counter[str] = Counter()
    for line in text.read().decode().splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        verb = re.search(r'verb="([A-Z]+)"', line)
        resource = re.search(r'resource="([^"]*)"', line)
        if verb and verb.group(1) in WRITE_VERBS:
            writes[resource.group(1) if resource else ""] += int(float(line.rsplit(" ", 1)[1]))
    return writes


def writes_so_far(api: client.ApiClient) -> int:
    """Mutating requests the apiserver has served, by its own counter."""
    return sum(writes_by_resource(api).values())


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


def wait_ready(kubectl: list[str], kind: str, name: str, timeout_seconds: float = 60) -> None:
    """Waits until the object `kind`/`name` has condition Ready True; exits naming it after
    `timeout_seconds`."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        ready = subprocess.run(
            [
                *kubectl,
                "get",
                kind,
                name,
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
            ],
            capture_output=True,
            text=True,
        )
        if ready.stdout == "True":
            return
        time.sleep(0.2)
    raise SystemExit(f"{kind} {name} not Ready after {timeout_seconds:.0f} s")


def wait_for_authority(kubectl: list[str]) -> None:
    wait_ready(kubectl, "ca", "cluster-root")


def is_ready(body: Mapping[str, Any]) -> bool:
    """The object's status has condition Ready True."""
    conditions = (body.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


class ReadyWatcher:
    """Records when each object of `resource` in a namespace is first seen Ready
    (time.monotonic() seconds, by name).

    One watch resumed from the last resourceVersion it saw: a watch restarted without one
    lists every object again, which at 10,000 objects costs this process (and the
    apiserver) seconds per restart and delays what it records."""

    def __init__(self, api: client.ApiClient, namespace: str, resource: Resource) -> None:
        self.ready_at: dict[str, float] = {}
        self._api, self._namespace, self._resource = api, namespace, resource
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        time.sleep(1)  # the watch is open before the bench creates anything

    def _run(self) -> None:
        objects = client.CustomObjectsApi(self._api)
        resource = self._resource
        resource_version = ""
        while not self._stop.is_set():
            stream = watch.Watch().stream(
                objects.list_namespaced_custom_object,
                resource.group,
                resource.version,
                self._namespace,
                resource.plural,
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
                    name = body["metadata"]["name"]
                    if name not in self.ready_at and is_ready(body):
                        self.ready_at[name] = time.monotonic()
            except client.ApiException as error:
                if error.status != 410:
                    raise
                resource_version = ""  # expired: list again

    def wait(self, names: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while any(n not in self.ready_at for n in names):
            if time.monotonic() > deadline:
                missing = [n for n in names if n not in self.ready_at]
                raise SystemExit(f"{len(missing)} objects not Ready after {timeout}s")
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()


def new_namespace(api: client.ApiClient) -> str:
    """Creates a namespace bench-<random> and returns its name."""
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace))
    )
    return namespace


def create_all(
    api: client.ApiClient,
    namespace: str,
    resource: Resource,
    bodies: list[dict[str, Any]],
    writers: int = 16,
) -> dict[str, float]:
    """Creates `bodies` in `namespace` from `writers` parallel threads; returns when each
    create was answered (time.monotonic() seconds), by name."""
    objects = client.CustomObjectsApi(api)
    applied_at: dict[str, float] = {}

    def create(body: dict[str, Any]) -> None:
        objects.create_namespaced_custom_object(
            resource.group, resource.version, namespace, resource.plural, body
        )
        applied_at[body["metadata"]["name"]] = time.monotonic()

    with ThreadPoolExecutor(max_workers=writers) as pool:
        list(pool.map(create, bodies))
    return applied_at


# How long no write may land before a burst counts as over (settled_writes).
QUIET_SECONDS = 2.0


def settled_writes(
    api: client.ApiClient, quiet_seconds: float = QUIET_SECONDS, timeout_seconds: float = 30.0
) -> Counter[str]:
    """writes_by_resource once no write but a Lease renewal has landed for `quiet_seconds`
    (work an operator does after Ready, such as Events and clean-ups, belongs to the
    burst; leader-election and apiserver-identity Leases beat at any load), or after
    `timeout_seconds` for an operator that never stops writing."""

    def work(writes: Counter[str]) -> Counter[str]:
        return Counter({resource: n for resource, n in writes.items() if resource != "leases"})

    deadline = time.monotonic() + timeout_seconds
    writes = writes_by_resource(api)
    while time.monotonic() < deadline:
        time.sleep(quiet_seconds)
        now = writes_by_resource(api)
        if work(now) == work(writes):
            return now
        writes = now
    return writes


@dataclass(frozen=True)
class Burst:
    """What N objects created at once cost until all were Ready and writes settled."""

    count: int
    # From the first create until the last create was answered (admission included).
    all_created_seconds: float
    all_ready_seconds: float
    # apply→Ready of each object, milliseconds, ascending.
    latencies_ms: list[float]
    # Mutating requests to the apiserver, the bench's own creates not counted.
    writes: int
    event_writes: int
    # CPU seconds each process used over the burst, by the names given to run_burst.
    cpu_seconds: dict[str, float]
    # From the last object Ready until writes settled (settled_writes), seconds.
    settled_seconds: float = 0.0

    def per_object(self, value: float) -> float:
        return value / self.count


def run_burst(
    api: client.ApiClient,
    watcher: ReadyWatcher,
    namespace: str,
    resource: Resource,
    bodies: list[dict[str, Any]],
    pids: Mapping[str, int],
) -> Burst:
    """Creates `bodies` at once (create_all), waits until `watcher` has seen each Ready and
    the writes have settled (settled_writes), and measures the burst: writes by the
    apiserver's counter and CPU seconds of each process in `pids` (by name), as
    differences over that time."""
    names = [body["metadata"]["name"] for body in bodies]
    writes_before = writes_by_resource(api)
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.monotonic()
    applied_at = create_all(api, namespace, resource, bodies)
    watcher.wait(names, timeout=max(120, len(names) / 10))
    last_ready = max(watcher.ready_at[n] for n in names)
    writes = settled_writes(api)
    settled = time.monotonic() - last_ready
    cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    writes.subtract(writes_before)
    return Burst(
        count=len(names),
        all_created_seconds=max(applied_at.values()) - started,
        all_ready_seconds=last_ready - started,
        latencies_ms=sorted((watcher.ready_at[n] - applied_at[n]) * 1000 for n in names),
        writes=sum(writes.values()) - len(names),
        event_writes=writes["events"],
        cpu_seconds=cpu,
        settled_seconds=settled,
    )


def hack(script: str, *args: str) -> str:
    """Runs hack/<script> ARGS (its log on stderr) and returns the last line it printed:
    the path it reports (a kubeconfig, a binaries directory)."""
    out = subprocess.run(
        [REPO_ROOT / "hack" / script, *args], check=True, stdout=subprocess.PIPE, text=True
    ).stdout.strip()
    return out.splitlines()[-1] if out else ""


def kubectl_command(kubeconfig: str) -> list[str]:
    """The project's kubectl (hack/build-binaries) for the cluster of `kubeconfig`."""
    return [f"{hack('build-binaries')}/kubectl", "--kubeconfig", kubeconfig]


def service_account_kubeconfig(kubeconfig: str, name: str) -> str:
    """A kubeconfig for the cluster of `kubeconfig` that authenticates as ServiceAccount
    `name` (in kube-system, bound to cluster-admin) with a bound token, as an operator in a
    cluster does; the path of a file in $TMPDIR. An operator given the admin's client
    certificate instead has the apiserver verify that certificate on every request
    (x509 authentication caches nothing), where a token is verified once and cached: that
    was ~8 % of the apiserver's CPU in a burst, for each operator compared."""
    kubectl = kubectl_command(kubeconfig)
    subprocess.run(
        [*kubectl, "-n", "kube-system", "create", "serviceaccount", name], capture_output=True
    )
    subprocess.run(
        [
            *kubectl,
            "create",
            "clusterrolebinding",
            f"{name}-bench",
            "--clusterrole=cluster-admin",
            f"--serviceaccount=kube-system:{name}",
        ],
        capture_output=True,
    )
    token = subprocess.run(
        [*kubectl, "-n", "kube-system", "create", "token", name, "--duration=24h"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    cluster = subprocess.run(
        [*kubectl, "config", "view", "--raw", "--minify", "-o", "json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    document = json.loads(cluster)
    document["users"] = [{"name": name, "user": {"token": token}}]
    context = document["contexts"][0]
    context["context"]["user"] = name
    path = Path(tempfile.gettempdir()) / f"certsmith-bench-{name}.kubeconfig"
    path.write_text(json.dumps(document))
    path.chmod(0o600)
    return str(path)


@contextlib.contextmanager
def running_operator(
    *, webhooks: bool, name: str, kubeconfig: str | None = None
) -> Iterator[Running]:
    """The operator started against the cluster of `kubeconfig` (default: the one in
    CERTSMITH_KUBECONFIG, else the apiserver profile, brought up and down here) with the
    default authority Ready; its log in $TMPDIR/certsmith-<name>-operator.log."""
    kubeconfig = kubeconfig or os.environ.get("CERTSMITH_KUBECONFIG")
    started_cluster = kubeconfig is None
    if kubeconfig is None:
        kubeconfig = hack("cluster", "up")
    kubectl = kubectl_command(kubeconfig)
    subprocess.run([*kubectl, "apply", "-f", REPO_ROOT / "crds"], check=True, capture_output=True)
    subprocess.run([*kubectl, "create", "namespace", "certsmith"], capture_output=True)
    subprocess.run(
        [*kubectl, "wait", "--for=condition=Established", "crd", "--all"],
        check=True,
        capture_output=True,
    )
    if webhooks:
        # (Imported here: tests/ is importable once this module put the repo on sys.path.)
        from tests.support import install_admission

        # The apiserver runs on this host: it calls the webhooks on loopback, as users'
        # clusters call them through the Service, so each create pays for admission.
        install_admission(kubeconfig, "https://127.0.0.1:19443")
    log_path = Path(tempfile.gettempdir()) / f"certsmith-{name}-operator.log"
    print(f"operator log:            {log_path}")
    with log_path.open("w") as log:
        operator = subprocess.Popen(
            [sys.executable, "-m", "certsmith"],
            env={
                **os.environ,
                "KUBECONFIG": service_account_kubeconfig(kubeconfig, "certsmith"),
                "CERTSMITH_NAMESPACE": "certsmith",
                "CERTSMITH_WEBHOOK_LISTEN_PORT": "19443",
                "CERTSMITH_WEBHOOK_CERT_DIR": str(Path(tempfile.gettempdir()) / "bench-webhook"),
                "CERTSMITH_METRICS_PORT": str(METRICS_PORT),
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
            hack("cluster", "down")
