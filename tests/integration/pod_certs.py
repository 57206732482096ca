"""PodCertificateRequests on the apiserver tier: what kubelet would make, without a kubelet.

The tier runs no kubelet, so a test makes a Node object, pods bound to it (spec.nodeName),
their ServiceAccount and Services, then the requests themselves (tests.pod_requests), in
the version the apiserver serves (found by discovery: v1 on 1.37, v1beta1 on 1.35/1.36).
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from kubernetes import client, watch

from tests import pod_requests
from tests.support import wait_for

GROUP, PLURAL = "certificates.k8s.io", "podcertificaterequests"
TERMINAL = ("Issued", "Denied", "Failed")


def shape_of(version: str) -> str:
    """The key shape a version takes from every supported Kubernetes: v1 the stub PKCS#10
    request; v1beta1 the public key and its proof (1.35 has no stubPKCS10Request)."""
    return pod_requests.STUB if version == "v1" else pod_requests.PKIX


def create_node(api_client: client.ApiClient, name: str) -> None:
    client.CoreV1Api(api_client).create_node(client.V1Node(metadata=client.V1ObjectMeta(name=name)))


def create_service_account(api_client: client.ApiClient, namespace: str, name: str) -> None:
    client.CoreV1Api(api_client).create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
    )


def create_service(
    api_client: client.ApiClient, namespace: str, name: str, selector: dict[str, str]
) -> None:
    client.CoreV1Api(api_client).create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1ServiceSpec(selector=selector, ports=[client.V1ServicePort(port=8443)]),
        ),
    )


def create_pod(
    api_client: client.ApiClient,
    namespace: str,
    name: str,
    *,
    node: str,
    service_account: str,
    labels: dict[str, str],
) -> dict[str, Any]:
    """A pod bound to `node` (no scheduler needed, no kubelet runs it), as stored."""
    pod = client.CoreV1Api(api_client).create_namespaced_pod(
        namespace,
        client.V1Pod(
            metadata=client.V1ObjectMeta(name=name, labels=labels),
            spec=client.V1PodSpec(
                node_name=node,
                service_account_name=service_account,
                automount_service_account_token=False,
                containers=[client.V1Container(name="app", image="example.invalid/app")],
            ),
        ),
    )
    stored: dict[str, Any] = api_client.sanitize_for_serialization(pod)
    return stored


def create_request(
    api_client: client.ApiClient, version: str, body: dict[str, Any]
) -> dict[str, Any]:
    body = {**body, "apiVersion": f"{GROUP}/{version}"}
    created: dict[str, Any] = client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        GROUP, version, body["metadata"]["namespace"], PLURAL, body
    )
    return created


def get_request(
    api_client: client.ApiClient, version: str, namespace: str, name: str
) -> dict[str, Any]:
    found: dict[str, Any] = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        GROUP, version, namespace, PLURAL, name
    )
    return found


def answer(body: dict[str, Any]) -> dict[str, Any] | None:
    """The request's Issued, Denied or Failed condition, None while pending."""
    for condition in (body.get("status") or {}).get("conditions") or []:
        if condition["type"] in TERMINAL:
            return dict(condition)
    return None


def wait_answered(
    api_client: client.ApiClient, version: str, namespace: str, name: str, timeout: float = 15
) -> dict[str, Any]:
    """The request once answered."""
    return wait_for(
        lambda: (
            found if answer(found := get_request(api_client, version, namespace, name)) else None
        ),
        timeout=timeout,
        what=f"PodCertificateRequest {namespace}/{name} answered",
    )


class RequestWatch:
    """Every event of the requests of one namespace, from before they exist: when each was
    first seen answered, and every status each one showed (its writes)."""

    def __init__(self, api_client: client.ApiClient, version: str, namespace: str) -> None:
        self.answered_at: dict[str, float] = {}
        self.statuses: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._args = (api_client, version, namespace)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        api_client, version, namespace = self._args
        objects = client.CustomObjectsApi(api_client)
        resource_version = objects.list_namespaced_custom_object(GROUP, version, namespace, PLURAL)[
            "metadata"
        ]["resourceVersion"]
        self._ready.set()
        while not self._stop.is_set():
            for event in watch.Watch().stream(
                objects.list_namespaced_custom_object,
                GROUP,
                version,
                namespace,
                PLURAL,
                resource_version=resource_version,
                timeout_seconds=5,
            ):
                body = event["object"]
                resource_version = body["metadata"]["resourceVersion"]
                self._record(body)

    def _record(self, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        status = body.get("status") or {}
        with self._lock:
            seen = self.statuses.setdefault(name, [])
            if not seen or seen[-1] != status:
                seen.append(status)
            if answer(body) is not None:
                self.answered_at.setdefault(name, time.monotonic())

    def wait(self, names: list[str], timeout: float) -> None:
        wait_for(
            lambda: all(name in self.answered_at for name in names),
            timeout=timeout,
            what=f"{len(names)} PodCertificateRequests answered",
            interval=0.01,
        )

    def status_changes(self, name: str) -> int:
        """How many times the request's status changed (an answer is one change)."""
        with self._lock:
            return sum(1 for status in self.statuses.get(name, []) if status)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def chain_of(body: dict[str, Any]) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(body["status"]["certificateChain"].encode())


def openssl_verify(chain: list[x509.Certificate], root_pem: bytes, purpose: str) -> str:
    """`openssl verify` of the chain's leaf against `root_pem` alone, with the chain's other
    certificates untrusted, for `purpose` (sslserver, sslclient); its output."""
    with tempfile.TemporaryDirectory() as directory:
        files = {
            "root.pem": root_pem,
            "leaf.pem": chain[0].public_bytes(serialization.Encoding.PEM),
            "untrusted.pem": b"".join(
                c.public_bytes(serialization.Encoding.PEM) for c in chain[1:]
            ),
        }
        for name, data in files.items():
            (Path(directory) / name).write_bytes(data)
        result = subprocess.run(
            [
                "openssl",
                "verify",
                "-purpose",
                purpose,
                "-CAfile",
                f"{directory}/root.pem",
                "-untrusted",
                f"{directory}/untrusted.pem",
                f"{directory}/leaf.pem",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    return result.stdout + result.stderr
