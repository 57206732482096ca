"""certsmith signs PodCertificateRequests of its signers on a real apiserver, in the version it
serves (v1 on 1.37, v1beta1 on 1.35): fast, with the pod's identity only, refusing with a
reason what policy refuses, leaving other signers' requests alone, exactly once across a
restart, and moving pods to the new root during a root rotation.

There is no kubelet: the test makes the Node, the pods bound to it and the requests. They
are signed by authorities of the tests' own: pod certificates under cluster-root would hold
up its next root rotation (another test's) until kubelets would have refreshed them.
"""

from __future__ import annotations

import base64
import statistics
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from kubernetes import client

from tests import pod_requests
from tests.integration import pod_certs
from tests.integration.conftest import OPERATOR_NAMESPACE, OperatorProcess, authority_ready
from tests.integration.discovery import served_version
from tests.support import wait_for

pytestmark = pytest.mark.integration

CA = ("certsmith.dev", "v1alpha1", "certificateauthorities")


@pytest.fixture(scope="module")
def version(api_client: client.ApiClient) -> str:
    found = served_version(api_client, pod_certs.PLURAL)
    assert found, "the apiserver serves no podcertificaterequests (feature gates off?)"
    return found


def create_authority(api_client: client.ApiClient, **spec: Any) -> str:
    name = f"pods-{uuid.uuid4().hex[:6]}"
    client.CustomObjectsApi(api_client).create_cluster_custom_object(
        *CA,
        {
            "apiVersion": "certsmith.dev/v1alpha1",
            "kind": "CertificateAuthority",
            "metadata": {"name": name},
            "spec": spec,
        },
    )
    wait_for(lambda: authority_ready(api_client, name), timeout=30, what=f"{name} Ready")
    return name


def delete_authority(api_client: client.ApiClient, name: str) -> None:
    """The authority and its keys."""
    client.CustomObjectsApi(api_client).delete_cluster_custom_object(*CA, name)
    core = client.CoreV1Api(api_client)
    for suffix in ("root", "root-next", "intermediate"):
        try:
            core.delete_namespaced_secret(f"{name}-{suffix}", OPERATOR_NAMESPACE)
        except client.ApiException as error:
            assert error.status == 404


@pytest.fixture(scope="module")
def signer(api_client: client.ApiClient, operator: OperatorProcess) -> Iterator[str]:
    """certsmith.dev/<an authority of this module's own>."""
    name = create_authority(api_client)
    yield f"certsmith.dev/{name}"
    delete_authority(api_client, name)


@pytest.fixture(scope="module")
def node(api_client: client.ApiClient) -> Iterator[str]:
    name = f"pcr-node-{uuid.uuid4().hex[:6]}"
    pod_certs.create_node(api_client, name)
    yield name
    client.CoreV1Api(api_client).delete_node(name)


