"""Test tiers and the clusters they run on.

Tests without a tier marker are `unit`. `integration` tests get the apiserver profile of
hack/cluster (etcd + kube-apiserver as local processes), started once per session;
`e2e` tests get the kind profile. CERTSMITH_KUBECONFIG=path makes both use an existing
cluster instead, which is then left running.

The Kubernetes version is KUBERNETES_VERSION (default: hack/versions.env's newest);
hack/test-integration runs the integration tier once per supported version. A test whose
API differs between versions asks for the `kubernetes_version` fixture (what the apiserver
under test reports), never for the environment variable.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client, config

REPO_ROOT = Path(__file__).resolve().parent.parent
CLUSTER_SCRIPT = REPO_ROOT / "hack" / "cluster"
TIER_MARKERS = ("integration", "e2e", "chaos")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not any(item.get_closest_marker(name) for name in TIER_MARKERS):
            item.add_marker(pytest.mark.unit)


APISERVER_PROFILE_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")


def _control_plane_processes(state_dir: Path) -> list[str]:
    """etcd/apiserver/controller-manager processes started for the cluster in `state_dir`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            exe = os.readlink(proc / "exe")
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if Path(exe).name in APISERVER_PROFILE_BINARIES and str(state_dir) in cmdline:
            found.append(exe)
    return found


class LocalCluster:
    """A cluster brought up by hack/cluster for this session, or one given by the user."""

    def __init__(self, profile: str) -> None:
        self.profile = profile
        self.started_here = False
        self.kubeconfig = ""

    def up(self) -> str:
        existing = os.environ.get("CERTSMITH_KUBECONFIG")
        if existing:
            self.kubeconfig = existing
            return existing
        result = subprocess.run(
            [str(CLUSTER_SCRIPT), "up", self.profile],
            stdout=subprocess.PIPE,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            pytest.exit(f"hack/cluster up {self.profile} failed (see its messages above)", 3)
        self.started_here = True
        self.kubeconfig = result.stdout.strip().splitlines()[-1]
        return self.kubeconfig

    def down(self) -> None:
        if self.started_here:
            subprocess.run([str(CLUSTER_SCRIPT), "down", self.profile], check=True)


@pytest.fixture(scope="session")
def kubeconfig() -> Iterator[str]:
    """Kubeconfig of the apiserver profile; stopped at the end, leaving no process behind."""
    cluster = LocalCluster("apiserver")
    kubeconfig = cluster.up()
    expected = os.environ.get("KUBERNETES_VERSION")
    if cluster.started_here and expected:
        served = served_version(config.new_client_from_config(config_file=kubeconfig))
        if served.git_version != expected:
            cluster.down()
            pytest.exit(f"hack/cluster started Kubernetes {served.git_version}, not {expected}", 3)
    yield kubeconfig
    cluster.down()
    if cluster.started_here:
        cache = Path(os.environ.get("CERTSMITH_CACHE", Path.home() / ".cache" / "certsmith"))
        state = Path(os.environ.get("CERTSMITH_STATE", cache / "state")) / "apiserver"
        leftovers = _control_plane_processes(state)
        assert not leftovers, f"hack/cluster down left processes running: {leftovers}"


@pytest.fixture(scope="session")
def kube_kubeconfig_e2e() -> Iterator[str]:
    """Kubeconfig of the kind profile; the cluster is deleted at the end of the session."""
    cluster = LocalCluster("kind")
    yield cluster.up()
    cluster.down()


@pytest.fixture(scope="session")
def api_client(kubeconfig: str) -> client.ApiClient:
    return config.new_client_from_config(config_file=kubeconfig)


@dataclass(frozen=True)
class KubernetesVersion:
    """An apiserver's version as its /version reports it."""

    git_version: str
    """e.g. "v1.37.2" """
    minor: int
    """e.g. 37 (a provider's "37+" counts as 37)"""


def served_version(api_client: client.ApiClient) -> KubernetesVersion:
    info = client.VersionApi(api_client).get_code()
    minor = re.match(r"\d+", info.minor)
    assert minor is not None, f"/version has no minor number: {info.minor!r}"
    return KubernetesVersion(git_version=info.git_version, minor=int(minor.group()))


@pytest.fixture(scope="session")
def kubernetes_version(api_client: client.ApiClient) -> KubernetesVersion:
    """The version of the cluster under test. Pod certificates, say, are served as
    certificates.k8s.io/v1 from minor 37 and as v1beta1 (behind feature gates, which
    hack/cluster turns on) in 1.35 and 1.36."""
    return served_version(api_client)


@pytest.fixture
def namespace(api_client: client.ApiClient) -> Iterator[str]:
    """A namespace of the test's own, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(api_client)
    labels = {"certsmith.dev/test-grants": "true"}
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
    )
    yield name
    core.delete_namespace(name)
