"""certsmith installed in the kind cluster as a user installs it (hack/deploy)."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from kubernetes import client, config

from tests import builders
from tests.builders import GROUP, VERSION
from tests.e2e.pods import ROTATING_AUTHORITY, cluster_trust_bundle, start_peers
from tests.support import REPO_ROOT, kubectl

ROTATE_ANNOTATION = "certsmith.dev/rotate-requested-at"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """test_helm.py replaces the kustomize install every other e2e test uses: it runs last
    (a stable sort: the others keep their order)."""
    items.sort(key=lambda item: item.path.name == "test_helm.py")


@pytest.fixture(scope="session")
def e2e_client(kube_kubeconfig_e2e: str) -> client.ApiClient:
    return config.new_client_from_config(config_file=kube_kubeconfig_e2e)


@pytest.fixture(scope="session")
def certsmith_installed(kube_kubeconfig_e2e: str) -> str:
    """Builds the images from the repo's Dockerfiles, loads them, applies crds/ and manifests/."""
    subprocess.run(
        [str(REPO_ROOT / "hack" / "deploy")],
        env={**os.environ, "KUBECONFIG": kube_kubeconfig_e2e},
        check=True,
    )
    return kube_kubeconfig_e2e


@pytest.fixture
def e2e_namespace(e2e_client: client.ApiClient, kube_kubeconfig_e2e: str) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(e2e_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    kubectl(kube_kubeconfig_e2e, "delete", "namespace", name, "--wait=false", check=False)


@dataclass(frozen=True)
class PodCertificateRotation:
    """Two pods talking mTLS with pod certificates of authority ROTATING_AUTHORITY, whose root
    rotation was requested as soon as they were Ready (`requested_at`, monotonic seconds)."""

    namespace: str
    requested_at: float
    old_roots: str
    """The authority's ClusterTrustBundle (PEM) before the rotation."""
    calling: dict[str, int]
    """Each peer's log lines when both were calling each other, before the rotation."""


@pytest.fixture(scope="session", autouse=True)
def pod_certificate_rotation(
    certsmith_installed: str, e2e_client: client.ApiClient
) -> Iterator[PodCertificateRotation]:
    """Started first, so its wait overlaps the other tests: pods keep a pod certificate until
    kubelet refreshes it, at least 10 min after it was signed (Kubernetes' bound), so a
    rotation with pod certificates in use lasts ~20 min. Its own authority, so the rotations
    other tests make of cluster-root never wait for these pods."""
    objects = client.CustomObjectsApi(e2e_client)
    objects.create_cluster_custom_object(
        GROUP,
        VERSION,
        "certificateauthorities",
        builders.authority(
            ROTATING_AUTHORITY,
            # An hour-long certificate refreshed after 10 min: the earliest Kubernetes allows.
            podCertificates={"renewBefore": "50m"},
            # kubelet refreshed projected volumes in 60-90 s here.
            rotation={"propagationDelay": "120s"},
        ),
    )
    namespace = f"e2e-rotation-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(e2e_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    calling = start_peers(
        certsmith_installed, e2e_client, namespace, replace={"cluster-root": ROTATING_AUTHORITY}
    )
    old_roots = cluster_trust_bundle(e2e_client, ROTATING_AUTHORITY)
    objects.patch_cluster_custom_object(
        GROUP,
        VERSION,
        "certificateauthorities",
        ROTATING_AUTHORITY,
        {"metadata": {"annotations": {ROTATE_ANNOTATION: datetime.now(UTC).isoformat()}}},
    )
    yield PodCertificateRotation(
        namespace=namespace, requested_at=time.monotonic(), old_roots=old_roots, calling=calling
    )
    kubectl(certsmith_installed, "delete", "namespace", namespace, "--wait=false", check=False)
    objects.delete_cluster_custom_object(
        GROUP, VERSION, "certificateauthorities", ROTATING_AUTHORITY
    )