class Workload:
    """A namespace's ServiceAccount `web`, its Services and its pods on `node`."""

    def __init__(
        self, api_client: client.ApiClient, namespace: str, node: str, signer: str
    ) -> None:
        self.api_client, self.namespace, self.node = api_client, namespace, node
        self.signer = signer
        pod_certs.create_service_account(api_client, namespace, "web")

    def pod(self, name: str = "web-0", labels: dict[str, str] | None = None) -> dict[str, Any]:
        return pod_certs.create_pod(
            self.api_client,
            self.namespace,
            name,
            node=self.node,
            service_account="web",
            labels={"app": "web"} if labels is None else labels,
        )

    def request(
        self,
        version: str,
        pod: dict[str, Any],
        *,
        signer: str | None = None,
        key_type: str = "ECDSAP256",
        name: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        body = pod_requests.request_body(
            name=name or f"{pod['metadata']['name']}-{uuid.uuid4().hex[:6]}",
            namespace=self.namespace,
            signer=signer or self.signer,
            pod=pod,
            key=pod_requests.new_key(key_type),
            shape=pod_certs.shape_of(version),
            **fields,
        )
        return pod_certs.create_request(self.api_client, version, body)


@pytest.fixture
def workload(api_client: client.ApiClient, namespace: str, node: str, signer: str) -> Workload:
    return Workload(api_client, namespace, node, signer)


def root_pem(api_client: client.ApiClient, secret: str) -> bytes:
    """The root in one of an authority's Secrets (`<authority>-root`, `-root-next`)."""
    found = client.CoreV1Api(api_client).read_namespaced_secret(secret, OPERATOR_NAMESPACE)
    return base64.b64decode(found.data["tls.crt"])


def fingerprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex()


def metric(operator: OperatorProcess, line_start: str) -> float:
    url = f"http://127.0.0.1:{operator.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(line_start)]
    return sum(values)


def test_requests_are_signed_within_a_second_with_the_pods_identity(
    api_client: client.ApiClient,
    running_operator: OperatorProcess,
    workload: Workload,
    version: str,
) -> None:
    namespace = workload.namespace
    pod_certs.create_service(api_client, namespace, "web", {"app": "web"})
    pod_certs.create_service(api_client, namespace, "db", {"app": "db"})
    pod = workload.pod(labels={"app": "web", "tier": "front"})
    issued_before = metric(
        running_operator, 'certsmith_pod_certificate_requests_total{condition="Issued"'
    )
    watcher = pod_certs.RequestWatch(api_client, version, namespace)
    created: dict[str, float] = {}
    try:
        for index in range(24):
            key_type = pod_requests.KEY_TYPES[index % len(pod_requests.KEY_TYPES)]
            started = time.monotonic()
            made = workload.request(version, pod, key_type=key_type, name=f"web-0-{index:02d}")
            created[made["metadata"]["name"]] = started
            watcher.wait([made["metadata"]["name"]], timeout=15)
    finally:
        watcher.stop()
    latencies = sorted(watcher.answered_at[n] - created[n] for n in created)
    p50 = statistics.median(latencies)
    print(
        f"\n{len(latencies)} requests ({version}): create→Issued p50 {p50 * 1000:.0f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms"
    )
    assert p50 < 1.0

    root = root_pem(api_client, f"{workload.signer.removeprefix('certsmith.dev/')}-root")
    for name in created:
        body = pod_certs.get_request(api_client, version, namespace, name)
        condition = pod_certs.answer(body)
        assert condition is not None and condition["type"] == "Issued", condition
        chain = pod_certs.chain_of(body)
        assert len(chain) == 2  # leaf, intermediate
        for purpose in ("sslserver", "sslclient"):
            verdict = pod_certs.openssl_verify(chain, root, purpose)
            assert verdict.strip().endswith("OK"), verdict
        leaf = chain[0]
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == [
            f"web.{namespace}.svc",
            f"web.{namespace}.svc.cluster.local",
        ]
        assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
            f"spiffe://cluster.local/ns/{namespace}/sa/web"
        ]
        status = body["status"]
        not_before = datetime.fromisoformat(status["notBefore"])
        not_after = datetime.fromisoformat(status["notAfter"])
        refresh = datetime.fromisoformat(status["beginRefreshAt"])
        assert (not_before, not_after) == (leaf.not_valid_before_utc, leaf.not_valid_after_utc)
        assert (not_after - not_before).total_seconds() == 86400
        assert (refresh - not_before).total_seconds() == 86400 * 2 / 3
    issued = metric(running_operator, 'certsmith_pod_certificate_requests_total{condition="Issued"')
    assert issued - issued_before == len(created)
    assert metric(running_operator, "certsmith_pod_certificate_latency_seconds_count") >= len(
        created
    )


