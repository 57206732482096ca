"""Pods that opt in get a certificate mounted by the mutating webhook; others are untouched."""

from __future__ import annotations

import contextlib
import json
import subprocess

import pytest
from kubernetes import client

from tests.integration import certs
from tests.integration.conftest import OPERATOR_NAMESPACE
from tests.support import kubectl_path, wait_for

pytestmark = pytest.mark.integration
MOUNT = "/var/run/certsmith/tls"


def pod(name: str, *, labels=None, annotations=None, service_account=None) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels, annotations=annotations),
        spec=client.V1PodSpec(
            service_account_name=service_account,
            automount_service_account_token=False,
            init_containers=[client.V1Container(name="init", image="busybox")],
            containers=[
                client.V1Container(name="app", image="nginx"),
                client.V1Container(name="sidecar", image="busybox"),
            ],
        ),
    )


def mounts(created: client.V1Pod) -> list[tuple[str, str, bool]]:
    return [
        (c.name, m.mount_path, m.read_only)
        for c in (created.spec.init_containers or []) + created.spec.containers
        for m in c.volume_mounts or []
        if m.name == "certsmith-tls"
    ]


def secret_volume(created: client.V1Pod) -> str | None:
    for volume in created.spec.volumes or []:
        if volume.name == "certsmith-tls":
            return volume.secret.secret_name
    return None


def file_modes(created: client.V1Pod) -> dict[str, int]:
    """The mode kubelet gives each file of certsmith's volume (before fsGroup's group read)."""
    (volume,) = [v for v in created.spec.volumes if v.name == "certsmith-tls"]
    secret = volume.secret
    return {
        item.path: item.mode if item.mode is not None else secret.default_mode
        for item in secret.items
    }


def test_pod_naming_a_certificate_gets_its_secret_mounted(api_client, namespace, running_operator):
    certs.create(api_client, namespace, certs.certificate("web", dnsNames=["web.example.com"]))
    created = client.CoreV1Api(api_client).create_namespaced_pod(
        namespace,
        pod(
            "web",
            labels={"certsmith.dev/inject": "true"},
            annotations={"certsmith.dev/certificate": "web"},
        ),
    )
    assert secret_volume(created) == "web-tls"
    assert sorted(mounts(created)) == [
        ("app", MOUNT, True),
        ("init", MOUNT, True),
        ("sidecar", MOUNT, True),
    ]


def test_pod_asking_for_its_identity_gets_a_spiffe_certificate(
    api_client, namespace, running_operator
):
    core = client.CoreV1Api(api_client)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="payments"))
    )
    created = core.create_namespaced_pod(
        namespace,
        pod(
            "payments",
            labels={"certsmith.dev/inject": "true"},
            annotations={
                "certsmith.dev/identity": "service-account",
                "certsmith.dev/dns-names": "payments.example.com",
                "certsmith.dev/mount-path": "/etc/tls",
            },
            service_account="payments",
        ),
    )
    secret_name = secret_volume(created)
    assert secret_name is not None and ("app", "/etc/tls", True) in mounts(created)
    certificate_name = secret_name.removesuffix("-tls")
    body = wait_for(
        lambda: certs.is_ready(api_client, namespace, certificate_name),
        timeout=15,
        what="identity Certificate Ready",
    )
    assert body["spec"]["uris"] == [f"spiffe://cluster.local/ns/{namespace}/sa/payments"]
    assert body["spec"]["dnsNames"] == ["payments.example.com"]
    assert certs.secret(api_client, namespace, secret_name).type == "kubernetes.io/tls"


