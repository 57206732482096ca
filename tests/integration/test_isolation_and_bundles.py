"""Trust bundles in every namespace, and namespaces that cannot mint each other's names."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from certsmith.pki import inspect
from tests.integration import certs
from tests.support import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def plain_namespaces(api_client) -> Iterator[list[str]]:
    """Namespaces without the test grant: the default isolation policy applies."""
    core = client.CoreV1Api(api_client)
    names = [f"iso-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for name in names:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield names
    for name in names:
        core.delete_namespace(name)


def bundle(core: client.CoreV1Api, namespace: str) -> str | None:
    try:
        return core.read_namespaced_config_map("certsmith-ca", namespace).data["ca.crt"]
    except client.ApiException:
        return None


def test_every_namespace_gets_the_trust_bundle_and_drift_is_repaired(
    api_client, namespace, running_operator
):
    core = client.CoreV1Api(api_client)
    certs.create(api_client, namespace, certs.certificate("web", dnsNames=[f"web.{namespace}.svc"]))
    wait_for(lambda: certs.is_ready(api_client, namespace, "web"), timeout=15, what="Ready")
    expected = certs.secret_bytes(certs.secret(api_client, namespace, "web-tls"), "ca.crt").decode()
    assert wait_for(lambda: bundle(core, namespace), timeout=15, what="bundle") == expected

    core.delete_namespaced_config_map("certsmith-ca", namespace)
    wait_for(lambda: bundle(core, namespace) == expected, timeout=15, what="bundle recreated")
    core.patch_namespaced_config_map("certsmith-ca", namespace, {"data": {"ca.crt": "tampered"}})
    wait_for(lambda: bundle(core, namespace) == expected, timeout=15, what="bundle restored")


def test_a_namespace_cannot_obtain_another_namespaces_identity(
    api_client, plain_namespaces, running_operator
):
    a, b = plain_namespaces
    for spec in (
        {"dnsNames": [f"web.{b}.svc.cluster.local"]},
        {"uris": [f"spiffe://cluster.local/ns/{b}/sa/default"]},
    ):
        with pytest.raises(client.ApiException) as refused:
            certs.create(api_client, a, certs.certificate("steal", **spec))
        assert refused.value.status == 403
        assert "may name its own services and SPIFFE IDs only" in refused.value.body
        assert "spec.dnsNames[0]" in refused.value.body or "spec.uris[0]" in refused.value.body
    certs.create(api_client, a, certs.certificate("own", dnsNames=[f"web.{a}.svc"]))
    wait_for(lambda: certs.is_ready(api_client, a, "own"), timeout=15, what="own name signed")


def test_denied_while_the_webhook_was_down_is_never_signed_until_granted(
    api_client, plain_namespaces, running_operator, validating_webhook_down
):
    a, b = plain_namespaces
    certs.create(api_client, a, certs.certificate("steal", dnsNames=[f"web.{b}.svc.cluster.local"]))

    def denied():
        cond = certs.condition(certs.get(api_client, a, "steal"))
        return cond if cond and cond["reason"] == "PolicyDenied" else None

    cond = wait_for(denied, timeout=15, what="PolicyDenied")
    assert cond["status"] == "False" and "spec.dnsNames[0]" in cond["message"]
    with pytest.raises(client.ApiException):
        certs.secret(api_client, a, "steal-tls")

    # The cluster admin grants namespace a that name: now it is signed.
    objects = client.CustomObjectsApi(api_client)
    ca = objects.get_cluster_custom_object(
        "certsmith.dev", "v1alpha1", "certificateauthorities", "cluster-root"
    )
    grants = list(((ca["spec"].get("policy") or {}).get("grants")) or [])
    grant = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": a}},
        "dnsNames": [f"web.{b}.svc.cluster.local"],
    }
    objects.patch_cluster_custom_object(
        "certsmith.dev",
        "v1alpha1",
        "certificateauthorities",
        "cluster-root",
        {"spec": {"policy": {"grants": [*grants, grant]}}},
    )
    try:
        wait_for(lambda: certs.is_ready(api_client, a, "steal"), timeout=20, what="signed")
    finally:
        objects.patch_cluster_custom_object(
            "certsmith.dev",
            "v1alpha1",
            "certificateauthorities",
            "cluster-root",
            {"spec": {"policy": {"grants": grants}}},
        )


def test_a_namespace_label_grants_and_revokes_without_touching_the_certificate(
    api_client, plain_namespaces, running_operator, validating_webhook_down
):
    """The test grant follows the label certsmith.dev/test-grants: adding it signs what
    waited (created while the webhook was down), removing it turns the Certificate
    PolicyDenied at once, not at its next renewal; its Secret stays."""
    a, _ = plain_namespaces
    core = client.CoreV1Api(api_client)
    certs.create(api_client, a, certs.certificate("granted", dnsNames=["granted.example.com"]))

    def reason() -> str | None:
        cond = certs.condition(certs.get(api_client, a, "granted"))
        return cond["reason"] if cond else None

    wait_for(lambda: reason() == "PolicyDenied", timeout=15, what="PolicyDenied without grant")
    core.patch_namespace(a, {"metadata": {"labels": {"certsmith.dev/test-grants": "true"}}})
    wait_for(lambda: certs.is_ready(api_client, a, "granted"), timeout=15, what="signed")
    serial = certs.get(api_client, a, "granted")["status"]["serialNumber"]

    core.patch_namespace(a, {"metadata": {"labels": {"certsmith.dev/test-grants": None}}})
    wait_for(lambda: reason() == "PolicyDenied", timeout=15, what="PolicyDenied once revoked")
    kept = certs.leaf_of(certs.secret(api_client, a, "granted-tls"))
    assert inspect.serial_hex(kept) == serial