def test_a_request_for_another_signer_is_left_untouched(
    api_client: client.ApiClient,
    running_operator: OperatorProcess,
    workload: Workload,
    version: str,
) -> None:
    pod = workload.pod()
    foreign = workload.request(version, pod, signer="example.com/cluster-root")
    kubernetes = workload.request(version, pod, signer="kubernetes.io/kube-apiserver-client-pod")
    # Created after them: once it is answered, certsmith has seen the others too.
    ours = workload.request(version, pod)
    pod_certs.wait_answered(api_client, version, workload.namespace, ours["metadata"]["name"])
    time.sleep(2)
    for made in (foreign, kubernetes):
        now = pod_certs.get_request(
            api_client, version, workload.namespace, made["metadata"]["name"]
        )
        assert now["metadata"]["resourceVersion"] == made["metadata"]["resourceVersion"]
        assert not now.get("status")
    events = client.CoreV1Api(api_client).list_namespaced_event(workload.namespace).items
    assert [e for e in events if e.involved_object.kind == "PodCertificateRequest"] == []


@pytest.fixture
def other_namespace(api_client: client.ApiClient) -> Iterator[str]:
    """A namespace without the test grant label: only its own names are allowed."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def test_refused_requests_are_denied_with_a_reason(
    api_client: client.ApiClient,
    running_operator: OperatorProcess,
    workload: Workload,
    other_namespace: str,
    node: str,
    version: str,
) -> None:
    victim = f"api.{workload.namespace}.svc"
    pod_certs.create_service(api_client, workload.namespace, "api", {"app": "api"})
    impostors = Workload(api_client, other_namespace, node, workload.signer)
    impostor = impostors.pod()
    pod = workload.pod()
    replaced = {**pod, "metadata": {**pod["metadata"], "uid": str(uuid.uuid4())}}
    cases = {
        "PolicyDenied": (
            impostors,
            impostors.request(version, impostor, annotations={"certsmith.dev/dns-names": victim}),
            f"'{victim}' is not allowed in this namespace (namespace {other_namespace} may name "
            "its own services and SPIFFE IDs only)",
        ),
        "InvalidUnverifiedUserAnnotations": (
            workload,
            workload.request(version, pod, annotations={"example.com/color": "blue"}),
            "certsmith does not know 'example.com/color'",
        ),
        "AuthorityNotFound": (
            workload,
            workload.request(version, pod, signer="certsmith.dev/no-such-authority"),
            "names CertificateAuthority no-such-authority, which does not exist",
        ),
        "PodReplaced": (
            workload,
            workload.request(version, replaced),
            f"pod {workload.namespace}/web-0 has uid {pod['metadata']['uid']}",
        ),
    }
    for reason, (owner, made, message) in cases.items():
        body = pod_certs.wait_answered(
            api_client, version, owner.namespace, made["metadata"]["name"]
        )
        condition = pod_certs.answer(body)
        assert condition is not None
        assert (condition["type"], condition["reason"]) == ("Denied", reason), condition
        assert message in condition["message"], condition
        assert "certificateChain" not in body["status"]


def test_kube_apiserver_itself_refuses_key_types_outside_kubernetes_list(
    api_client: client.ApiClient, workload: Workload, version: str
) -> None:
    """Every key type the API accepts is one certsmith signs (the first test signs all six),
    so UnsupportedKeyType (unit-tested) never reaches a real cluster today: an RSA-2048 key,
    which certsmith could sign, is refused before certsmith sees it."""
    pod = workload.pod()
    body = pod_requests.request_body(
        name="rsa2048",
        namespace=workload.namespace,
        signer=workload.signer,
        pod=pod,
        key=rsa.generate_private_key(65537, 2048),
        shape=pod_certs.shape_of(version),
    )
    with pytest.raises(client.ApiException) as refused:
        pod_certs.create_request(api_client, version, body)
    assert refused.value.status == 422
    assert "3072 or 4096" in str(refused.value.body)


def test_the_authority_caps_the_lifetime_and_chooses_the_refresh(
    api_client: client.ApiClient,
    running_operator: OperatorProcess,
    namespace: str,
    node: str,
    version: str,
) -> None:
    name = create_authority(api_client, podCertificates={"maxDuration": "2h", "renewBefore": "30m"})
    try:
        workload = Workload(api_client, namespace, node, f"certsmith.dev/{name}")
        made = workload.request(version, workload.pod(), max_expiration_seconds=86400)
        status = pod_certs.wait_answered(api_client, version, namespace, made["metadata"]["name"])[
            "status"
        ]
        not_before, not_after, refresh = (
            datetime.fromisoformat(status[key])
            for key in ("notBefore", "notAfter", "beginRefreshAt")
        )
        assert (not_after - not_before).total_seconds() == 7200
        assert (not_after - refresh).total_seconds() == 1800
        # What Kubernetes would refuse is refused at apply time, naming the field.
        with pytest.raises(client.ApiException) as refused:
            client.CustomObjectsApi(api_client).patch_cluster_custom_object(
                *CA, name, {"spec": {"podCertificates": {"maxDuration": "30m"}}}
            )
        assert "maxDuration must be from 1h to 2184h" in str(refused.value.body)
        with pytest.raises(client.ApiException) as refused:
            client.CustomObjectsApi(api_client).patch_cluster_custom_object(
                *CA, name, {"spec": {"podCertificates": {"renewBefore": "1h55m"}}}
            )
        assert "renewBefore must leave 10m after notBefore" in str(refused.value.body)
    finally:
        delete_authority(api_client, name)


def _create_again(api_client: client.ApiClient, name: str, spec: dict[str, Any]) -> None:
    """Delete the authority (not its Secrets), wait until it is gone, create it again."""
    objects = client.CustomObjectsApi(api_client)
    objects.delete_cluster_custom_object(*CA, name)
    wait_for(
        lambda: not any(
            item["metadata"]["name"] == name
            for item in objects.list_cluster_custom_object(*CA)["items"]
        ),
        timeout=15,
        what=f"{name} deleted",
    )
    objects.create_cluster_custom_object(
        *CA,
        {
            "apiVersion": "certsmith.dev/v1alpha1",
            "kind": "CertificateAuthority",
            "metadata": {"name": name},
            "spec": spec,
        },
    )


def _cluster_trust_bundle_pem(api_client: client.ApiClient, name: str) -> bytes | None:
    """The trust bundle of the authority's ClusterTrustBundle; None where none is served."""
    version = served_version(api_client, "clustertrustbundles")
    if version is None:
        return None
    found = client.CustomObjectsApi(api_client).get_cluster_custom_object(
        "certificates.k8s.io", version, "clustertrustbundles", f"certsmith.dev:{name}:roots"
    )
    return str(found["spec"]["trustBundle"]).encode()