def test_a_users_certificate_named_like_the_identity_is_never_mounted(
    api_client, namespace, running_operator
):
    """A Certificate `web-identity` the user made (no SPIFFE ID) must not stand in for the
    service account's identity: the pod is refused naming it, dry run or not."""
    core = client.CoreV1Api(api_client)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="web"))
    )
    own = certs.certificate(
        "web-identity", secretName="my-own-web", dnsNames=[f"mine.{namespace}.svc"]
    )
    certs.create(api_client, namespace, own)
    wants = pod(
        "p1",
        labels={"certsmith.dev/inject": "true"},
        annotations={"certsmith.dev/identity": "service-account"},
        service_account="web",
    )
    for dry_run in ("All", None):
        with pytest.raises(client.ApiException) as refused:
            core.create_namespaced_pod(namespace, wants, dry_run=dry_run)
        assert refused.value.status == 409, refused.value.body
        assert f"Certificate {namespace}/web-identity exists and is not certsmith's identity" in (
            refused.value.body
        )
    stored = certs.get(api_client, namespace, "web-identity")
    assert stored["spec"]["secretName"] == "my-own-web" and "uris" not in stored["spec"]


def test_dry_run_creates_no_certificate(api_client, namespace, running_operator):
    core = client.CoreV1Api(api_client)
    created = core.create_namespaced_pod(
        namespace,
        pod(
            "dry",
            labels={"certsmith.dev/inject": "true"},
            annotations={"certsmith.dev/identity": "service-account"},
        ),
        dry_run="All",
    )
    assert secret_volume(created) == "default-identity-tls"
    listed = client.CustomObjectsApi(api_client).list_namespaced_custom_object(
        "certsmith.dev", "v1alpha1", namespace, "certificates"
    )
    assert listed["items"] == []


def test_bad_annotations_are_refused_with_the_annotation_named(
    api_client, namespace, running_operator
):
    core = client.CoreV1Api(api_client)
    with pytest.raises(client.ApiException) as refused:
        core.create_namespaced_pod(
            namespace,
            pod(
                "missing",
                labels={"certsmith.dev/inject": "true"},
                annotations={"certsmith.dev/certificate": "nope"},
            ),
        )
    assert "certsmith.dev/certificate" in refused.value.body
    assert "does not exist" in refused.value.body


def test_a_pod_in_the_operator_namespace_gets_no_certificate(api_client, running_operator):
    """The operator's namespace holds CA keys only: a pod there asking for its identity is
    refused before any Certificate is made for it."""
    core = client.CoreV1Api(api_client)
    objects = client.CustomObjectsApi(api_client)
    try:
        with pytest.raises(client.ApiException) as refused:
            core.create_namespaced_pod(
                OPERATOR_NAMESPACE,
                pod(
                    "wants-identity",
                    labels={"certsmith.dev/inject": "true"},
                    annotations={"certsmith.dev/identity": "service-account"},
                ),
            )
        assert refused.value.status == 403
        assert (
            "label certsmith.dev/inject: metadata.namespace: 'certsmith' is certsmith's own "
            "namespace" in refused.value.body
        )
        listed = objects.list_namespaced_custom_object(
            certs.GROUP, certs.VERSION, OPERATOR_NAMESPACE, certs.PLURAL
        )
        assert listed["items"] == []
    finally:
        with contextlib.suppress(client.ApiException):
            core.delete_namespaced_pod("wants-identity", OPERATOR_NAMESPACE)
        with contextlib.suppress(client.ApiException):
            objects.delete_namespaced_custom_object(
                certs.GROUP, certs.VERSION, OPERATOR_NAMESPACE, certs.PLURAL, "default-identity"
            )


def test_dns_names_without_identity_are_warned_about(
    api_client, namespace, kubeconfig, running_operator
):
    certs.create(api_client, namespace, certs.certificate("web", dnsNames=["web.example.com"]))
    named = pod(
        "named",
        labels={"certsmith.dev/inject": "true"},
        annotations={
            "certsmith.dev/certificate": "web",
            "certsmith.dev/dns-names": "extra.example.com",
        },
    )
    named.api_version, named.kind = "v1", "Pod"
    manifest = json.dumps(api_client.sanitize_for_serialization(named))
    created = subprocess.run(
        [kubectl_path(), "--kubeconfig", kubeconfig, "create", "-n", namespace, "-f", "-"],
        input=manifest,
        capture_output=True,
        text=True,
        check=True,
    )
    assert (
        "Warning: annotation certsmith.dev/dns-names is ignored: it adds names only to the "
        "certificate of certsmith.dev/identity: service-account" in created.stderr
    )


