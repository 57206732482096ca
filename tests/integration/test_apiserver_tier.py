"""The apiserver tier behaves like a real cluster: CEL validation, webhooks, namespaces."""

from __future__ import annotations

import datetime
import http.server
import json
import queue
import ssl
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.support import wait_for

pytestmark = pytest.mark.integration


def _create_widget_crd(api_client: client.ApiClient, group: str) -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}},
                "x-kubernetes-validations": [
                    {"rule": "self.min <= self.max", "message": "min must not exceed max"}
                ],
            }
        },
    }
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }
    extensions = client.ApiextensionsV1Api(api_client)
    extensions.create_custom_resource_definition(crd)

    def established() -> bool:
        status = extensions.read_custom_resource_definition(f"widgets.{group}").status
        return any(c.type == "Established" and c.status == "True" for c in status.conditions or [])

    wait_for(established, timeout=30, what="the CRD established")


def test_cel_rule_refuses_object_with_its_message(api_client, namespace):
    group = f"t{uuid.uuid4().hex[:8]}.certsmith.dev"
    _create_widget_crd(api_client, group)
    objects = client.CustomObjectsApi(api_client)
    try:
        with pytest.raises(ApiException) as refused:
            objects.create_namespaced_custom_object(
                group,
                "v1",
                namespace,
                "widgets",
                {
                    "apiVersion": f"{group}/v1",
                    "kind": "Widget",
                    "metadata": {"name": "bad"},
                    "spec": {"min": 5, "max": 1},
                },
            )
        assert refused.value.status == 422
        assert "min must not exceed max" in refused.value.body

        accepted = objects.create_namespaced_custom_object(
            group,
            "v1",
            namespace,
            "widgets",
            {
                "apiVersion": f"{group}/v1",
                "kind": "Widget",
                "metadata": {"name": "good"},
                "spec": {"min": 1, "max": 5},
            },
        )
        assert accepted["spec"] == {"min": 1, "max": 5}
    finally:
        client.ApiextensionsV1Api(api_client).delete_custom_resource_definition(f"widgets.{group}")


def _self_signed_server_cert(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-webhook")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def denying_webhook(tmp_path) -> Iterator[tuple[int, bytes, queue.Queue]]:
    """An HTTPS admission webhook on the host that denies ConfigMaps labelled deny=yes."""
    reviews: queue.Queue = queue.Queue()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            reviews.put(review)
            labels = review["request"]["object"]["metadata"].get("labels") or {}
            allowed = labels.get("deny") != "yes"
            body = json.dumps(
                {
                    "apiVersion": "admission.k8s.io/v1",
                    "kind": "AdmissionReview",
                    "response": {
                        "uid": review["request"]["uid"],
                        "allowed": allowed,
                        "status": {"message": "labelled deny=yes by the test"},
                    },
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    cert_path, key_path = _self_signed_server_cert(tmp_path)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], cert_path.read_bytes(), reviews
    server.shutdown()


def test_apiserver_calls_webhook_on_host(api_client, namespace, denying_webhook):
    import base64

    port, ca_pem, reviews = denying_webhook
    name = f"deny-{namespace}"
    webhook_config = client.V1ValidatingWebhookConfiguration(
        metadata=client.V1ObjectMeta(name=name),
        webhooks=[
            client.V1ValidatingWebhook(
                name="deny.test.certsmith.dev",
                client_config=client.AdmissionregistrationV1WebhookClientConfig(
                    url=f"https://localhost:{port}/validate",
                    ca_bundle=base64.b64encode(ca_pem).decode(),
                ),
                rules=[
                    client.V1RuleWithOperations(
                        api_groups=[""],
                        api_versions=["v1"],
                        operations=["CREATE"],
                        resources=["configmaps"],
                    )
                ],
                namespace_selector=client.V1LabelSelector(
                    match_labels={"kubernetes.io/metadata.name": namespace}
                ),
                side_effects="None",
                admission_review_versions=["v1"],
                failure_policy="Fail",
                timeout_seconds=5,
            )
        ],
    )
    admission = client.AdmissionregistrationV1Api(api_client)
    admission.create_validating_webhook_configuration(webhook_config)
    core = client.CoreV1Api(api_client)
    try:
        denied = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="denied", labels={"deny": "yes"})
        )

        def refusal() -> ApiException | None:
            try:
                core.create_namespaced_config_map(namespace, denied)
            except ApiException as refused:
                return refused
            core.delete_namespaced_config_map("denied", namespace)
            return None

        # The apiserver picks up new webhook configurations asynchronously.
        refused = wait_for(
            refusal, timeout=30, what="the webhook refusing the object", interval=0.2, retry_on=()
        )
        assert "labelled deny=yes by the test" in refused.body

        review = reviews.get(timeout=5)
        assert review["kind"] == "AdmissionReview"
        assert review["request"]["namespace"] == namespace
        assert review["request"]["resource"]["resource"] == "configmaps"

        core.create_namespaced_config_map(
            namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="allowed"))
        )
    finally:
        admission.delete_validating_webhook_configuration(name)


