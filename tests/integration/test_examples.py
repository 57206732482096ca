"""Every manifest in examples/ applies as it is and its Certificates become Ready."""

from __future__ import annotations

import pytest
import yaml
from kubernetes import client

from tests.integration import certs
from tests.support import REPO_ROOT, kubectl, wait_for

pytestmark = pytest.mark.integration
EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))


@pytest.fixture
def shop(api_client):
    yield "shop"
    client.CoreV1Api(api_client).delete_namespace("shop")
    wait_for(
        lambda: "shop"
        not in {n.metadata.name for n in client.CoreV1Api(api_client).list_namespace().items},
        timeout=60,
        what="namespace shop gone",
    )


def test_examples_apply_and_become_ready(api_client, kubeconfig, running_operator, shop):
    for path in EXAMPLES:
        applied = kubectl(kubeconfig, "apply", "-f", str(path), check=False)
        assert applied.returncode == 0, f"{path.name}: {applied.stderr}"
    names = [
        doc["metadata"]["name"]
        for path in EXAMPLES
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc["kind"] == "Certificate"
    ]
    pod = client.CoreV1Api(api_client).read_namespaced_pod("checkout", shop)
    identity_secret = next(
        v.secret.secret_name for v in pod.spec.volumes if v.name == "certsmith-tls"
    )
    names.append(identity_secret.removesuffix("-tls"))
    for name in names:
        wait_for(
            lambda n=name: certs.is_ready(api_client, shop, n), timeout=20, what=f"{name} Ready"
        )
    storefront = certs.secret(api_client, shop, "storefront-tls")
    assert storefront.metadata.labels["team"] == "shop"
