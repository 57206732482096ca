"""certsmith installed in the kind cluster as a user installs it (hack/deploy)."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client, config

from tests.support import REPO_ROOT, kubectl


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