def test_deleted_namespace_terminates_and_disappears(api_client):
    core = client.CoreV1Api(api_client)
    name = f"t-gone-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    core.create_namespaced_config_map(
        name, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="content"))
    )
    core.delete_namespace(name)

    def status_once_unreadable() -> int | None:
        try:
            core.read_namespace(name)
        except ApiException as gone:
            return gone.status
        return None

    status = wait_for(
        status_once_unreadable, timeout=60, what="the namespace gone", interval=0.5, retry_on=()
    )
    assert status == 404


def test_service_account_gets_tokens(api_client, namespace):
    core = client.CoreV1Api(api_client)
    wait_for(
        lambda: core.read_namespaced_service_account("default", namespace),
        timeout=30,
        what="the default service account",
        interval=0.2,
        retry_on=(ApiException,),
    )
    token = core.create_namespaced_service_account_token(
        "default",
        namespace,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(
                audiences=["https://kubernetes.default.svc.cluster.local"]
            )
        ),
    )
    review = client.AuthenticationV1Api(api_client).create_token_review(
        client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token.status.token))
    )
    assert review.status.authenticated
    assert review.status.user.username == f"system:serviceaccount:{namespace}:default"


def test_pod_certificate_apis_are_served(api_client, kubernetes_version):
    """hack/cluster turns pod certificates on where they are gated (beta in 1.35 and 1.36:
    feature gates and --runtime-config); from 1.37 they are GA in certificates.k8s.io/v1."""
    version = "v1" if kubernetes_version.minor >= 37 else "v1beta1"
    served = client.CustomObjectsApi(api_client).get_api_resources("certificates.k8s.io", version)
    names = {resource.name for resource in served.resources}
    assert {"podcertificaterequests", "clustertrustbundles"} <= names, sorted(names)


def test_pod_keeps_its_pod_certificate_sources(api_client, namespace):
    """With the PodCertificateRequest gate off the apiserver silently drops `podCertificate`
    sources from the pods it admits; the apiserver profile keeps them as written."""
    core = client.CoreV1Api(api_client)
    wait_for(
        lambda: core.read_namespaced_service_account("default", namespace),
        timeout=30,
        what="the default service account",
        interval=0.2,
        retry_on=(ApiException,),
    )
    signer = "certsmith.dev/cluster-root"
    sources = [
        {
            "podCertificate": {
                "signerName": signer,
                "keyType": "ECDSAP256",
                "credentialBundlePath": "credentials.pem",
            }
        },
        {"clusterTrustBundle": {"signerName": signer, "labelSelector": {}, "path": "roots.pem"}},
    ]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "pod-certificate"},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "registry.k8s.io/pause:3.10.2",
                    "volumeMounts": [{"name": "identity", "mountPath": "/var/run/identity"}],
                }
            ],
            "volumes": [{"name": "identity", "projected": {"sources": sources}}],
        },
    }
    core.create_namespaced_pod(namespace, pod)
    stored = json.loads(
        core.read_namespaced_pod("pod-certificate", namespace, _preload_content=False).data
    )
    kept = stored["spec"]["volumes"][0]["projected"]["sources"]
    assert kept[0]["podCertificate"] == sources[0]["podCertificate"]
    assert kept[1]["clusterTrustBundle"]["signerName"] == signer
    assert kept[1]["clusterTrustBundle"]["path"] == "roots.pem"
