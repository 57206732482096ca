"""certsmith's RBAC is the documented allow-list (docs/rbac.md), checked on a real apiserver.

manifests/rbac.yaml is applied as an installer would; `kubectl auth can-i --list` for the
ServiceAccount must then show exactly the rules written there, beyond what every
ServiceAccount gets anyway (measured with a ServiceAccount that has no bindings), with no
wildcard anywhere. A namespace editor elsewhere must not reach the CA keys in `certsmith`.
"""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from certsmith.pki import ca, inspect
from tests import csrs, pod_requests
from tests.integration import pod_certs
from tests.integration.conftest import OperatorProcess
from tests.integration.discovery import served_version
from tests.support import REPO_ROOT, kubectl, kubectl_path, wait_for

pytestmark = pytest.mark.integration

RBAC = REPO_ROOT / "manifests" / "rbac.yaml"
OPERATOR_NAMESPACE = "certsmith"
SERVICE_ACCOUNT = f"system:serviceaccount:{OPERATOR_NAMESPACE}:certsmith"
# Bound to nothing: what any ServiceAccount in the namespace may do (self reviews,
# discovery URLs); subtracted so that only certsmith's own grants are compared.
BASELINE = f"system:serviceaccount:{OPERATOR_NAMESPACE}:rbac-baseline-nobody"
TEAM_NAMESPACE = "team-a"

Grant = tuple[str, str, str]
"""(resource as kubectl prints it, e.g. certificates.certsmith.dev, resource name, verb)"""


def manifests() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(RBAC.read_text()) if doc]


def rules_of(kind: str) -> list[dict[str, Any]]:
    """The operator's own rules (the roles named certsmith, bound to its ServiceAccount)."""
    return [
        rule
        for doc in manifests()
        if doc["kind"] == kind and doc["metadata"]["name"] == "certsmith"
        for rule in doc["rules"]
    ]


def expand(rules: list[dict[str, Any]]) -> set[Grant]:
    """The rules as the (resource, name, verb) rows `kubectl auth can-i --list` prints."""
    grants = set()
    for rule in rules:
        for group in rule.get("apiGroups") or []:
            for resource in rule.get("resources") or []:
                base, slash, sub = resource.partition("/")
                printed = f"{base}.{group}" if group else base
                printed += f"{slash}{sub}"
                for name in rule.get("resourceNames") or [""]:
                    for verb in rule["verbs"]:
                        grants.add((printed, name, verb))
    return grants


def can_i_list(kubeconfig: str, subject: str, namespace: str) -> set[Grant]:
    output = kubectl(
        kubeconfig, "auth", "can-i", "--list", f"--as={subject}", "-n", namespace
    ).stdout
    header, *rows = output.splitlines()
    starts = [
        header.index(h) for h in ("Resources", "Non-Resource URLs", "Resource Names", "Verbs")
    ]
    grants = set()
    for row in rows:
        resource, url, names, verbs = (
            row[start:end].strip() for start, end in zip(starts, [*starts[1:], None], strict=True)
        )
        url = url.strip("[]")
        for verb in verbs.strip("[]").split():
            for name in names.strip("[]").split() or [""]:
                grants.add((resource or f"url:{url}", name, verb))
    return grants


def can_i(kubeconfig: str, *args: str) -> bool:
    """`kubectl auth can-i ...`: exit code 0 and "yes", or 1 and "no"."""
    result = kubectl(kubeconfig, "auth", "can-i", *args, check=False)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode == 0


@pytest.fixture(scope="module")
def rbac_applied(kubeconfig: str, operator: object) -> str:
    """manifests/rbac.yaml applied (namespace certsmith created first if missing); the
    `operator` fixture installs the CRDs whose permissions are checked."""
    if kubectl(kubeconfig, "get", "namespace", OPERATOR_NAMESPACE, check=False).returncode:
        kubectl(kubeconfig, "create", "namespace", OPERATOR_NAMESPACE)
    kubectl(kubeconfig, "apply", "-f", str(RBAC))
    # The authorizer reads RBAC from an informer: wait until the binding is in effect.
    wait_for(
        lambda: can_i(kubeconfig, "watch", "certificates.certsmith.dev", f"--as={SERVICE_ACCOUNT}"),
        timeout=15,
        what="certsmith's ClusterRoleBinding in effect",
    )
    return kubeconfig


