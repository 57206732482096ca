"""ClusterTrustBundles on a real apiserver: each authority publishes its roots, linked to its
signer, through every phase of a root rotation; certsmith repairs its own bundle, leaves
anyone else's alone and says so; and on a cluster that serves no pod-certificate API
certsmith says that once and works as before.

Version-agnostic: the served version (v1 on 1.37, v1beta1 on 1.35/1.36) is discovered.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from kubernetes import client, config, watch

from certsmith.pki import ca, inspect
from tests.integration import certs
from tests.integration.conftest import (
    OPERATOR_NAMESPACE,
    OperatorProcess,
    _grant_test_names,
    _install_crds,
    authority_ready,
)
from tests.integration.discovery import served_version
from tests.integration.test_operability import scrape, value
from tests.support import REPO_ROOT, free_port, wait_for

pytestmark = pytest.mark.integration

GROUP = "certificates.k8s.io"
BUNDLES = "clustertrustbundles"
AUTHORITIES = ("certsmith.dev", "v1alpha1", "certificateauthorities")
PLUGIN = Path(sys.executable).parent / "kubectl-certsmith"


def bundle_name(authority: str) -> str:
    return f"certsmith.dev:{authority}:roots"


@pytest.fixture(scope="module")
def version(api_client: client.ApiClient) -> str:
    found = served_version(api_client, BUNDLES)
    if found is None:
        pytest.skip("this apiserver does not serve clustertrustbundles.certificates.k8s.io")
    return found


def get_bundle(api_client: client.ApiClient, version: str, name: str) -> dict[str, Any] | None:
    try:
        return client.CustomObjectsApi(api_client).get_cluster_custom_object(
            GROUP, version, BUNDLES, name
        )
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise


def authority(api_client: client.ApiClient, name: str) -> dict[str, Any]:
    return client.CustomObjectsApi(api_client).get_cluster_custom_object(*AUTHORITIES, name)


def condition(api_client: client.ApiClient, name: str, kind: str) -> dict[str, Any] | None:
    conditions = (authority(api_client, name).get("status") or {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == kind), None)


def openssl_fingerprints(pem: str | bytes) -> list[str]:
    """SHA-256 fingerprints of every certificate in `pem`, as openssl reads them."""
    text = pem.decode() if isinstance(pem, bytes) else pem
    end = "-----END CERTIFICATE-----"
    blocks = [block + end + "\n" for block in text.split(end) if "BEGIN CERTIFICATE" in block]
    found = []
    for block in blocks:
        out = subprocess.run(
            ["openssl", "x509", "-noout", "-fingerprint", "-sha256"],
            input=block,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        found.append(out.strip().split("=", 1)[1].replace(":", "").lower())
    return found


def root_secret_pem(api_client: client.ApiClient, name: str, role: str = "root") -> bytes:
    secret = client.CoreV1Api(api_client).read_namespaced_secret(
        f"{name}-{role}", OPERATOR_NAMESPACE
    )
    return base64.b64decode(secret.data["tls.crt"])


def other_ca_pem(common_name: str = "someone else's root") -> str:
    """A valid CA certificate (the apiserver checks every trust anchor) that is not ours."""
    pair = ca.build_root(common_name=common_name, now=datetime.now(UTC), lifetime=timedelta(days=1))
    return inspect.certificates_to_pem([pair.certificate]).decode()


def warnings(api_client: client.ApiClient, name: str, reason: str) -> list[client.CoreV1Event]:
    return [
        event
        for event in client.CoreV1Api(api_client).list_event_for_all_namespaces().items
        if event.involved_object.kind == "CertificateAuthority"
        and event.involved_object.name == name
        and event.reason == reason
        and event.type == "Warning"
    ]


@pytest.fixture
def authority_name(api_client: client.ApiClient, running_operator) -> Iterator[str]:
    """A name for an authority of the test's own, deleted afterwards if it still exists."""
    name = f"ctb-{uuid.uuid4().hex[:6]}"
    yield name
    with contextlib.suppress(client.ApiException):
        client.CustomObjectsApi(api_client).delete_cluster_custom_object(*AUTHORITIES, name)