def _fingerprints(pem: bytes) -> list[str]:
    return [fingerprint(c) for c in x509.load_pem_x509_certificates(pem)]


def _verifies(body: dict[str, Any], roots_pem: bytes) -> bool:
    output = pod_certs.openssl_verify(pod_certs.chain_of(body), roots_pem, "sslserver")
    return output.strip().endswith("OK")


def test_an_authority_created_again_records_its_refresh_bound_again(
    api_client: client.ApiClient,
    running_operator: OperatorProcess,
    namespace: str,
    node: str,
    version: str,
) -> None:
    """Deleted and created again, it resumes with the same root (its Secrets stay) and the
    refresh bound recorded before, which a rotation then waits for: the pod certificates
    it signed are still valid and still held by pods."""
    spec = {"rotation": {"propagationDelay": "5s"}}
    name = create_authority(api_client, **spec)
    try:
        workload = Workload(api_client, namespace, node, f"certsmith.dev/{name}")
        pod = workload.pod()
        made = workload.request(version, pod)
        signed = pod_certs.wait_answered(api_client, version, namespace, made["metadata"]["name"])
        old = fingerprint(x509.load_pem_x509_certificate(root_pem(api_client, f"{name}-root")))
        first = wait_for(
            lambda: _refresh_bounds(api_client, name), timeout=10, what="the bound in status"
        )
        assert list(first) == [old]
        _create_again(api_client, name, spec)
        wait_for(lambda: authority_ready(api_client, name), timeout=30, what=f"{name} Ready")
        # Before any new request: the bound is the one recorded before the deletion.
        wait_for(
            lambda: _refresh_bounds(api_client, name) == first,
            timeout=15,
            what="the recorded bound back in status",
        )
        made = workload.request(version, pod)
        pod_certs.wait_answered(api_client, version, namespace, made["metadata"]["name"])
        assert _refresh_bounds(api_client, name).keys() == first.keys()  # the same root
        # The signer raised the bound before answering; a minute may have passed since the
        # first request, so it may be later than the first, never earlier.
        latest = _recorded_bound(api_client, f"{name}-root")
        assert latest >= first[old]

        client.CustomObjectsApi(api_client).patch_cluster_custom_object(
            *CA, name, {"metadata": {"annotations": {"certsmith.dev/rotate-requested-at": "1"}}}
        )
        found = wait_for(
            lambda: _pod_certificate_blocker(api_client, name),
            timeout=60,
            what="pod certificates named as the blocker",
        )
        assert found["status"]["phase"] == "Reissuing"
        assert f"up to {latest}" in found["status"]["rotation"]["blockers"][0]
        bundle = _cluster_trust_bundle_pem(api_client, name)
        if bundle is not None:  # both roots, so the certificate signed before still verifies
            assert old in _fingerprints(bundle) and len(_fingerprints(bundle)) == 2
            assert _verifies(signed, bundle)
    finally:
        delete_authority(api_client, name)


