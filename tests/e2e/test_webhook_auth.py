"""In-cluster callers cannot reach the admission webhook; the apiserver still can.

hack/kind-cluster gives kind's apiserver a client certificate for webhooks and hack/deploy
gives certsmith its CA (manifests/webhook-client-auth). A pod calls the webhook Service
directly with the same AdmissionReview three times: without a certificate, with its own
certsmith certificate and with a self-signed one naming the apiserver, none of which gets
an answer; then with the apiserver's certificate, which does (so the path itself works).
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests import builders
from tests.builders import GROUP, VERSION
from tests.e2e.pods import opted_in_curl_pod, pod_ready
from tests.support import REPO_ROOT, kubectl, wait_for

pytestmark = pytest.mark.e2e

WEBHOOK = "https://certsmith-webhook.certsmith.svc:443/validate-certificate"
TLS = "/var/run/certsmith/tls"
APISERVER_TLS = "/var/run/apiserver-client"


def kind_env() -> dict[str, str]:
    output = subprocess.run(
        [str(REPO_ROOT / "hack" / "kind-cluster"), "env"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(line.removeprefix("export ").split("=", 1) for line in output.splitlines())


@pytest.fixture
def apiserver_identity(certsmith_installed: str) -> Path:
    """The directory with the kind apiserver's webhook client certificate and key."""
    env = kind_env()
    if Path(certsmith_installed).resolve() != Path(env["KUBECONFIG"]).resolve():
        pytest.skip("the apiserver's webhook client key is known only for the kind cluster")
    return Path(env["CERTSMITH_WEBHOOK_CLIENT_CA"]).parent


def review(namespace: str) -> str:
    certificate = builders.certificate(
        "direct", namespace=namespace, dnsNames=[f"direct.{namespace}.svc"]
    )
    return json.dumps(builders.admission_review(certificate, username="intruder"))


def test_only_the_apiserver_reaches_the_webhook(
    certsmith_installed, e2e_client, e2e_namespace, apiserver_identity
):
    namespace, kubeconfig = e2e_namespace, certsmith_installed
    core = client.CoreV1Api(e2e_client)
    deployment = client.AppsV1Api(e2e_client).read_namespaced_deployment("certsmith", "certsmith")
    env = {e.name: e.value for e in deployment.spec.template.spec.containers[0].env}
    assert env.get("CERTSMITH_WEBHOOK_CLIENT_CA"), "hack/deploy did not apply webhook-client-auth"

    # What the apiserver holds: its client certificate, and the caBundle it verifies the
    # webhook with (after a root rotation the pod's ca.crt may no longer include that root).
    ca_bundle = (
        client.AdmissionregistrationV1Api(e2e_client)
        .read_validating_webhook_configuration("certsmith.dev")
        .webhooks[0]
        .client_config.ca_bundle
    )
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="apiserver-client"),
            string_data={
                "ca-bundle.crt": base64.b64decode(ca_bundle).decode(),
                **{
                    name: (apiserver_identity / name).read_text()
                    for name in ("client.crt", "client.key")
                },
            },
        ),
    )
    # Opted in: the apiserver calls the mutating webhook, which mounts a certsmith certificate.
    core.create_namespaced_pod(
        namespace,
        opted_in_curl_pod(
            "caller",
            annotations={"certsmith.dev/identity": "service-account"},
            secret_mounts={"apiserver-client": APISERVER_TLS},
        ),
    )
    wait_for(
        lambda: pod_ready(e2e_client, namespace, "caller"),
        timeout=120,
        what="caller pod Ready",
        interval=1,
    )

    def call(*certificate: str) -> tuple[str, str]:
        """(HTTP status, curl's error) of the AdmissionReview POSTed to the Service; the
        webhook's serving certificate is verified as the apiserver does."""
        curl = ["curl", "-sS", "--max-time", "10", "--cacert", f"{APISERVER_TLS}/ca-bundle.crt"]
        curl += ["-o", "/dev/null", "-w", "%{http_code}", "-H", "Content-Type: application/json"]
        curl += ["--data", review(namespace), *certificate, WEBHOOK]
        result = kubectl(kubeconfig, "-n", namespace, "exec", "caller", "--", *curl, check=False)
        return result.stdout.strip(), result.stderr

    def assert_refused(what: str, *certificate: str) -> None:
        status, error = call(*certificate)
        # Under TLS 1.3 the refused handshake shows as a reset or empty reply to the request.
        assert status == "000", f"the webhook answered {what}: {status}"
        # The webhook's certificate was accepted: what failed is the caller's.
        assert "SSL certificate problem" not in error, error

    assert_refused("a caller without a certificate")
    assert_refused(
        "a cluster-root certificate", "--cert", f"{TLS}/tls.crt", "--key", f"{TLS}/tls.key"
    )
    kubectl(
        kubeconfig,
        *("-n", namespace, "exec", "caller", "--", "openssl", "req", "-x509", "-nodes"),
        *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-days", "1"),
        *("-subj", "/CN=kube-apiserver-webhook-client", "-addext", "extendedKeyUsage=clientAuth"),
        *("-keyout", "/tmp/stranger.key", "-out", "/tmp/stranger.crt"),
    )
    assert_refused(
        "a self-signed impersonation", "--cert", "/tmp/stranger.crt", "--key", "/tmp/stranger.key"
    )

    status, error = call(
        "--cert", f"{APISERVER_TLS}/client.crt", "--key", f"{APISERVER_TLS}/client.key"
    )
    assert status == "200", f"the apiserver's certificate got no answer: {status} {error}"

    # Through the apiserver the validating webhook still judges Certificates.
    with pytest.raises(ApiException) as refused:
        client.CustomObjectsApi(e2e_client).create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "certificates",
            builders.certificate("bad", dnsNames=[f"ok.{namespace}.svc", "bad..name"]),
        )
    assert "'bad..name' is not a valid DNS name" in refused.value.body
