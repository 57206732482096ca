"""The webhook's own certificate and caBundle go through a root rotation like every leaf,
without a restart: admission keeps answering throughout, and ends on the new root only.
The webhook configurations are the install's: the operator keeps their caBundle only."""

from __future__ import annotations

import base64
import socket
import ssl
import threading
import time
from datetime import UTC, datetime

import pytest
from kubernetes import client

from certsmith.admission import serving
from tests.integration.conftest import webhook_client_pki
from tests.integration.test_injection import pod
from tests.integration.test_root_rotation import CA, bundle_fingerprints
from tests.support import (
    AS_THE_INSTALL,
    install_admission,
    kubectl,
    local_admission_objects,
    wait_for,
)

pytestmark = pytest.mark.integration
# Longer than a replica takes to notice the new intermediate (15 s) and kopf's server to
# load the new files (10 s): the old root must outlive the old serving certificate.
PROPAGATION_DELAY = "30s"


def registered_bundle(api_client) -> bytes:
    configuration = client.AdmissionregistrationV1Api(
        api_client
    ).read_mutating_webhook_configuration("certsmith.dev")
    return base64.b64decode(configuration.webhooks[0].client_config.ca_bundle)


def served_by_registered_root(kubeconfig: str, port: int, bundle: bytes) -> bool:
    """Does the certificate the webhook serves now chain to the caBundle the apiserver uses?"""
    context = ssl.create_default_context(cadata=bundle.decode())
    context.check_hostname = False
    identity = webhook_client_pki(kubeconfig)
    if identity is not None:
        context.load_cert_chain(identity / "client.crt", identity / "client.key")
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw),
        ):
            return True
    except ssl.SSLCertVerificationError:
        return False


def test_the_webhook_follows_a_root_rotation_without_a_restart(
    api_client, kubeconfig, namespace, running_operator
):
    objects = client.CustomObjectsApi(api_client)
    core = client.CoreV1Api(api_client)
    failures: list[str] = []
    admitted = 0
    done = threading.Event()

    def admit_pods() -> None:
        # Opted-in pods go through the mutating webhook, whose failurePolicy is Fail.
        nonlocal admitted
        while not done.is_set():
            try:
                core.create_namespaced_pod(
                    namespace,
                    pod(
                        "probe",
                        labels={"certsmith.dev/inject": "true"},
                        annotations={"certsmith.dev/identity": "service-account"},
                    ),
                    dry_run="All",
                )
                admitted += 1
            except client.ApiException as error:
                failures.append(f"{error.status}: {error.body}")
            time.sleep(0.5)

    pid_before = running_operator.process.pid
    traffic = threading.Thread(target=admit_pods, daemon=True)
    traffic.start()
    objects.patch_cluster_custom_object(
        *CA,
        {
            "metadata": {
                "annotations": {"certsmith.dev/rotate-requested-at": datetime.now(UTC).isoformat()}
            },
            "spec": {"rotation": {"propagationDelay": PROPAGATION_DELAY, "reissueRate": 100}},
        },
    )
    started = time.monotonic()

    def rotated_to() -> str | None:
        """The new root's fingerprint once the rotation is over, the old root gone."""
        status = objects.get_cluster_custom_object(*CA).get("status") or {}
        new_root = (status.get("rotation") or {}).get("newRootFingerprint")
        done = status.get("phase") == "Ready" and status.get("trustedRoots") == [new_root]
        return new_root if done else None

    wait_for(lambda: not rotated_to(), timeout=30, what="the rotation to start")
    new_root = wait_for(rotated_to, timeout=240, what="the rotation to end")

    def bundle_is_new_root_only() -> bool:
        return bundle_fingerprints(registered_bundle(api_client)) == {new_root}

    wait_for(bundle_is_new_root_only, timeout=30, what="the caBundle on the new root only")
    assert served_by_registered_root(
        kubeconfig, running_operator.webhook_port, registered_bundle(api_client)
    )
    time.sleep(2)
    done.set()
    traffic.join()
    print(
        f"\nwebhook through a root rotation ({PROPAGATION_DELAY} delay): "
        f"{time.monotonic() - started:.0f} s, {admitted} admissions, {len(failures)} failed"
    )
    assert running_operator.process.pid == pid_before, "the operator restarted"
    assert admitted > 0 and not failures, failures[:3]


def test_the_operator_puts_back_only_the_ca_bundle(api_client, kubeconfig, running_operator):
    """A caBundle edited to junk (every opted-in pod would fail) is put back within a
    serving check (15 s); a loosened failurePolicy is the install's field, left for the
    install to put back: applied again (server-side, as Helm 4 or a GitOps tool does) it
    is, and the caBundle the operator wrote stays."""
    admission = client.AdmissionregistrationV1Api(api_client)
    before = admission.read_mutating_webhook_configuration("certsmith.dev").webhooks[0]
    admission.patch_mutating_webhook_configuration(
        "certsmith.dev",
        [
            {"op": "replace", "path": "/webhooks/0/clientConfig/caBundle", "value": "anVuaw=="},
            {"op": "replace", "path": "/webhooks/0/failurePolicy", "value": "Ignore"},
        ],
    )

    def bundle_restored() -> bool:
        hook = admission.read_mutating_webhook_configuration("certsmith.dev").webhooks[0]
        return hook.client_config.ca_bundle == before.client_config.ca_bundle

    wait_for(bundle_restored, timeout=30, what="the mutating webhook's caBundle put back")
    after = admission.read_mutating_webhook_configuration("certsmith.dev").webhooks[0]
    assert after.failure_policy == "Ignore"

    url = f"https://127.0.0.1:{running_operator.webhook_port}"
    install_admission(kubeconfig, url)
    hook = admission.read_mutating_webhook_configuration("certsmith.dev").webhooks[0]
    assert (hook.failure_policy, hook.client_config.ca_bundle) == (
        before.failure_policy,
        before.client_config.ca_bundle,
    )


def test_a_server_side_diff_of_the_install_is_empty_after_the_operator_ran(
    kubeconfig, running_operator
):
    """What a GitOps tool sees: the install's configurations, diffed server-side against
    the cluster by the install's field manager, show no change once the operator wrote
    the caBundle (the install sets no caBundle, the operator no other field)."""
    url = f"https://127.0.0.1:{running_operator.webhook_port}"
    diff = kubectl(
        kubeconfig,
        "diff",
        *AS_THE_INSTALL,
        "-f",
        "-",
        input=local_admission_objects(url),
        check=False,
    )
    assert diff.returncode == 0, diff.stdout + diff.stderr


def test_a_deleted_configuration_is_not_created_again(api_client, validating_webhook_down):
    """The install owns the configurations: deleted, one stays deleted (that admission
    off) through serving checks, until the install applies it again."""
    time.sleep(serving.CHECK_PERIOD + 5)
    with pytest.raises(client.ApiException) as gone:
        client.AdmissionregistrationV1Api(api_client).read_validating_webhook_configuration(
            "certsmith.dev"
        )
    assert gone.value.status == 404