def test_an_authority_deleted_mid_rotation_and_created_again_resumes_the_rotation(
    api_client: client.ApiClient,
    running_operator: OperatorProcess,
    namespace: str,
    node: str,
    version: str,
) -> None:
    """Deleted while Reissuing, with a pod certificate signed under the new root, then
    created again: it finds the rotation's new root and carries the rotation on (both
    roots trusted, said by an event) to the end, instead of going back to the old root."""
    spec = {"rotation": {"propagationDelay": "5s"}}
    name = create_authority(api_client, **spec)
    try:
        old = fingerprint(x509.load_pem_x509_certificate(root_pem(api_client, f"{name}-root")))
        client.CustomObjectsApi(api_client).patch_cluster_custom_object(
            *CA, name, {"metadata": {"annotations": {"certsmith.dev/rotate-requested-at": "1"}}}
        )
        wait_for(lambda: _phase(api_client, name) == "Reissuing", timeout=60, what="Reissuing")
        new_root = root_pem(api_client, f"{name}-root-next")
        new = fingerprint(x509.load_pem_x509_certificate(new_root))
        workload = Workload(api_client, namespace, node, f"certsmith.dev/{name}")
        made = workload.request(version, workload.pod())
        signed = pod_certs.wait_answered(api_client, version, namespace, made["metadata"]["name"])
        assert _verifies(signed, new_root)

        _create_again(api_client, name, spec)
        resumed = wait_for(
            lambda: (_authority(api_client, name).get("status") or {}).get("rotation"),
            timeout=15,
            what="status.rotation of the authority created again",
        )
        status = _authority(api_client, name)["status"]
        assert (resumed["oldRootFingerprint"], resumed["newRootFingerprint"]) == (old, new)
        assert status["trustedRoots"] == [old, new]
        assert status["phase"] == "Distributing"
        events = client.CoreV1Api(api_client).list_event_for_all_namespaces(
            field_selector=f"involvedObject.name={name},reason=RotationResumed"
        )
        assert events.items and new in events.items[0].message
        bundle = _cluster_trust_bundle_pem(api_client, name)
        if bundle is not None:
            assert _fingerprints(bundle) == [old, new]

        def ended() -> dict[str, Any] | None:
            found = _authority(api_client, name).get("status") or {}
            return found if found.get("phase") == "Ready" else None

        status = wait_for(ended, timeout=90, what="the rotation carried on to the end")
        assert status["trustedRoots"] == [new] and status["root"]["fingerprint"] == new
        assert list(_refresh_bounds(api_client, name)) == [new]  # the old root's entry gone
        bundle = _cluster_trust_bundle_pem(api_client, name)
        if bundle is not None:
            bundle = wait_for(
                lambda: (pem := _cluster_trust_bundle_pem(api_client, name))
                and _fingerprints(pem) == [new]
                and pem,
                timeout=15,
                what="the new root alone in the ClusterTrustBundle",
            )
            assert _verifies(signed, bundle)
        secrets = client.CoreV1Api(api_client).list_namespaced_secret(OPERATOR_NAMESPACE)
        assert f"{name}-root-next" not in {s.metadata.name for s in secrets.items}
    finally:
        delete_authority(api_client, name)


