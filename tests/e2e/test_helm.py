"""certsmith installed with Helm on kind: a Certificate becomes Ready, the mTLS demo works,
`helm test` passes, and `helm uninstall` leaves no webhook configuration, admission policy,
Deployment, Service or RBAC object behind (CRDs and issued Secrets are kept, as README says).

Every other e2e test uses the kustomize install (hack/deploy) and a session fixture keeps a
root rotation running with it, so this test runs last (conftest.py orders it) and replaces
that install in the same cluster, as a user migrating from kustomize to Helm does: the
kustomize objects are deleted but for the namespace (it holds the CA keys, so cluster-root
and what it issued stay valid) and the CRDs, which Helm adopts (README, Installing). A
cluster of its own would cost a second kind cluster in a session that has one.
"""

from __future__ import annotations

import base64
import subprocess
import uuid

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests import builders
from tests.builders import GROUP, VERSION
from tests.e2e.pods import apply_demo_manifest, pod_ready
from tests.support import REPO_ROOT, kubectl, wait_for

pytestmark = pytest.mark.e2e

NAMESPACE = "certsmith"
RELEASE = "certsmith"
CRDS = (
    "certificates.certsmith.dev",
    "certificateauthorities.certsmith.dev",
    "certificaterequests.certsmith.dev",
)