def create_authority(api_client: client.ApiClient, name: str) -> None:
    certs.create_authority(api_client, name)
    wait_for(lambda: authority_ready(api_client, name), timeout=30, what=f"{name} Ready")


def test_each_authority_publishes_its_roots_and_edits_and_deletes_are_repaired(
    api_client, version, authority_name, running_operator
):
    objects = client.CustomObjectsApi(api_client)
    # The default authority's bundle holds its root, as openssl reads both.
    default = wait_for(
        lambda: get_bundle(api_client, version, bundle_name("cluster-root")),
        timeout=30,
        what="cluster-root's ClusterTrustBundle",
    )
    assert openssl_fingerprints(default["spec"]["trustBundle"]) == openssl_fingerprints(
        root_secret_pem(api_client, "cluster-root")
    )

    name = authority_name
    started = time.monotonic()
    create_authority(api_client, name)
    bundle = wait_for(
        lambda: get_bundle(api_client, version, bundle_name(name)),
        timeout=30,
        what="the ClusterTrustBundle published",
    )
    print(f"\nClusterTrustBundle published {time.monotonic() - started:.2f} s after the create")
    owner = authority(api_client, name)
    assert bundle["spec"]["signerName"] == f"certsmith.dev/{name}"
    assert bundle["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "certsmith",
        "certsmith.dev/authority": name,
    }
    # Not owned by the authority: the garbage collector must not take it with it.
    assert "ownerReferences" not in bundle["metadata"]
    root_fingerprints = openssl_fingerprints(root_secret_pem(api_client, name))
    assert openssl_fingerprints(bundle["spec"]["trustBundle"]) == root_fingerprints
    assert root_fingerprints == owner["status"]["trustedRoots"]
    synced = wait_for(
        lambda: (c := condition(api_client, name, "ClusterTrustBundleSynced"))
        and c["status"] == "True"
        and c,
        timeout=15,
        what="ClusterTrustBundleSynced=True",
    )
    assert synced["message"] == (f"ClusterTrustBundle {bundle_name(name)} holds the 1 trusted root")
    samples = scrape(running_operator.metrics_port)
    assert value(samples, "certsmith_cluster_trust_bundle_roots", authority=name) == 1

    # What a pod's clusterTrustBundle source selects: signerName + labelSelector.
    selected = objects.list_cluster_custom_object(
        GROUP, version, BUNDLES, label_selector=f"certsmith.dev/authority={name}"
    )["items"]
    assert [
        b["metadata"]["name"]
        for b in selected
        if b["spec"]["signerName"] == (f"certsmith.dev/{name}")
    ] == [bundle_name(name)]

    def published() -> bool:
        found = get_bundle(api_client, version, bundle_name(name))
        return (
            found is not None
            and found["spec"]["trustBundle"] == bundle["spec"]["trustBundle"]
            and found["metadata"].get("labels") == bundle["metadata"]["labels"]
            and not found["metadata"].get("ownerReferences")
        )

    # Deleted by a user: back at once (the watch), not at the next scheduled step.
    objects.delete_cluster_custom_object(GROUP, version, BUNDLES, bundle_name(name))
    started = time.monotonic()
    wait_for(published, timeout=10, what="the deleted ClusterTrustBundle recreated")
    print(f"deleted bundle recreated in {time.monotonic() - started:.2f} s")

    # Edited by hand: another root, its labels removed, an ownerReference to the authority
    # added (as an older certsmith wrote it): certsmith takes the ownerReference out again.
    objects.patch_cluster_custom_object(
        GROUP,
        version,
        BUNDLES,
        bundle_name(name),
        {
            "metadata": {
                "labels": {"app.kubernetes.io/managed-by": None, "certsmith.dev/authority": None},
                "ownerReferences": [
                    {
                        "apiVersion": "certsmith.dev/v1alpha1",
                        "kind": "CertificateAuthority",
                        "name": name,
                        "uid": owner["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": {"trustBundle": other_ca_pem()},
        },
    )
    started = time.monotonic()
    wait_for(published, timeout=10, what="the edited ClusterTrustBundle repaired")
    print(f"edited bundle repaired in {time.monotonic() - started:.2f} s")

    # The authority deleted: its bundle is kept (what it issued stays trusted), and the
    # authority created again takes the same object back.
    uid = get_bundle(api_client, version, bundle_name(name))["metadata"]["uid"]
    objects.delete_cluster_custom_object(*AUTHORITIES, name)
    wait_for(
        lambda: name
        not in {
            a["metadata"]["name"] for a in objects.list_cluster_custom_object(*AUTHORITIES)["items"]
        },
        timeout=15,
        what="the authority gone",
    )
    time.sleep(5)  # the garbage collector acts within a second or two on an owned object
    kept = get_bundle(api_client, version, bundle_name(name))
    assert kept is not None and kept["metadata"]["uid"] == uid
    assert kept["spec"]["trustBundle"] == bundle["spec"]["trustBundle"]
    create_authority(api_client, name)
    wait_for(
        lambda: condition(api_client, name, "ClusterTrustBundleSynced")["status"] == "True",
        timeout=15,
        what="ClusterTrustBundleSynced=True after the authority came back",
    )
    assert get_bundle(api_client, version, bundle_name(name))["metadata"]["uid"] == uid
    objects.delete_cluster_custom_object(*AUTHORITIES, name)
    objects.delete_cluster_custom_object(GROUP, version, BUNDLES, bundle_name(name))


def test_the_default_authority_deleted_keeps_its_bundle_without_a_gap(
    api_client, version, running_operator
):
    """cluster-root is recreated at once; its ClusterTrustBundle is never deleted meanwhile
    (pods projecting it would lose the root)."""
    objects = client.CustomObjectsApi(api_client)
    before = wait_for(
        lambda: get_bundle(api_client, version, bundle_name("cluster-root")),
        timeout=30,
        what="cluster-root's ClusterTrustBundle",
    )
    uid = authority(api_client, "cluster-root")["metadata"]["uid"]
    objects.delete_cluster_custom_object(*AUTHORITIES, "cluster-root")
    try:
        wait_for(
            lambda: authority(api_client, "cluster-root")["metadata"]["uid"] != uid
            and authority_ready(api_client, "cluster-root"),
            timeout=30,
            what="cluster-root recreated",
            retry_on=(client.ApiException,),
        )
    finally:
        _grant_test_names(api_client)  # the recreated object has an empty spec
    time.sleep(5)  # the garbage collector acts within a second or two on an owned object
    after = get_bundle(api_client, version, bundle_name("cluster-root"))
    assert after is not None and after["metadata"]["uid"] == before["metadata"]["uid"]
    assert not after["metadata"].get("ownerReferences")  # nothing for the collector to act on
    assert after["spec"]["trustBundle"] == before["spec"]["trustBundle"]


def test_a_conflict_resolved_is_reported_at_once(
    api_client, version, authority_name, running_operator
):
    """The foreign bundle deleted, or handed over by label: certsmith writes its own and
    ClusterTrustBundleSynced turns True with that write, not at the next periodic look."""
    objects = client.CustomObjectsApi(api_client)
    deleted, labelled = authority_name, f"{authority_name}-b"

    def synced(name: str, status: str) -> bool:
        found = condition(api_client, name, "ClusterTrustBundleSynced")
        return found is not None and found["status"] == status

    try:
        for name in (deleted, labelled):
            objects.create_cluster_custom_object(
                GROUP,
                version,
                BUNDLES,
                {
                    "apiVersion": f"{GROUP}/{version}",
                    "kind": "ClusterTrustBundle",
                    "metadata": {"name": bundle_name(name)},
                    "spec": {"signerName": f"certsmith.dev/{name}", "trustBundle": other_ca_pem()},
                },
            )
            create_authority(api_client, name)
            wait_for(lambda n=name: synced(n, "False"), timeout=15, what=f"{name} BundleConflict")

        objects.delete_cluster_custom_object(GROUP, version, BUNDLES, bundle_name(deleted))
        started = time.monotonic()
        wait_for(lambda: synced(deleted, "True"), timeout=8, what="Synced, foreign one deleted")
        print(f"\nSynced {time.monotonic() - started:.2f} s after the foreign bundle's deletion")

        objects.patch_cluster_custom_object(
            GROUP,
            version,
            BUNDLES,
            bundle_name(labelled),
            {"metadata": {"labels": {"app.kubernetes.io/managed-by": "certsmith"}}},
        )
        started = time.monotonic()
        wait_for(lambda: synced(labelled, "True"), timeout=8, what="Synced once handed over")
        print(f"Synced {time.monotonic() - started:.2f} s after the label")
    finally:
        for name in (deleted, labelled):
            with contextlib.suppress(client.ApiException):
                objects.delete_cluster_custom_object(*AUTHORITIES, name)
            with contextlib.suppress(client.ApiException):
                objects.delete_cluster_custom_object(GROUP, version, BUNDLES, bundle_name(name))


# --- a root rotation, recorded ------------------------------------------------------------


def fingerprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex()


class Recorder:
    """Every version of one ClusterTrustBundle and of one leaf Secret, by resourceVersion
    (etcd's revision: one order for both), watched from `start`."""

    def __init__(self, api_client, version: str, bundle: str, namespace: str, secret: str):
        self.bundles: list[tuple[int, frozenset[str]]] = []
        self.leaves: list[tuple[int, str]] = []
        """(resourceVersion, fingerprint of the root the leaf's intermediate chains to)."""
        self.roots: dict[str, x509.Certificate] = {}
        self._stop = threading.Event()
        objects = client.CustomObjectsApi(api_client)
        core = client.CoreV1Api(api_client)
        start = objects.list_cluster_custom_object(GROUP, version, BUNDLES)["metadata"][
            "resourceVersion"
        ]
        self._threads = [
            threading.Thread(
                target=self._follow,
                args=(
                    lambda **kw: objects.list_cluster_custom_object(GROUP, version, BUNDLES, **kw),
                    f"metadata.name={bundle}",
                    start,
                    self._bundle_seen,
                ),
                daemon=True,
            ),
            threading.Thread(
                target=self._follow,
                args=(
                    lambda **kw: core.list_namespaced_secret(namespace, **kw),
                    f"metadata.name={secret}",
                    start,
                    self._secret_seen,
                ),
                daemon=True,
            ),
        ]
        for thread in self._threads:
            thread.start()

    def _follow(self, list_fn, selector: str, rv: str, seen) -> None:
        while not self._stop.is_set():
            try:
                for event in watch.Watch().stream(
                    list_fn, field_selector=selector, resource_version=rv, timeout_seconds=5
                ):
                    # A dict: the stream cannot tell the lambda's return type.
                    obj = event["object"]
                    rv = obj["metadata"]["resourceVersion"]
                    if event["type"] != "DELETED":
                        seen(int(rv), obj)
            except client.ApiException as error:
                if error.status == 410:  # too old: the record would have a hole
                    raise
            except Exception:  # the stream ended: resume from the last version
                time.sleep(0.1)

    def _bundle_seen(self, rv: int, body: dict[str, Any]) -> None:
        pem = body["spec"]["trustBundle"].encode()
        self.bundles.append(
            (rv, frozenset(fingerprint(c) for c in x509.load_pem_x509_certificates(pem)))
        )

    def _secret_seen(self, rv: int, secret: dict[str, Any]) -> None:
        chain = x509.load_pem_x509_certificates(base64.b64decode(secret["data"]["tls.crt"]))
        for fp, root in self.roots.items():
            try:
                chain[1].verify_directly_issued_by(root)
            except (ValueError, TypeError, InvalidSignature):
                continue
            self.leaves.append((rv, fp))

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)


def test_a_root_rotation_publishes_both_roots_then_only_the_new_one_across_restarts(
    api_client, version, authority_name, namespace, running_operator
):
    objects = client.CustomObjectsApi(api_client)
    name = authority_name
    create_authority(api_client, name)
    certs.create(
        api_client,
        namespace,
        certs.certificate("web", dnsNames=[f"web.{namespace}.svc"], issuerRef={"name": name}),
    )
    certs.wait_ready(api_client, namespace, "web", timeout=30)
    old_root = x509.load_pem_x509_certificates(root_secret_pem(api_client, name))[0]
    old = fingerprint(old_root)
    wait_for(
        lambda: (b := get_bundle(api_client, version, bundle_name(name)))
        and openssl_fingerprints(b["spec"]["trustBundle"]) == [old],
        timeout=15,
        what="the bundle with the old root",
    )
    recorder = Recorder(api_client, version, bundle_name(name), namespace, "web-tls")
    recorder.roots[old] = old_root
    try:
        request = datetime.now(UTC).isoformat()
        objects.patch_cluster_custom_object(
            *AUTHORITIES,
            name,
            {
                "metadata": {"annotations": {"certsmith.dev/rotate-requested-at": request}},
                "spec": {"rotation": {"propagationDelay": "4s"}},
            },
        )
        started = time.monotonic()
        killed_in: list[str] = []
        seen_rotating = False

        def finished_after_a_kill_in_each_phase_seen() -> bool:
            nonlocal seen_rotating
            status = authority(api_client, name).get("status") or {}
            phase = status.get("phase")
            new = (status.get("rotation") or {}).get("newRootFingerprint")
            if new and new not in recorder.roots:
                recorder.roots[new] = x509.load_pem_x509_certificates(
                    root_secret_pem(api_client, name, "root-next")
                )[0]
            if phase in ("Distributing", "Reissuing", "Retiring") and phase not in killed_in:
                seen_rotating = True
                running_operator.kill()
                killed_in.append(phase)
                running_operator.start()
            return seen_rotating and phase == "Ready"

        wait_for(
            finished_after_a_kill_in_each_phase_seen,
            timeout=120,
            interval=0.2,
            retry_on=(),
            what="the rotation, the operator killed in each phase seen",
        )
        duration = time.monotonic() - started
        status = authority(api_client, name)["status"]
        new = status["rotation"]["newRootFingerprint"]
        assert status["trustedRoots"] == [new]
        wait_for(
            lambda: recorder.bundles and recorder.bundles[-1][1] == {new},
            timeout=15,
            what="the bundle on the new root only",
        )
        wait_for(
            lambda: recorder.leaves and recorder.leaves[-1][1] == new,
            timeout=15,
            what="the leaf on the new root",
        )
        print(
            f"\nrotation of {name}: {duration:.1f} s, the operator SIGKILLed in {killed_in}; "
            f"bundle versions {[sorted(fp[:8] for fp in s) for _, s in recorder.bundles]}"
        )
        assert "Distributing" in killed_in

        # The bundle went old → old+new → new, never back, whatever the restarts.
        phases = [roots for i, (_, roots) in enumerate(recorder.bundles)
                  if i == 0 or recorder.bundles[i - 1][1] != roots]  # fmt: skip
        assert phases == [frozenset({old, new}), frozenset({new})], phases
        trusts_new = recorder.bundles[0][0]
        first_leaf_on_new = min(rv for rv, root in recorder.leaves if root == new)
        old_dropped = next(rv for rv, roots in recorder.bundles if roots == {new})
        assert trusts_new < first_leaf_on_new < old_dropped
    finally:
        recorder.stop()


# --- a cluster without the pod-certificate APIs ---------------------------------------------


@pytest.fixture(scope="module")
def cluster_without_pod_certificates(
    api_client: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A second apiserver profile (own state and ports) with every pod-certificate API the
    session's apiserver serves switched off by --runtime-config; its kubeconfig."""
    off = [
        f"{GROUP}/{found}/{resource}=false"
        for resource in ("podcertificaterequests", BUNDLES)
        if (found := served_version(api_client, resource)) is not None
    ]
    state = tmp_path_factory.mktemp("no-pod-certificates")
    env = {
        **os.environ,
        "CERTSMITH_STATE": str(state),
        "CERTSMITH_APISERVER_PORT": str(free_port()),
        "CERTSMITH_ETCD_PORT": str(free_port()),
        "CERTSMITH_CONTROLLER_MANAGER_PORT": str(free_port()),
        # After the flags the session's apiserver was given, if any.
        "CERTSMITH_APISERVER_EXTRA_ARGS": " ".join(
            [os.environ.get("CERTSMITH_APISERVER_EXTRA_ARGS", "")]
            + ([f"--runtime-config={','.join(off)}"] if off else [])
        ).strip(),
    }
    cluster = str(REPO_ROOT / "hack" / "cluster")
    started = time.monotonic()
    try:
        up = subprocess.run(
            [cluster, "up", "apiserver"], env=env, stdout=subprocess.PIPE, text=True, timeout=300
        )
        assert up.returncode == 0, "hack/cluster up failed (see its messages)"
        print(f"\nsecond apiserver ({off}) up in {time.monotonic() - started:.1f} s")
        yield up.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([cluster, "down", "apiserver"], env=env, capture_output=True, timeout=120)


def test_without_the_pod_certificate_apis_certsmith_says_so_once_and_works_as_before(
    cluster_without_pod_certificates: str, tmp_path: Path
):
    kubeconfig = cluster_without_pod_certificates
    other = config.new_client_from_config(config_file=kubeconfig)
    assert served_version(other, BUNDLES) is None
    assert served_version(other, "podcertificaterequests") is None
    _install_crds(other)
    core = client.CoreV1Api(other)
    for name in (OPERATOR_NAMESPACE, "shop"):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    operator = OperatorProcess(kubeconfig, tmp_path / "operator.log")
    operator.start()
    try:
        operator.wait_serving(other)
        certs.create(other, "shop", certs.certificate("web", dnsNames=["web.shop.svc"]))
        certs.wait_ready(other, "shop", "web", timeout=30)

        unserved = wait_for(
            lambda: (c := condition(other, "cluster-root", "ClusterTrustBundleSynced")) and c,
            timeout=15,
            what="ClusterTrustBundleSynced",
        )
        assert (unserved["status"], unserved["reason"]) == ("False", "NotServed")
        assert "ClusterTrustBundleProjection feature gates" in unserved["message"]
        assert authority_ready(other, "cluster-root")
        # No bundle published: 0 roots, present (not absent) for an alert to see.
        roots = scrape(operator.metrics_port).get(
            ("certsmith_cluster_trust_bundle_roots", (("authority", "cluster-root"),))
        )
        assert roots == 0

        events = wait_for(
            lambda: len(found := warnings(other, "cluster-root", "APINotServed")) == 2 and found,
            timeout=15,
            what="two APINotServed events",
        )
        messages = sorted(event.message for event in events)
        assert messages[0].startswith("clustertrustbundles.certificates.k8s.io is not served")
        assert messages[1].startswith("podcertificaterequests.certificates.k8s.io is not served")
        log = (tmp_path / "operator.log").read_text(errors="replace")
        for message in messages:
            assert log.count(message) == 1, f"said {log.count(message)} times: {message}"

        shown = subprocess.run(
            [str(PLUGIN), "--kubeconfig", kubeconfig, "status", "-n", "shop"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shown.returncode == 0, shown.stderr  # every Certificate is Ready
        apis = shown.stdout.split("\n\n")[-1].splitlines()
        assert apis == ["Pod-certificate APIs:", *(f"  {m}" for m in reversed(messages))]
        as_json = json.loads(
            subprocess.run(
                [str(PLUGIN), "--kubeconfig", kubeconfig, "status", "-A", "-o", "json"],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
        )["podCertificateApis"]
        assert as_json["podCertificateRequests"] is None
        assert as_json["clusterTrustBundles"] is None
    finally:
        operator.stop()