def test_requests_pending_while_the_operator_is_down_are_signed_once_after_it_restarts(
    api_client: client.ApiClient,
    running_operator: OperatorProcess,
    workload: Workload,
    version: str,
) -> None:
    pod = workload.pod()
    watcher = pod_certs.RequestWatch(api_client, version, workload.namespace)
    try:
        running_operator.kill()
        names = [workload.request(version, pod)["metadata"]["name"] for _ in range(30)]
        running_operator.start()
        # Killed again mid-way, once it has answered some of them.
        wait_for(
            lambda: any(name in watcher.answered_at for name in names),
            timeout=60,
            what="the restarted operator answering",
            interval=0.01,
        )
        running_operator.kill()
        answered_before = sum(name in watcher.answered_at for name in names)
        names += [workload.request(version, pod)["metadata"]["name"] for _ in range(5)]
        running_operator.start()
        watcher.wait(names, timeout=60)
        time.sleep(2)  # a second answer, if any, would show by now
    finally:
        watcher.stop()
    print(f"\n{answered_before} of 30 answered before the second kill; {len(names)} in all")
    serials = set()
    for name in names:
        assert watcher.status_changes(name) == 1, watcher.statuses[name]
        body = pod_certs.get_request(api_client, version, workload.namespace, name)
        condition = pod_certs.answer(body)
        assert condition is not None and condition["type"] == "Issued", condition
        serials.add(pod_certs.chain_of(body)[0].serial_number)
    assert len(serials) == len(names)
    running_operator.wait_serving(api_client)


def _authority(api_client: client.ApiClient, name: str) -> dict[str, Any]:
    found: dict[str, Any] = client.CustomObjectsApi(api_client).get_cluster_custom_object(*CA, name)
    return found


def _refresh_bounds(api_client: client.ApiClient, name: str) -> dict[str, str]:
    status = _authority(api_client, name).get("status") or {}
    entries = (status.get("podCertificates") or {}).get("refreshBy") or []
    return {entry["rootFingerprint"]: entry["time"] for entry in entries}


@pytest.fixture
def rotating_authority(api_client: client.ApiClient) -> Iterator[str]:
    """An authority of the test's own that rotates quickly, removed with its keys after."""
    name = create_authority(api_client, rotation={"propagationDelay": "15s"})
    yield name
    delete_authority(api_client, name)


def _phase(api_client: client.ApiClient, name: str) -> str:
    return str((_authority(api_client, name).get("status") or {}).get("phase"))


def _recorded_bound(api_client: client.ApiClient, secret: str) -> str:
    """The refresh bound recorded on one of an authority's root Secrets ('' if none)."""
    found = client.CoreV1Api(api_client).read_namespaced_secret(secret, OPERATOR_NAMESPACE)
    annotations = found.metadata.annotations or {}
    return str(annotations.get("certsmith.dev/pod-certificates-refresh-by", ""))


def _pod_certificate_blocker(api_client: client.ApiClient, name: str) -> dict[str, Any] | None:
    """The authority once its rotation names pod certificates as what blocks it."""
    found = _authority(api_client, name)
    blockers = ((found.get("status") or {}).get("rotation") or {}).get("blockers") or []
    return found if any(b.startswith("pod certificates: ") for b in blockers) else None