def helm(kubeconfig: str, *args: str) -> subprocess.CompletedProcess[str]:
    binary = subprocess.run(
        [str(REPO_ROOT / "hack" / "build-helm")], check=True, capture_output=True, text=True
    ).stdout.strip()
    done = subprocess.run(
        [binary, "--kubeconfig", kubeconfig, *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"helm {' '.join(args)}: {done.stdout}{done.stderr}"
    return done


def remove_kustomize_install(kubeconfig: str) -> None:
    """Every object of manifests/ but the namespace; the CRDs marked as the release's."""
    rendered = kubectl(kubeconfig, "kustomize", str(REPO_ROOT / "manifests")).stdout
    kept = [b for b in yaml.safe_load_all(rendered) if b and b["kind"] != "Namespace"]
    kubectl(kubeconfig, "delete", "--wait", "-f", "-", input=yaml.safe_dump_all(kept))
    for crd in CRDS:
        kubectl(kubeconfig, "label", "crd", crd, "app.kubernetes.io/managed-by=Helm", "--overwrite")
        kubectl(
            kubeconfig,
            "annotate",
            "crd",
            crd,
            f"meta.helm.sh/release-name={RELEASE}",
            f"meta.helm.sh/release-namespace={NAMESPACE}",
            "--overwrite",
        )


def certsmith_leftovers(api: client.ApiClient) -> list[str]:
    """The install's admission objects, workload, Services and RBAC objects still there."""
    admission = client.AdmissionregistrationV1Api(api)
    rbac = client.RbacAuthorizationV1Api(api)
    core = client.CoreV1Api(api)
    selector = "app.kubernetes.io/name=certsmith"
    found = [
        f"MutatingWebhookConfiguration {o.metadata.name}"
        for o in admission.list_mutating_webhook_configuration(label_selector=selector).items
    ]
    found += [
        f"ValidatingWebhookConfiguration {o.metadata.name}"
        for o in admission.list_validating_webhook_configuration(label_selector=selector).items
    ]
    # By name as well: an object created by anyone else would carry other labels.
    for kind, read in (
        ("MutatingWebhookConfiguration", admission.read_mutating_webhook_configuration),
        ("ValidatingWebhookConfiguration", admission.read_validating_webhook_configuration),
        ("ValidatingAdmissionPolicy", admission.read_validating_admission_policy),
        ("ValidatingAdmissionPolicyBinding", admission.read_validating_admission_policy_binding),
    ):
        try:
            read("certsmith.dev")
            found.append(f"{kind} certsmith.dev")
        except ApiException as error:
            assert error.status == 404
    found += [
        f"Deployment {o.metadata.name}"
        for o in client.AppsV1Api(api).list_namespaced_deployment(NAMESPACE).items
    ]
    found += [f"Service {o.metadata.name}" for o in core.list_namespaced_service(NAMESPACE).items]
    found += [
        f"ServiceAccount {o.metadata.name}"
        for o in core.list_namespaced_service_account(NAMESPACE).items
        if o.metadata.name != "default"
    ]
    found += [
        f"ClusterRole {o.metadata.name}"
        for o in rbac.list_cluster_role().items
        if o.metadata.name.startswith("certsmith")
    ]
    found += [
        f"ClusterRoleBinding {o.metadata.name}"
        for o in rbac.list_cluster_role_binding().items
        if o.metadata.name.startswith("certsmith")
    ]
    found += [f"Role {o.metadata.name}" for o in rbac.list_namespaced_role(NAMESPACE).items]
    found += [
        f"RoleBinding {o.metadata.name}" for o in rbac.list_namespaced_role_binding(NAMESPACE).items
    ]
    return found


def demo_client_log(kubeconfig: str, namespace: str) -> list[str]:
    return kubectl(kubeconfig, "-n", namespace, "logs", "mtls-client").stdout.splitlines()


def test_helm_install_test_and_uninstall(
    certsmith_installed: str, e2e_client: client.ApiClient
) -> None:
    kubeconfig = certsmith_installed
    remove_kustomize_install(kubeconfig)
    helm(
        kubeconfig,
        "install",
        RELEASE,
        str(REPO_ROOT / "charts" / "certsmith"),
        "--namespace",
        NAMESPACE,
        "--set",
        "image.repository=certsmith/operator,image.tag=dev",
        # hack/deploy's ConfigMap (kept: it is not part of manifests/): only kind's
        # apiserver may call the webhook, as with the kustomize install.
        "--set",
        "webhook.clientCAConfigMap=certsmith-webhook-client-ca",
        "--wait",
        "--timeout",
        "3m",
    )

    namespace = f"e2e-helm-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(e2e_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    objects = client.CustomObjectsApi(e2e_client)
    # Through the chart's webhooks: the validating one judges it (its caBundle written by
    # the operator), then the operator signs it.
    objects.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "certificates",
        builders.certificate("web", dnsNames=[f"web.{namespace}.svc"]),
    )

    def ready() -> bool:
        body = objects.get_namespaced_custom_object(
            GROUP, VERSION, namespace, "certificates", "web"
        )
        conditions = (body.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    wait_for(ready, timeout=90, what="Certificate web Ready under the Helm install", interval=1)
    admission = client.AdmissionregistrationV1Api(e2e_client)
    mutating = admission.read_mutating_webhook_configuration("certsmith.dev")
    bundle = base64.b64decode(mutating.webhooks[0].client_config.ca_bundle).decode()
    assert "BEGIN CERTIFICATE" in bundle
    assert mutating.metadata.labels["app.kubernetes.io/managed-by"] == "Helm"

    # The mTLS demo under the Helm install: its Certificates signed, the client's Secret
    # mounted by the chart's mutating webhook, calls verified both ways.
    apply_demo_manifest(kubeconfig, "mtls.yaml", namespace)
    wait_for(
        lambda: pod_ready(e2e_client, namespace, "mtls-client"),
        timeout=180,
        what="the demo's mtls-client Ready under the Helm install",
        interval=1,
    )
    wait_for(
        lambda: any(
            f"client_san_dn=CN=mtls-client.{namespace}.svc" in line
            for line in demo_client_log(kubeconfig, namespace)
            if " ok " in f" {line} "
        ),
        timeout=90,
        what="the demo's client completing an mTLS call under the Helm install",
        interval=1,
    )

    tested = helm(kubeconfig, "test", RELEASE, "--namespace", NAMESPACE, "--timeout", "3m")
    assert "Succeeded" in tested.stdout

    helm(kubeconfig, "uninstall", RELEASE, "--namespace", NAMESPACE, "--wait")
    wait_for(
        lambda: not certsmith_leftovers(e2e_client),
        timeout=60,
        what="nothing of the release left",
        interval=1,
    )
    extensions = client.ApiextensionsV1Api(e2e_client)
    for crd in CRDS:
        extensions.read_custom_resource_definition(crd)
    core.read_namespaced_secret("web-tls", namespace)
    kubectl(kubeconfig, "delete", "namespace", namespace, "--wait=false", check=False)
