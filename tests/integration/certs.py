"""Certificates and their Secrets in integration tests: create, read, wait, decode.

The bodies come from tests.builders, shared by every tier; `certificate` is its builder.
"""

from __future__ import annotations

import base64
import json
import subprocess
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from kubernetes import client

from tests import builders
from tests.builders import GROUP, VERSION
from tests.builders import certificate as certificate
from tests.support import kubectl_path, wait_for

PLURAL = "certificates"


def create(api_client: client.ApiClient, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    return client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body
    )


def get(api_client: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    return client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )


def patch_spec(
    api_client: client.ApiClient, namespace: str, name: str, spec: dict[str, Any]
) -> None:
    client.CustomObjectsApi(api_client).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, {"spec": spec}
    )


def condition(body: dict[str, Any], kind: str = "Ready") -> dict[str, Any] | None:
    for entry in (body.get("status") or {}).get("conditions", []):
        if entry["type"] == kind:
            return entry
    return None


def is_ready(api_client: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    """The Certificate if Ready=True for its current generation, else None."""
    body = get(api_client, namespace, name)
    ready = condition(body)
    if (
        ready
        and ready["status"] == "True"
        and ready.get("observedGeneration") == body["metadata"]["generation"]
    ):
        return body
    return None


def create_authority(api_client: client.ApiClient, name: str, **spec: Any) -> None:
    """A CertificateAuthority `name` with `spec` (cluster-scoped)."""
    client.CustomObjectsApi(api_client).create_cluster_custom_object(
        GROUP, VERSION, "certificateauthorities", builders.authority(name, **spec)
    )


def wait_ready(
    api_client: client.ApiClient, namespace: str, name: str, timeout: float = 15
) -> dict[str, Any]:
    """The Certificate once Ready=True; fails naming it after `timeout` seconds."""
    return wait_for(
        lambda: is_ready(api_client, namespace, name),
        timeout=timeout,
        what=f"Certificate {namespace}/{name} Ready",
    )


def secret(api_client: client.ApiClient, namespace: str, name: str) -> client.V1Secret:
    return client.CoreV1Api(api_client).read_namespaced_secret(name, namespace)


def secret_bytes(sec: client.V1Secret, key: str) -> bytes:
    return base64.b64decode(sec.data[key])


def leaf_of(sec: client.V1Secret) -> x509.Certificate:
    return x509.load_pem_x509_certificates(secret_bytes(sec, "tls.crt"))[0]


def public_key_der(sec: client.V1Secret) -> bytes:
    key = serialization.load_pem_private_key(secret_bytes(sec, "tls.key"), password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def events_for(api_client: client.ApiClient, namespace: str, name: str) -> list[client.CoreV1Event]:
    return [
        event
        for event in client.CoreV1Api(api_client).list_namespaced_event(namespace).items
        if event.involved_object.name == name and event.involved_object.kind == "Certificate"
    ]


def kubectl_apply(
    kubeconfig: str, namespace: str, body: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    """`kubectl apply` of one object, as a user does; the answer (not checked) is returned."""
    return subprocess.run(
        [kubectl_path(), "--kubeconfig", kubeconfig, "apply", "-n", namespace, "-f", "-"],
        input=json.dumps(body),
        capture_output=True,
        text=True,
        check=False,
    )