@pytest.fixture(scope="module")
def alice(rbac_applied: str) -> Iterator[str]:
    """User alice, bound to the built-in ClusterRole `edit` in team-a only."""
    kubeconfig = rbac_applied
    created = kubectl(kubeconfig, "get", "namespace", TEAM_NAMESPACE, check=False).returncode != 0
    if created:
        kubectl(kubeconfig, "create", "namespace", TEAM_NAMESPACE)
    binding = f"alice-edit-{uuid.uuid4().hex[:6]}"
    kubectl(
        kubeconfig,
        *("create", "rolebinding", binding, "-n", TEAM_NAMESPACE),
        *("--clusterrole=edit", "--user=alice"),
    )
    wait_for(
        lambda: can_i(kubeconfig, "create", "deployments.apps", "-n", TEAM_NAMESPACE, "--as=alice"),
        timeout=15,
        what="alice's RoleBinding in effect",
    )
    yield kubeconfig
    kubectl(kubeconfig, "delete", "rolebinding", binding, "-n", TEAM_NAMESPACE, check=False)
    if created:
        kubectl(kubeconfig, "delete", "namespace", TEAM_NAMESPACE, "--wait=false", check=False)


# The one pattern: every authority's own signer name (authorities are created at run time).
OWN_SIGNERS = {
    "apiGroups": ["certificates.k8s.io"],
    "resources": ["signers"],
    "resourceNames": ["certsmith.dev/*"],
    "verbs": ["attest", "sign"],
}


def test_roles_name_every_group_resource_and_verb() -> None:
    roles = [doc for doc in manifests() if doc["kind"] in ("ClusterRole", "Role")]
    assert roles, "no roles in manifests/rbac.yaml"
    for doc in roles:
        for rule in doc["rules"]:
            for key in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in (rule.get(key) or []), f"{doc['kind']} {key} wildcard: {rule}"
            assert all("*" not in resource for resource in rule.get("resources") or []), rule
            assert not rule.get("nonResourceURLs"), f"non-resource URLs granted: {rule}"
            patterns = [name for name in rule.get("resourceNames") or [] if "*" in name]
            assert not patterns or rule == OWN_SIGNERS, f"a name pattern beyond its signers: {rule}"
    assert OWN_SIGNERS in rules_of("ClusterRole")


@pytest.mark.parametrize("namespace", ["default", OPERATOR_NAMESPACE])
def test_service_account_can_do_exactly_the_allow_list(rbac_applied: str, namespace: str) -> None:
    granted = can_i_list(rbac_applied, SERVICE_ACCOUNT, namespace)
    baseline = can_i_list(rbac_applied, BASELINE, namespace)
    allowed = expand(rules_of("ClusterRole"))
    if namespace == OPERATOR_NAMESPACE:
        allowed |= expand(rules_of("Role"))
    own = granted - baseline
    print(
        f"\nrbac in {namespace}: {len(granted)} rows for the ServiceAccount, {len(baseline)} "
        f"for any ServiceAccount, {len(own)} its own; allow-list {len(allowed)}"
    )
    assert not own - allowed, f"granted beyond the allow-list: {sorted(own - allowed)}"
    assert not allowed - granted, f"listed but not in effect: {sorted(allowed - granted)}"


def test_namespace_editor_cannot_read_certsmith_secrets(alice: str) -> None:
    assert can_i(alice, "get", "secrets", "-n", TEAM_NAMESPACE, "--as=alice")
    assert not can_i(alice, "get", "secrets", "-n", OPERATOR_NAMESPACE, "--as=alice")
    assert not can_i(alice, "list", "secrets", "-n", OPERATOR_NAMESPACE, "--as=alice")
    assert not can_i(alice, "get", "certificateauthorities.certsmith.dev", "--as=alice")


def test_namespace_editor_can_manage_certificates_in_their_namespace(alice: str) -> None:
    # kube-controller-manager aggregates certsmith-edit into `edit` asynchronously.
    wait_for(
        lambda: can_i(
            alice, "create", "certificates.certsmith.dev", "-n", TEAM_NAMESPACE, "--as=alice"
        ),
        timeout=30,
        what="certsmith-edit aggregated into edit",
    )
    for verb in ("create", "get", "list", "patch", "delete"):
        assert can_i(alice, verb, "certificates.certsmith.dev", "-n", TEAM_NAMESPACE, "--as=alice")
    assert not can_i(alice, "create", "certificates.certsmith.dev", "-n", "default", "--as=alice")