def test_pods_that_did_not_opt_in_are_never_blocked(api_client, namespace, running_operator):
    """Even with the operator stopped, the webhook's objectSelector keeps other pods out."""
    running_operator.stop()
    core = client.CoreV1Api(api_client)
    created = core.create_namespaced_pod(namespace, pod("plain"))
    assert secret_volume(created) is None
    with pytest.raises(client.ApiException):
        core.create_namespaced_pod(
            namespace,
            pod(
                "opted-in",
                labels={"certsmith.dev/inject": "true"},
                annotations={"certsmith.dev/certificate": "web"},
            ),
        )


def test_injected_key_is_not_readable_by_others(api_client, namespace, running_operator):
    certs.create(api_client, namespace, certs.certificate("db", dnsNames=["db.example.com"]))
    core = client.CoreV1Api(api_client)
    labels = {"certsmith.dev/inject": "true"}
    default = core.create_namespaced_pod(
        namespace, pod("db", labels=labels, annotations={"certsmith.dev/certificate": "db"})
    )
    assert file_modes(default) == {"tls.crt": 0o444, "ca.crt": 0o444, "tls.key": 0o440}
    chosen = core.create_namespaced_pod(
        namespace,
        pod(
            "db-0400",
            labels=labels,
            annotations={"certsmith.dev/certificate": "db", "certsmith.dev/key-mode": "0400"},
        ),
        dry_run="All",
    )
    assert file_modes(chosen)["tls.key"] == 0o400

    # A non-root user without fsGroup cannot read a root-owned 0440 key: kubectl says so.
    non_root = pod("db-999", labels=labels, annotations={"certsmith.dev/certificate": "db"})
    non_root.spec.security_context = client.V1PodSecurityContext(run_as_user=999)
    _, _, headers = core.create_namespaced_pod_with_http_info(namespace, non_root, dry_run="All")
    assert "container 'app' runs as a non-root user" in headers.get("Warning", "")
    assert "fsGroup" in headers.get("Warning", "")
    non_root.spec.security_context.fs_group = 999
    _, _, headers = core.create_namespaced_pod_with_http_info(namespace, non_root, dry_run="All")
    assert "non-root" not in headers.get("Warning", "")

    with pytest.raises(client.ApiException) as refused:
        core.create_namespaced_pod(
            namespace,
            pod(
                "db-0644",
                labels=labels,
                annotations={"certsmith.dev/certificate": "db", "certsmith.dev/key-mode": "0644"},
            ),
        )
    assert "certsmith.dev/key-mode" in refused.value.body
    assert "'0644'" in refused.value.body


def test_a_pod_whose_mount_path_is_taken_is_refused_and_gets_no_certificate(
    api_client, namespace, running_operator
):
    core = client.CoreV1Api(api_client)
    taken = pod(
        "taken",
        labels={"certsmith.dev/inject": "true"},
        annotations={"certsmith.dev/identity": "service-account"},
    )
    taken.spec.volumes = [client.V1Volume(name="own", empty_dir=client.V1EmptyDirVolumeSource())]
    taken.spec.containers[0].volume_mounts = [client.V1VolumeMount(name="own", mount_path=MOUNT)]
    with pytest.raises(client.ApiException) as refused:
        core.create_namespaced_pod(namespace, taken)
    assert "certsmith.dev/mount-path" in refused.value.body
    assert "'app' already mounts volume 'own'" in refused.value.body
    listed = client.CustomObjectsApi(api_client).list_namespaced_custom_object(
        "certsmith.dev", "v1alpha1", namespace, "certificates"
    )
    assert listed["items"] == []
