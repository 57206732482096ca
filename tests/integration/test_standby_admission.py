"""The validating webhook of a replica that does not hold the Lease judges grants against
the namespace's labels as they are now, not as that replica once saw them."""

from __future__ import annotations

import contextlib
import uuid

import pytest
from kubernetes import client

from tests.integration import certs
from tests.integration.conftest import OPERATOR_NAMESPACE, OperatorProcess
from tests.support import wait_for

pytestmark = pytest.mark.integration

TEAM_LABEL = "certsmith.dev/test-team"


def holder(api_client: client.ApiClient) -> str | None:
    try:
        lease = client.CoordinationV1Api(api_client).read_namespaced_lease(
            "certsmith-leader", OPERATOR_NAMESPACE
        )
    except client.ApiException:
        return None
    return lease.spec.holder_identity


def validating_url(api_client: client.ApiClient) -> str | None:
    """Where the apiserver sends Certificate admission requests (URL and path)."""
    try:
        found = client.AdmissionregistrationV1Api(api_client).read_validating_webhook_configuration(
            "certsmith.dev"
        )
    except client.ApiException:
        return None
    return found.webhooks[0].client_config.url


def refusal(api_client: client.ApiClient, action) -> client.ApiException | None:
    """The apiserver's refusal of `action`, or None when it was admitted."""
    try:
        action()
    except client.ApiException as error:
        return error
    return None


def test_a_standby_judges_grants_on_the_namespaces_current_labels(
    api_client, kubeconfig, namespace, running_operator, tmp_path
):
    """Two replicas: the leader runs with CERTSMITH_WEBHOOKS=off, so it serves no
    admission (in this tier the webhook configurations are installed pointing at the
    loopback URL of the last replica started with webhooks); the standby is the only
    replica the configurations call, so every Certificate create
    and update below is judged by the replica that does not hold the Lease, which sees no
    namespace watch events. The namespace is relabelled twice, granting then revoking: a
    webhook reading a label cache that only the leader's watch refreshes would judge the
    second and third requests on the labels of the first."""
    running_operator.stop()  # the session's single replica steps aside for this test
    leader = OperatorProcess(
        kubeconfig, tmp_path / "leader.log", identity="leader", env={"CERTSMITH_WEBHOOKS": "off"}
    )
    standby = OperatorProcess(kubeconfig, tmp_path / "standby.log", identity="standby")
    authority = f"team-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api_client)
    leader.start()
    try:
        wait_for(lambda: holder(api_client) == "leader", timeout=40, what="the leader")
        standby.start()
        standby.wait_ready(timeout=60, what="standby serving")
        wait_for(
            lambda: validating_url(api_client)
            == f"https://127.0.0.1:{standby.webhook_port}/validate-certificate",
            timeout=30,
            what="the webhook configurations calling the standby",
        )
        certs.create_authority(
            api_client,
            authority,
            policy={
                "grants": [
                    {
                        "namespaceSelector": {"matchLabels": {TEAM_LABEL: "blue"}},
                        "dnsNames": ["*.blue.example"],
                    }
                ]
            },
        )

        def create(name: str, dns_name: str):
            body = certs.certificate(name, issuerRef={"name": authority}, dnsNames=[dns_name])
            return lambda: certs.create(api_client, namespace, body)

        # Not granted: refused by the standby (which would now have cached the labels).
        refused = refusal(api_client, create("before", "web.blue.example"))
        assert refused is not None and refused.status == 403, refused
        assert "spec.dnsNames[0]" in refused.body

        core.patch_namespace(namespace, {"metadata": {"labels": {TEAM_LABEL: "blue"}}})
        assert refusal(api_client, create("granted", "web.blue.example")) is None

        core.patch_namespace(namespace, {"metadata": {"labels": {TEAM_LABEL: None}}})
        refused = refusal(
            api_client,
            lambda: certs.patch_spec(
                api_client, namespace, "granted", {"dnsNames": ["api.blue.example"]}
            ),
        )
        assert refused is not None and refused.status == 403, refused
        assert "spec.dnsNames[0]" in refused.body
        assert certs.get(api_client, namespace, "granted")["spec"]["dnsNames"] == [
            "web.blue.example"
        ]

        # Judged by the standby throughout: the leader never changed.
        assert holder(api_client) == "leader"
        assert (
            validating_url(api_client)
            == f"https://127.0.0.1:{standby.webhook_port}/validate-certificate"
        )
    finally:
        standby.stop()
        leader.stop()
        with contextlib.suppress(client.ApiException):  # not created if the start failed
            client.CustomObjectsApi(api_client).delete_cluster_custom_object(
                certs.GROUP, certs.VERSION, "certificateauthorities", authority
            )


def test_a_standby_with_webhooks_off_is_ready(api_client, kubeconfig, running_operator, tmp_path):
    """With CERTSMITH_WEBHOOKS=off a standby serves nothing and signs nothing, so it does not
    load the default authority; /readyz must not wait for it (it answered 503 "not loaded
    yet" for ever). Once it leads, the authority counts again."""
    running_operator.stop()
    leader = OperatorProcess(kubeconfig, tmp_path / "leader.log", identity="leader")
    standby = OperatorProcess(
        kubeconfig, tmp_path / "standby.log", identity="standby", env={"CERTSMITH_WEBHOOKS": "off"}
    )
    leader.start()
    try:
        wait_for(lambda: holder(api_client) == "leader", timeout=40, what="the leader")
        standby.start()
        standby.wait_ready(timeout=60, what="the standby ready")
        assert holder(api_client) == "leader"
        leader.kill()
        wait_for(lambda: holder(api_client) == "standby", timeout=40, what="the takeover")
        standby.wait_ready(timeout=60, what="the new leader ready")
    finally:
        standby.stop()
        leader.stop()