@pytest.mark.parametrize(
    "resource",
    [
        "mutatingwebhookconfigurations",
        "validatingwebhookconfigurations",
        "validatingadmissionpolicies",
        "validatingadmissionpolicybindings",
    ],
)
def test_the_operator_cannot_create_or_delete_admission_objects(
    rbac_applied: str, resource: str
) -> None:
    """The install owns certsmith's admission objects (charts/certsmith, manifests/): the
    operator only patches the webhook configurations' caBundle, and touches no policy."""
    qualified = f"{resource}.admissionregistration.k8s.io"
    for verb in ("create", "update", "delete"):
        assert not can_i(rbac_applied, verb, qualified, f"--as={SERVICE_ACCOUNT}")
        own = f"{qualified}/certsmith.dev"
        assert not can_i(rbac_applied, verb, own, f"--as={SERVICE_ACCOUNT}")
    patches = can_i(rbac_applied, "patch", f"{qualified}/certsmith.dev", f"--as={SERVICE_ACCOUNT}")
    assert patches == resource.endswith("webhookconfigurations")


def as_operator(kubeconfig: str, *args: str, body: dict[str, Any] | None = None):
    """kubectl as certsmith's ServiceAccount; the answer, not checked."""
    return subprocess.run(
        [kubectl_path(), "--kubeconfig", kubeconfig, f"--as={SERVICE_ACCOUNT}", *args],
        input=None if body is None else json.dumps(body),
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_operator_attests_cluster_trust_bundles_of_its_own_signers_only(
    rbac_applied: str, api_client: client.ApiClient
) -> None:
    """`attest` on certsmith.dev/* is what the ClusterTrustBundleAttest admission plugin asks
    for: certsmith may publish and update bundles linked to its signers, no other signer's,
    and delete none (the garbage collector removes them with their authority)."""
    version = served_version(api_client, "clustertrustbundles")
    if version is None:
        pytest.skip("this apiserver does not serve clustertrustbundles.certificates.k8s.io")
    root = ca.build_root(
        common_name="rbac test", now=datetime.now(UTC), lifetime=timedelta(days=1)
    ).certificate
    pem = inspect.certificates_to_pem([root]).decode()
    suffix = uuid.uuid4().hex[:6]

    def bundle(signer: str) -> dict[str, Any]:
        return {
            "apiVersion": f"certificates.k8s.io/{version}",
            "kind": "ClusterTrustBundle",
            "metadata": {"name": f"{signer.replace('/', ':')}:roots"},
            "spec": {"signerName": signer, "trustBundle": pem},
        }

    own = bundle(f"certsmith.dev/rbac-{suffix}")
    name = own["metadata"]["name"]
    try:
        created = as_operator(rbac_applied, "create", "-f", "-", body=own)
        assert created.returncode == 0, created.stderr
        own["metadata"]["labels"] = {"certsmith.dev/authority": f"rbac-{suffix}"}
        replaced = as_operator(rbac_applied, "replace", "-f", "-", body=own)
        assert replaced.returncode == 0, replaced.stderr
        deleted = as_operator(rbac_applied, "delete", "clustertrustbundle", name)
        assert deleted.returncode == 1 and "Forbidden" in deleted.stderr, deleted.stderr
        for signer in (f"example.com/rbac-{suffix}", f"certsmith.devx/rbac-{suffix}"):
            refused = as_operator(rbac_applied, "create", "-f", "-", body=bundle(signer))
            assert refused.returncode == 1, refused.stdout
            assert f'user not permitted to attest for signerName "{signer}"' in refused.stderr
    finally:
        kubectl(rbac_applied, "delete", "clustertrustbundle", name, "--ignore-not-found")


def test_the_operator_answers_pod_certificate_requests_of_its_own_signers_only(
    rbac_applied: str, api_client: client.ApiClient, running_operator: OperatorProcess
) -> None:
    """kube-apiserver takes a request's answer only from a holder of `sign` on its
    signerName: certsmith's ServiceAccount answers certsmith.dev/<authority> requests and
    no other signer's, whatever its other grants."""
    version = served_version(api_client, pod_certs.PLURAL)
    if version is None:
        pytest.skip("this apiserver does not serve podcertificaterequests.certificates.k8s.io")
    suffix = uuid.uuid4().hex[:6]
    pod = {
        "metadata": {"name": f"rbac-{suffix}", "uid": str(uuid.uuid4())},
        "spec": {"serviceAccountName": "default", "nodeName": "node-1"},
    }
    answer = {
        "status": {
            "conditions": [
                {
                    "type": "Denied",
                    "status": "True",
                    "reason": "RBACTest",
                    "message": "answered by certsmith's ServiceAccount",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ]
        }
    }
    operator_api = config.new_client_from_config(config_file=rbac_applied)
    operator_api.set_default_header("Impersonate-User", SERVICE_ACCOUNT)
    operator_objects = client.CustomObjectsApi(operator_api)

    def answer_as_operator(name: str) -> dict[str, Any]:
        # The operator's own call: a merge patch of the status, nothing read first.
        answered: dict[str, Any] = operator_objects.patch_namespaced_custom_object_status(
            pod_certs.GROUP, version, "default", pod_certs.PLURAL, name, answer
        )
        return answered

    created = []
    # The operator would answer certsmith's own request before the ServiceAccount does.
    running_operator.kill()
    try:
        for signer, allowed in (
            (f"certsmith.dev/rbac-{suffix}", True),
            (f"example.com/rbac-{suffix}", False),
            (f"certsmith.devx/rbac-{suffix}", False),
            ("kubernetes.io/kube-apiserver-client-pod", False),
        ):
            body = pod_requests.request_body(
                name=f"rbac-{suffix}-{len(created)}",
                namespace="default",
                signer=signer,
                pod=pod,
                key=pod_requests.new_key("ECDSAP256"),
                shape=pod_certs.shape_of(version),
            )
            created.append(pod_certs.create_request(api_client, version, body))
            name = created[-1]["metadata"]["name"]
            if allowed:
                assert pod_certs.answer(answer_as_operator(name))["reason"] == "RBACTest"
            else:
                with pytest.raises(client.ApiException) as refused:
                    answer_as_operator(name)
                assert 'is not permitted to \\"sign\\" for signer' in refused.value.body
    finally:
        for made in created:
            kubectl(
                rbac_applied,
                *("delete", "podcertificaterequests", made["metadata"]["name"], "-n", "default"),
                check=False,
            )
        running_operator.start()
        running_operator.wait_serving(api_client)


def test_the_operator_signs_certificate_signing_requests_of_its_own_signers_only(
    rbac_applied: str, api_client: client.ApiClient, running_operator: OperatorProcess
) -> None:
    """kube-apiserver takes a CSR's certificate only from a holder of `sign` on its
    signerName: certsmith's ServiceAccount (`update` on the status) sets it for
    certsmith.dev/<authority> CSRs and no other signer's; it cannot approve any."""
    suffix = uuid.uuid4().hex[:6]
    key_pair = ca.build_root(common_name="rbac", now=datetime.now(UTC), lifetime=timedelta(days=1))
    certificate = base64.b64encode(inspect.certificates_to_pem([key_pair.certificate])).decode()
    operator_api = config.new_client_from_config(config_file=rbac_applied)
    operator_api.set_default_header("Impersonate-User", SERVICE_ACCOUNT)
    as_operator_csrs = client.CertificatesV1Api(operator_api)
    admin = client.CertificatesV1Api(api_client)
    approved = {"type": "Approved", "status": "True", "reason": "RBACTest", "message": "test"}
    created = []
    # The operator would answer certsmith's own CSR before the ServiceAccount does.
    running_operator.kill()
    try:
        for signer, allowed in (
            (f"certsmith.dev/rbac-{suffix}", True),
            (f"example.com/rbac-{suffix}", False),
            ("kubernetes.io/kube-apiserver-client", False),
        ):
            name = f"rbac-{suffix}-{len(created)}"
            body = {
                "metadata": {"name": name},
                "spec": {
                    "signerName": signer,
                    "request": csrs.request_value(csrs.csr_pem(csrs.ecdsa_key(), common_name="x")),
                    "usages": ["client auth"],
                },
            }
            admin.create_certificate_signing_request(body)
            created.append(name)
            read = api_client.sanitize_for_serialization(
                admin.read_certificate_signing_request(name)
            )
            with pytest.raises(client.ApiException) as not_approver:
                as_operator_csrs.replace_certificate_signing_request_approval(
                    name, {**read, "status": {"conditions": [approved]}}
                )
            assert not_approver.value.status == 403
            admin.replace_certificate_signing_request_approval(
                name, {**read, "status": {"conditions": [approved]}}
            )
            read = api_client.sanitize_for_serialization(
                admin.read_certificate_signing_request(name)
            )
            read["status"]["certificate"] = certificate
            if allowed:
                signed = as_operator_csrs.replace_certificate_signing_request_status(name, read)
                assert signed.status.certificate
            else:
                with pytest.raises(client.ApiException) as refused:
                    as_operator_csrs.replace_certificate_signing_request_status(name, read)
                assert refused.value.status == 403, refused.value.body
                message = json.loads(refused.value.body)["message"]
                assert f'not permitted to sign requests with signerName "{signer}"' in message
    finally:
        for made in created:
            kubectl(rbac_applied, "delete", "csr", made, check=False)
        running_operator.start()
        running_operator.wait_serving(api_client)