def test_a_root_rotation_moves_pod_certificates_to_the_new_root_and_waits_for_their_refresh(
    api_client: client.ApiClient,
    running_operator: OperatorProcess,
    workload: Workload,
    version: str,
    rotating_authority: str,
) -> None:
    name, namespace = rotating_authority, workload.namespace
    signer = f"certsmith.dev/{name}"
    pod = workload.pod()
    old_root = root_pem(api_client, f"{name}-root")
    old = fingerprint(x509.load_pem_x509_certificate(old_root))

    ready = workload.request(version, pod, signer=signer, max_expiration_seconds=3600)
    body = pod_certs.wait_answered(api_client, version, namespace, ready["metadata"]["name"])
    refresh = datetime.fromisoformat(body["status"]["beginRefreshAt"])
    not_before = datetime.fromisoformat(body["status"]["notBefore"])
    assert (refresh - not_before).total_seconds() == 2400  # 2/3 of an hour
    # Recorded before the answer on the root's Secret (it outlives the authority), rounded
    # up to the minute; shown in status.
    bound = datetime.fromisoformat(_recorded_bound(api_client, f"{name}-root"))
    wait_for(
        lambda: _refresh_bounds(api_client, name)
        == {old: _recorded_bound(api_client, f"{name}-root")},
        timeout=10,
        what="the bound shown in status",
    )
    assert refresh <= bound < refresh + timedelta(minutes=1) and bound.timestamp() % 60 == 0

    client.CustomObjectsApi(api_client).patch_cluster_custom_object(
        *CA,
        name,
        {"metadata": {"annotations": {"certsmith.dev/rotate-requested-at": "now"}}},
    )
    wait_for(lambda: _phase(api_client, name) == "Distributing", timeout=15, what="Distributing")
    distributing = workload.request(version, pod, signer=signer)
    body = pod_certs.wait_answered(api_client, version, namespace, distributing["metadata"]["name"])
    status = body["status"]
    # Back as early as Kubernetes allows: the pod will ask again under the new root.
    assert (
        datetime.fromisoformat(status["beginRefreshAt"])
        - datetime.fromisoformat(status["notBefore"])
    ).total_seconds() == 600
    assert (
        pod_certs.openssl_verify(pod_certs.chain_of(body), old_root, "sslserver")
        .strip()
        .endswith("OK")
    )
    assert _phase(api_client, name) == "Distributing"

    wait_for(lambda: _phase(api_client, name) == "Reissuing", timeout=60, what="Reissuing")
    new_root = root_pem(api_client, f"{name}-root-next")
    reissuing = workload.request(version, pod, signer=signer)
    body = pod_certs.wait_answered(api_client, version, namespace, reissuing["metadata"]["name"])
    chain = pod_certs.chain_of(body)
    assert pod_certs.openssl_verify(chain, new_root, "sslserver").strip().endswith("OK")
    assert not pod_certs.openssl_verify(chain, old_root, "sslserver").strip().endswith("OK")
    assert _recorded_bound(api_client, f"{name}-root-next")
    wait_for(
        lambda: set(_refresh_bounds(api_client, name))
        == {old, fingerprint(x509.load_pem_x509_certificate(new_root))},
        timeout=10,
        what="both roots' bounds in status",
    )

    # No Certificate holds it: only the pod certificates under the old root do, until
    # kubelets have refreshed them, also across a restart of the operator.
    running_operator.kill()
    running_operator.start()
    running_operator.wait_serving(api_client)

    found = wait_for(
        lambda: _pod_certificate_blocker(api_client, name),
        timeout=60,
        what="pod certificates named as the blocker",
    )
    status = found["status"]
    assert status["phase"] == "Reissuing"
    assert status["rotation"]["leavesOnOldRoot"] == 0
    (blocker,) = status["rotation"]["blockers"]
    assert f"up to {_refresh_bounds(api_client, name)[old]}" in blocker
    condition = next(c for c in status["conditions"] if c["type"] == "RotationBlocked")
    assert condition["status"] == "True" and "pod certificates" in condition["message"]


