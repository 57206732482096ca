"""Workloads that opt in are rolled when the Secret their pods use is re-issued."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from kubernetes import client

from certsmith.pods import rollout
from tests.integration import certs
from tests.support import wait_for

pytestmark = pytest.mark.integration


OPTED_IN = {"certsmith.dev/restart-on-rotation": "true"}


def deployment(name: str, secret_name: str, *, opted_in: bool) -> client.V1Deployment:
    return pod_template_deployment(
        name,
        labels={},
        annotations={},
        opted_in=opted_in,
        volumes=[
            client.V1Volume(name="tls", secret=client.V1SecretVolumeSource(secret_name=secret_name))
        ],
    )


def pod_template_deployment(
    name: str,
    *,
    labels: dict[str, str],
    annotations: dict[str, str],
    opted_in: bool = True,
    service_account: str | None = None,
    volumes: list[client.V1Volume] | None = None,
) -> client.V1Deployment:
    """A Deployment with these pod template labels, annotations and volumes."""
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, annotations=OPTED_IN if opted_in else None),
        spec=client.V1DeploymentSpec(
            selector=client.V1LabelSelector(match_labels={"app": name}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(
                    labels={"app": name, **labels}, annotations=annotations or None
                ),
                spec=client.V1PodSpec(
                    service_account_name=service_account,
                    automount_service_account_token=False,
                    containers=[client.V1Container(name="app", image="nginx")],
                    volumes=volumes,
                ),
            ),
        ),
    )


def env_stateful_set(name: str, secret_name: str) -> client.V1StatefulSet:
    """A StatefulSet reading the Secret into its environment, which kubelet never refreshes."""
    key = client.V1SecretKeySelector(name=secret_name, key="tls.crt")
    return client.V1StatefulSet(
        metadata=client.V1ObjectMeta(name=name, annotations=OPTED_IN),
        spec=client.V1StatefulSetSpec(
            selector=client.V1LabelSelector(match_labels={"app": name}),
            service_name=name,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": name}),
                spec=client.V1PodSpec(
                    containers=[
                        client.V1Container(
                            name="app",
                            image="nginx",
                            env=[
                                client.V1EnvVar(
                                    name="CERT",
                                    value_from=client.V1EnvVarSource(secret_key_ref=key),
                                )
                            ],
                        )
                    ]
                ),
            ),
        ),
    )


def template_annotations(apps: client.AppsV1Api, namespace: str, name: str) -> dict:
    read = apps.read_namespaced_deployment(name, namespace)
    return read.spec.template.metadata.annotations or {}


def renew(api_client: client.ApiClient, namespace: str, name: str) -> str:
    """Request a renewal and wait for it; the new serial."""
    first = wait_for(
        lambda: certs.is_ready(api_client, namespace, name), timeout=15, what=f"{name} Ready"
    )["status"]["serialNumber"]
    client.CustomObjectsApi(api_client).patch_namespaced_custom_object(
        "certsmith.dev",
        "v1alpha1",
        namespace,
        "certificates",
        name,
        {
            "metadata": {
                "annotations": {"certsmith.dev/renew-requested-at": datetime.now(UTC).isoformat()}
            }
        },
    )
    return wait_for(
        lambda: (s := certs.get(api_client, namespace, name)["status"]["serialNumber"]) != first
        and s,
        timeout=15,
        what=f"{name} re-issued",
    )


def test_reissue_rolls_opted_in_deployments_only(api_client, namespace, running_operator):
    apps = client.AppsV1Api(api_client)
    certs.create(api_client, namespace, certs.certificate("api", dnsNames=["api.example.com"]))
    apps.create_namespaced_deployment(namespace, deployment("rolled", "api-tls", opted_in=True))
    apps.create_namespaced_deployment(namespace, deployment("left", "api-tls", opted_in=False))
    second = renew(api_client, namespace, "api")
    wait_for(
        lambda: template_annotations(apps, namespace, "rolled").get("certsmith.dev/rotated-secret")
        == f"api-tls@{second}",
        timeout=15,
        what="opted-in Deployment rolled",
    )
    assert "certsmith.dev/rotated-secret" not in template_annotations(apps, namespace, "left")


def test_reissue_rolls_workloads_whose_pods_get_the_certificate_by_injection_or_env(
    api_client, namespace, running_operator
):
    apps = client.AppsV1Api(api_client)
    certs.create(api_client, namespace, certs.certificate("api", dnsNames=["api.example.com"]))
    named = {"certsmith.dev/certificate": "api"}
    injected = {"certsmith.dev/inject": "true"}
    apps.create_namespaced_deployment(
        namespace, pod_template_deployment("injected", labels=injected, annotations=named)
    )
    # The same annotation without the opt-in label: its pods never get the Secret.
    apps.create_namespaced_deployment(
        namespace, pod_template_deployment("not-injected", labels={}, annotations=named)
    )
    apps.create_namespaced_stateful_set(namespace, env_stateful_set("env", "api-tls"))

    serial = renew(api_client, namespace, "api")
    wait_for(
        lambda: template_annotations(apps, namespace, "injected").get(
            "certsmith.dev/rotated-secret"
        )
        == f"api-tls@{serial}",
        timeout=15,
        what="Deployment with an injected certificate rolled",
    )
    wait_for(
        lambda: (
            apps.read_namespaced_stateful_set("env", namespace).spec.template.metadata.annotations
            or {}
        ).get("certsmith.dev/rotated-secret")
        == f"api-tls@{serial}",
        timeout=15,
        what="StatefulSet reading the Secret into its environment rolled",
    )
    assert "certsmith.dev/rotated-secret" not in template_annotations(
        apps, namespace, "not-injected"
    )

    # A new secretName: injected pods follow the Certificate, so they are rolled to it too.
    certs.patch_spec(api_client, namespace, "api", {"secretName": "api-moved-tls"})
    moved = wait_for(
        lambda: (body := certs.is_ready(api_client, namespace, "api"))
        and body["status"]["serialNumber"],
        timeout=15,
        what="api issued into its new Secret",
    )
    wait_for(
        lambda: rollout.rotated(template_annotations(apps, namespace, "injected")).get(
            "api-moved-tls"
        )
        == moved,
        timeout=15,
        what="Deployment with an injected certificate rolled to the new Secret",
    )


def test_reissue_rolls_deployments_whose_pods_get_their_service_account_identity(
    api_client, namespace, running_operator
):
    """kube-controller-manager creates the pods, the webhook the identity Certificate."""
    apps = client.AppsV1Api(api_client)
    client.CoreV1Api(api_client).create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="payments"))
    )
    apps.create_namespaced_deployment(
        namespace,
        pod_template_deployment(
            "payments",
            labels={"certsmith.dev/inject": "true"},
            annotations={"certsmith.dev/identity": "service-account"},
            service_account="payments",
        ),
    )
    wait_for(
        lambda: certs.is_ready(api_client, namespace, "payments-identity"),
        timeout=30,
        what="identity Certificate made for the Deployment's pods",
    )
    serial = renew(api_client, namespace, "payments-identity")
    wait_for(
        lambda: template_annotations(apps, namespace, "payments").get(
            "certsmith.dev/rotated-secret"
        )
        == f"payments-identity-tls@{serial}",
        timeout=15,
        what="Deployment with an injected identity rolled",
    )
