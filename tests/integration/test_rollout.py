"""Workloads that opt in are rolled when the Secret their pods mount is re-issued."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from kubernetes import client

from tests.integration import certs
from tests.support import wait_for

pytestmark = pytest.mark.integration


def deployment(name: str, secret_name: str, *, opted_in: bool) -> client.V1Deployment:
    annotations = {"certsmith.dev/restart-on-rotation": "true"} if opted_in else None
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, annotations=annotations),
        spec=client.V1DeploymentSpec(
            selector=client.V1LabelSelector(match_labels={"app": name}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": name}),
                spec=client.V1PodSpec(
                    containers=[client.V1Container(name="app", image="nginx")],
                    volumes=[
                        client.V1Volume(
                            name="tls", secret=client.V1SecretVolumeSource(secret_name=secret_name)
                        )
                    ],
                ),
            ),
        ),
    )


def template_annotations(apps: client.AppsV1Api, namespace: str, name: str) -> dict:
    read = apps.read_namespaced_deployment(name, namespace)
    return read.spec.template.metadata.annotations or {}


def test_reissue_rolls_opted_in_deployments_only(api_client, namespace, running_operator):
    apps = client.AppsV1Api(api_client)
    certs.create(api_client, namespace, certs.certificate("api", dnsNames=["api.example.com"]))
    first = wait_for(
        lambda: certs.is_ready(api_client, namespace, "api"), timeout=15, what="api Ready"
    )["status"]["serialNumber"]
    apps.create_namespaced_deployment(namespace, deployment("rolled", "api-tls", opted_in=True))
    apps.create_namespaced_deployment(namespace, deployment("left", "api-tls", opted_in=False))

    client.CustomObjectsApi(api_client).patch_namespaced_custom_object(
        "certsmith.dev",
        "v1alpha1",
        namespace,
        "certificates",
        "api",
        {
            "metadata": {
                "annotations": {"certsmith.dev/renew-requested-at": datetime.now(UTC).isoformat()}
            }
        },
    )
    second = wait_for(
        lambda: (s := certs.get(api_client, namespace, "api")["status"]["serialNumber"]) != first
        and s,
        timeout=15,
        what="api re-issued",
    )
    wait_for(
        lambda: template_annotations(apps, namespace, "rolled").get("certsmith.dev/rotated-secret")
        == f"api-tls@{second}",
        timeout=15,
        what="opted-in Deployment rolled",
    )
    assert "certsmith.dev/rotated-secret" not in template_annotations(apps, namespace, "left")