def test_an_authority_created_again_is_not_denied_for_its_earlier_absence(
    api_client: client.ApiClient,
    running_operator: OperatorProcess,
    version: str,
    workload: Workload,
) -> None:
    """A request for an authority that does not exist is Denied (final); one made right
    after the authority is created again must wait for it to load and be Issued, not be
    denied on what the operator saw before."""
    name = create_authority(api_client)
    delete_authority(api_client, name)
    # The operator learns of the deletion from its watch, a moment later; a request made
    # before that is signed by the authority it still holds (CI saw Issued here).
    wait_for(
        lambda: not metric(
            running_operator, f'certsmith_authority_rotation_phase{{authority="{name}"'
        ),
        timeout=30,
        what=f"the operator to unload {name}",
    )
    pod = workload.pod()
    signer = f"certsmith.dev/{name}"
    absent = workload.request(version, pod, signer=signer)
    denied = pod_certs.wait_answered(
        api_client, version, workload.namespace, absent["metadata"]["name"]
    )
    assert pod_certs.answer(denied)["reason"] == "AuthorityNotFound"
    try:
        client.CustomObjectsApi(api_client).create_cluster_custom_object(
            *CA,
            {
                "apiVersion": "certsmith.dev/v1alpha1",
                "kind": "CertificateAuthority",
                "metadata": {"name": name},
                "spec": {},
            },
        )
        made = workload.request(version, pod, signer=signer)
        # It may first wait on a problem of the new authority's first step, looked at again
        # every 30 s (NOT_READY_RETRY): an answer within that, and Issued, is what counts.
        body = pod_certs.wait_answered(
            api_client, version, workload.namespace, made["metadata"]["name"], timeout=45
        )
        assert pod_certs.answer(body)["type"] == "Issued", pod_certs.answer(body)
    finally:
        delete_authority(api_client, name)


def test_a_request_waiting_on_an_authority_that_cannot_sign_is_answered_once_it_can(
    api_client: client.ApiClient,
    running_operator: OperatorProcess,
    version: str,
    workload: Workload,
) -> None:
    """A request whose authority cannot sign waits (a problem is looked at again only every
    30 s); once the authority is fixed, the request is signed then, not at the next look."""
    name = f"pods-{uuid.uuid4().hex[:6]}"
    objects = client.CustomObjectsApi(api_client)
    objects.create_cluster_custom_object(
        *CA,
        {
            "apiVersion": "certsmith.dev/v1alpha1",
            "kind": "CertificateAuthority",
            "metadata": {"name": name},
            "spec": {"rootSecretRef": {"name": f"{name}-missing"}},
        },
    )
    try:
        wait_for(
            lambda: any(
                c["type"] == "Ready" and c["status"] == "False"
                for c in (objects.get_cluster_custom_object(*CA, name).get("status") or {}).get(
                    "conditions", []
                )
            ),
            timeout=30,
            what=f"{name} not Ready (its root Secret does not exist)",
        )
        made = workload.request(version, workload.pod(), signer=f"certsmith.dev/{name}")
        waits = f"PodCertificateRequest {workload.namespace}/{made['metadata']['name']} waits"
        wait_for(
            lambda: waits in running_operator.log_path.read_text(errors="replace"),
            timeout=30,
            what="the operator to look at the request and let it wait",
        )
        fixed = time.monotonic()
        objects.patch_cluster_custom_object(*CA, name, {"spec": {"rootSecretRef": None}})
        body = pod_certs.wait_answered(
            api_client, version, workload.namespace, made["metadata"]["name"], timeout=60
        )
        assert pod_certs.answer(body)["type"] == "Issued", pod_certs.answer(body)
        # Well before the next look of a waiting request (NOT_READY_RETRY, 30 s).
        assert time.monotonic() - fixed < 25
    finally:
        delete_authority(api_client, name)
