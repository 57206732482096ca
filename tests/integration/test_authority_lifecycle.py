"""Authorities and CA keys that go away or change under certsmith, roots users bring, and a
cluster without certsmith's namespace: on the real apiserver, checked with openssl."""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from kubernetes import client

from tests.integration import certs
from tests.integration.conftest import OPERATOR_NAMESPACE, _grant_test_names
from tests.integration.test_operability import scrape
from tests.support import wait_for

pytestmark = pytest.mark.integration

CA_API = ("certsmith.dev", "v1alpha1", "certificateauthorities")


def get_authority(api_client: client.ApiClient, name: str) -> dict[str, Any] | None:
    try:
        return client.CustomObjectsApi(api_client).get_cluster_custom_object(*CA_API, name)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise


def authority_ready(api_client: client.ApiClient, name: str) -> dict[str, str] | None:
    """The authority's Ready condition (whatever its status), once it has one."""
    body = get_authority(api_client, name)
    return certs.condition(body) if body else None


create_authority = certs.create_authority


def delete_authority(api_client: client.ApiClient, name: str) -> None:
    client.CustomObjectsApi(api_client).delete_cluster_custom_object(*CA_API, name)
    wait_for(lambda: get_authority(api_client, name) is None, timeout=15, what=f"{name} gone")


def not_ready(api_client: client.ApiClient, namespace: str, name: str, reason: str):
    """The Certificate's Ready condition once it is False with `reason`."""
    cond = certs.condition(certs.get(api_client, namespace, name))
    if cond and cond["status"] == "False" and cond["reason"] == reason:
        return cond
    return None


def authority_events(api_client: client.ApiClient, name: str) -> list[client.CoreV1Event]:
    return [
        event
        for event in client.CoreV1Api(api_client).list_namespaced_event("default").items
        if event.involved_object.kind == "CertificateAuthority"
        and event.involved_object.name == name
    ]


def ca_secret(api_client: client.ApiClient, name: str) -> client.V1Secret | None:
    try:
        return client.CoreV1Api(api_client).read_namespaced_secret(name, OPERATOR_NAMESPACE)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise


def fingerprint(pem: bytes) -> str:
    return x509.load_pem_x509_certificates(pem)[0].fingerprint(hashes.SHA256()).hex()


def openssl_verify(sec: client.V1Secret, directory: Path) -> subprocess.CompletedProcess[str]:
    """`openssl verify` of the Secret's leaf against its ca.crt, via the intermediate it ships."""
    chain = x509.load_pem_x509_certificates(certs.secret_bytes(sec, "tls.crt"))
    leaf, untrusted, roots = directory / "leaf.pem", directory / "chain.pem", directory / "ca.pem"
    leaf.write_bytes(chain[0].public_bytes(serialization.Encoding.PEM))
    untrusted.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain[1:]))
    roots.write_bytes(certs.secret_bytes(sec, "ca.crt"))
    return subprocess.run(
        ["openssl", "verify", "-CAfile", str(roots), "-untrusted", str(untrusted), str(leaf)],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def authority_name(api_client, running_operator) -> Iterator[str]:
    """A name for an authority of the test's own; it and its CA Secrets are removed after."""
    name = f"team-{uuid.uuid4().hex[:8]}"
    yield name
    if get_authority(api_client, name) is not None:
        delete_authority(api_client, name)
    client.CoreV1Api(api_client).delete_collection_namespaced_secret(
        OPERATOR_NAMESPACE, label_selector=f"certsmith.dev/authority={name}"
    )


# --- item 9: deletion ------------------------------------------------------------------


def test_a_deleted_authority_signs_nothing_until_it_is_created_again(
    api_client, namespace, authority_name, tmp_path
):
    team = authority_name
    create_authority(api_client, team)
    wait_for(
        lambda: (authority_ready(api_client, team) or {}).get("status") == "True",
        timeout=20,
        what="authority Ready",
    )
    certs.create(
        api_client,
        namespace,
        certs.certificate("old", dnsNames=[f"old.{namespace}.svc"], issuerRef={"name": team}),
    )
    wait_for(lambda: certs.is_ready(api_client, namespace, "old"), timeout=20, what="old Ready")
    old_secret = certs.secret(api_client, namespace, "old-tls")

    delete_authority(api_client, team)

    message = f"CertificateAuthority {team} does not exist"
    cond = wait_for(
        lambda: not_ready(api_client, namespace, "old", "IssuerNotReady"),
        timeout=20,
        what="the existing Certificate told its authority is gone",
    )
    assert cond["message"] == message
    certs.create(
        api_client,
        namespace,
        certs.certificate("new", dnsNames=[f"new.{namespace}.svc"], issuerRef={"name": team}),
    )
    cond = wait_for(
        lambda: not_ready(api_client, namespace, "new", "IssuerNotReady"),
        timeout=20,
        what="a new Certificate refused",
    )
    assert cond["message"] == message
    time.sleep(3)  # what would have been issued by now
    with pytest.raises(client.ApiException) as missing:
        certs.secret(api_client, namespace, "new-tls")
    assert missing.value.status == 404
    kept = certs.secret(api_client, namespace, "old-tls")
    assert kept.metadata.resource_version == old_secret.metadata.resource_version
    assert ca_secret(api_client, f"{team}-root") is not None  # keys kept on purpose

    create_authority(api_client, team)

    wait_for(lambda: certs.is_ready(api_client, namespace, "old"), timeout=30, what="old back")
    wait_for(lambda: certs.is_ready(api_client, namespace, "new"), timeout=30, what="new signed")
    again = certs.secret(api_client, namespace, "old-tls")
    assert again.data == old_secret.data  # same root, nothing re-issued
    result = openssl_verify(certs.secret(api_client, namespace, "new-tls"), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_deleted_objects_leave_no_metrics_behind(
    api_client, namespace, authority_name, running_operator
):
    """What certsmith keeps about an object (here: its series) goes when the object goes."""
    port = running_operator.metrics_port
    create_authority(api_client, authority_name)
    wait_for(
        lambda: (authority_ready(api_client, authority_name) or {}).get("status") == "True",
        timeout=20,
        what="authority Ready",
    )
    certs.create(api_client, namespace, certs.certificate("web", dnsNames=[f"web.{namespace}.svc"]))
    wait_for(lambda: certs.is_ready(api_client, namespace, "web"), timeout=20, what="Ready")
    ready = ("certsmith_certificate_ready", (("name", "web"), ("namespace", namespace)))
    role = (
        "certsmith_authority_expiration_timestamp_seconds",
        (("authority", authority_name), ("role", "root")),
    )
    wait_for(lambda: ready in scrape(port) and role in scrape(port), timeout=10, what="series")

    client.CustomObjectsApi(api_client).delete_namespaced_custom_object(
        certs.GROUP, certs.VERSION, namespace, certs.PLURAL, "web"
    )
    delete_authority(api_client, authority_name)

    wait_for(lambda: ready not in scrape(port), timeout=15, what="Certificate series gone")
    wait_for(lambda: role not in scrape(port), timeout=15, what="authority series gone")


def test_deleting_cluster_root_brings_it_back_with_the_same_keys(
    api_client, namespace, running_operator
):
    before = get_authority(api_client, "cluster-root")
    assert before is not None
    roots = before["status"]["trustedRoots"]
    intermediate = before["status"]["intermediate"]["fingerprint"]
    try:
        # Not waiting for a 404 in between: the operator may recreate it before we look.
        client.CustomObjectsApi(api_client).delete_cluster_custom_object(*CA_API, "cluster-root")

        def back() -> dict[str, Any] | None:
            body = get_authority(api_client, "cluster-root")
            if body is None or body["metadata"]["uid"] == before["metadata"]["uid"]:
                return None
            cond = certs.condition(body)
            return body if cond and cond["status"] == "True" else None

        body = wait_for(back, timeout=30, what="cluster-root recreated and Ready")
        assert body["status"]["trustedRoots"] == roots
        assert body["status"]["intermediate"]["fingerprint"] == intermediate
    finally:
        _grant_test_names(api_client)  # the recreated object has an empty spec
    certs.create(api_client, namespace, certs.certificate("web", dnsNames=[f"web.{namespace}.svc"]))
    wait_for(lambda: certs.is_ready(api_client, namespace, "web"), timeout=20, what="Ready")
    bundle = certs.secret_bytes(certs.secret(api_client, namespace, "web-tls"), "ca.crt")
    trusted = [
        c.fingerprint(hashes.SHA256()).hex() for c in x509.load_pem_x509_certificates(bundle)
    ]
    assert trusted == roots


def test_lost_or_edited_ca_secrets_never_sign(api_client, namespace, authority_name, tmp_path):
    team = authority_name
    core = client.CoreV1Api(api_client)
    create_authority(api_client, team)
    wait_for(
        lambda: (authority_ready(api_client, team) or {}).get("status") == "True",
        timeout=20,
        what="authority Ready",
    )
    first = get_authority(api_client, team)["status"]

    # The intermediate deleted: a new one under the same root, at once.
    core.delete_namespaced_secret(f"{team}-intermediate", OPERATOR_NAMESPACE)
    replaced = wait_for(
        lambda: ca_secret(api_client, f"{team}-intermediate"), timeout=15, what="new intermediate"
    )
    new_intermediate = fingerprint(base64.b64decode(replaced.data["tls.crt"]))
    assert new_intermediate != first["intermediate"]["fingerprint"]
    wait_for(
        lambda: get_authority(api_client, team)["status"]["intermediate"]["fingerprint"]
        == new_intermediate,
        timeout=15,
        what="status names the new intermediate",
    )
    assert get_authority(api_client, team)["status"]["trustedRoots"] == first["trustedRoots"]

    # The intermediate hand-edited into garbage: replaced too.
    core.patch_namespaced_secret(
        f"{team}-intermediate",
        OPERATOR_NAMESPACE,
        {"data": {"tls.crt": base64.b64encode(b"edited by hand").decode()}},
    )
    wait_for(
        lambda: b"BEGIN CERTIFICATE"
        in base64.b64decode(ca_secret(api_client, f"{team}-intermediate").data["tls.crt"]),
        timeout=15,
        what="edited intermediate replaced",
    )
    certs.create(
        api_client,
        namespace,
        certs.certificate("web", dnsNames=[f"web.{namespace}.svc"], issuerRef={"name": team}),
    )
    wait_for(lambda: certs.is_ready(api_client, namespace, "web"), timeout=20, what="web Ready")
    result = openssl_verify(certs.secret(api_client, namespace, "web-tls"), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr

    # The root deleted: the authority stops, and no other root takes its place.
    saved = ca_secret(api_client, f"{team}-root")
    core.delete_namespaced_secret(f"{team}-root", OPERATOR_NAMESPACE)

    def stopped() -> dict[str, str] | None:
        cond = authority_ready(api_client, team)
        return cond if cond and cond["reason"] == "RootMissing" else None

    cond = wait_for(stopped, timeout=15, what="authority not Ready")
    assert cond["status"] == "False"
    assert cond["message"].startswith(
        f"Secret {OPERATOR_NAMESPACE}/{team}-root holding the root this authority trusts is gone"
    )
    assert ca_secret(api_client, f"{team}-root") is None
    assert any(
        e.reason == "RootMissing" and e.type == "Warning"
        for e in authority_events(api_client, team)
    )
    certs.create(
        api_client,
        namespace,
        certs.certificate("late", dnsNames=[f"late.{namespace}.svc"], issuerRef={"name": team}),
    )
    late = wait_for(
        lambda: not_ready(api_client, namespace, "late", "IssuerNotReady"),
        timeout=20,
        what="late refused",
    )
    assert late["message"].startswith(f"CertificateAuthority {team} is not ready: Secret ")

    # Restored from the backup: it signs again, under the same root.
    core.create_namespaced_secret(
        OPERATOR_NAMESPACE,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=saved.metadata.name, labels=saved.metadata.labels),
            type=saved.type,
            data=saved.data,
        ),
    )
    wait_for(lambda: certs.is_ready(api_client, namespace, "late"), timeout=40, what="late signed")
    assert get_authority(api_client, team)["status"]["trustedRoots"] == first["trustedRoots"]


# --- CA Secrets edited, immutable, borrowed; a broken default authority at start -------


def ready_with(api_client: client.ApiClient, name: str, status: str, reason: str):
    cond = authority_ready(api_client, name)
    return cond if cond and (cond["status"], cond["reason"]) == (status, reason) else None


def test_a_ca_secret_missing_a_mark_is_still_used_and_marked_again(
    api_client, namespace, authority_name
):
    team = authority_name
    core = client.CoreV1Api(api_client)
    create_authority(api_client, team)
    wait_for(lambda: ready_with(api_client, team, "True", "Ready"), timeout=20, what="Ready")
    before = ca_secret(api_client, f"{team}-intermediate")

    core.patch_namespaced_secret(
        f"{team}-intermediate",
        OPERATOR_NAMESPACE,
        {"metadata": {"labels": {"certsmith.dev/role": None}}},
    )

    def marked_again() -> client.V1Secret | None:
        found = ca_secret(api_client, f"{team}-intermediate")
        return found if (found.metadata.labels or {}).get("certsmith.dev/role") else None

    restored = wait_for(marked_again, timeout=15, what="the removed label put back")
    assert restored.metadata.labels["certsmith.dev/role"] == "intermediate"
    assert restored.metadata.annotations["certsmith.dev/authority"] == team
    assert restored.data == before.data  # the same intermediate, nothing re-issued
    cond = authority_ready(api_client, team)
    assert (cond["status"], cond["reason"]) == ("True", "Ready")

    # A Secret of that name with no CA mark at all is not certsmith's: CASecretConflict.
    core.delete_namespaced_secret(f"{team}-intermediate", OPERATOR_NAMESPACE)
    wait_for(lambda: ca_secret(api_client, f"{team}-intermediate"), timeout=15, what="reissued")
    core.patch_namespaced_secret(
        f"{team}-intermediate",
        OPERATOR_NAMESPACE,
        {
            "metadata": {
                "labels": {"certsmith.dev/role": None, "certsmith.dev/authority": None},
                "annotations": {"certsmith.dev/role": None, "certsmith.dev/authority": None},
            }
        },
    )
    cond = wait_for(
        lambda: ready_with(api_client, team, "False", "CASecretConflict"),
        timeout=15,
        what="CASecretConflict",
    )
    assert "carries no certsmith CA mark" in cond["message"]
    assert f"{OPERATOR_NAMESPACE}/{team}-intermediate" in cond["message"]


def test_a_supplied_root_may_not_be_another_authoritys_secret(api_client, authority_name):
    create_authority(api_client, authority_name, rootSecretRef={"name": "cluster-root-root"})
    cond = wait_for(
        lambda: ready_with(api_client, authority_name, "False", "CASecretConflict"),
        timeout=20,
        what="the borrowed root refused",
    )
    assert cond["message"].startswith(
        f"spec.rootSecretRef: Secret {OPERATOR_NAMESPACE}/cluster-root-root is the root of "
        "CertificateAuthority cluster-root, created by certsmith"
    )
    assert "trustedRoots" not in (get_authority(api_client, authority_name)["status"] or {})


def test_an_immutable_intermediate_is_replaced_when_due(api_client, authority_name):
    team = authority_name
    core = client.CoreV1Api(api_client)
    create_authority(api_client, team, rotation={"propagationDelay": "1s"})
    wait_for(lambda: ready_with(api_client, team, "True", "Ready"), timeout=20, what="Ready")
    first = get_authority(api_client, team)["status"]["intermediate"]["fingerprint"]
    core.patch_namespaced_secret(f"{team}-intermediate", OPERATOR_NAMESPACE, {"immutable": True})

    # A rotation moves signing to the new root: the intermediate must be replaced.
    client.CustomObjectsApi(api_client).patch_cluster_custom_object(
        *CA_API,
        team,
        {
            "metadata": {
                "annotations": {"certsmith.dev/rotate-requested-at": "2030-01-01T00:00:00Z"}
            }
        },
    )

    def replaced() -> client.V1Secret | None:
        found = ca_secret(api_client, f"{team}-intermediate")
        if found is None or fingerprint(base64.b64decode(found.data["tls.crt"])) == first:
            return None
        return found

    stored = wait_for(replaced, timeout=60, what="the immutable intermediate replaced")
    assert not stored.immutable
    wait_for(
        lambda: get_authority(api_client, team)["status"].get("phase") == "Ready"
        and ready_with(api_client, team, "True", "Ready"),
        timeout=60,
        what="rotation finished, Ready",
    )
    assert not [e for e in authority_events(api_client, team) if e.reason == "CASecretWriteFailed"]


def bundle_of(core: client.CoreV1Api, namespace: str) -> client.V1ConfigMap | None:
    try:
        return core.read_namespaced_config_map("certsmith-ca", namespace)
    except client.ApiException:
        return None


def held_by_cluster_root(
    core: client.CoreV1Api, namespace: str, good: str
) -> client.V1ConfigMap | None:
    """The bundle once it holds cluster-root's roots under cluster-root's label and annotation."""
    found = bundle_of(core, namespace)
    if (
        found is not None
        and (found.data or {}).get("ca.crt") == good
        and (found.metadata.labels or {}).get("certsmith.dev/trust-bundle") == "cluster-root"
        and (found.metadata.annotations or {}).get("certsmith.dev/trust-bundle") == "cluster-root"
    ):
        return found
    return None


def bundle_conflict(api_client, authority: str, namespace: str) -> dict[str, Any] | None:
    """The authority's BundlesSynced condition once it is a BundleConflict naming the bundle."""
    synced = certs.condition(get_authority(api_client, authority), "BundlesSynced")
    if (
        synced
        and synced["status"] == "False"
        and synced["reason"] == "BundleConflict"
        and f"{namespace}/certsmith-ca" in synced["message"]
    ):
        return synced
    return None


def not_naming(api_client, authority: str, namespace: str) -> bool:
    synced = certs.condition(get_authority(api_client, authority), "BundlesSynced")
    return synced is None or f"{namespace}/certsmith-ca" not in synced["message"]


def test_a_relabelled_bundle_is_repaired_by_the_authority_its_annotation_names(
    api_client, namespace, authority_name
):
    """A mark naming an authority that is no candidate for the name (here one with no
    bundle at all) says only "certsmith's": cluster-root repairs label, annotation and data."""
    core = client.CoreV1Api(api_client)
    create_authority(api_client, authority_name)
    good = wait_for(lambda: bundle_of(core, namespace), timeout=20, what="bundle").data["ca.crt"]
    core.patch_namespaced_config_map(
        "certsmith-ca",
        namespace,
        {"metadata": {"labels": {"certsmith.dev/trust-bundle": authority_name}}},
    )
    core.patch_namespaced_config_map("certsmith-ca", namespace, {"data": {"ca.crt": "garbage"}})
    wait_for(lambda: held_by_cluster_root(core, namespace, good), timeout=15, what="repaired")

    core.patch_namespaced_config_map(
        "certsmith-ca",
        namespace,
        {
            "metadata": {"annotations": {"certsmith.dev/trust-bundle": authority_name}},
            "data": {"ca.crt": "garbage"},
        },
    )
    wait_for(
        lambda: held_by_cluster_root(core, namespace, good),
        timeout=15,
        what="bundle annotated for an authority without bundles repaired",
    )
    wait_for(
        lambda: not_naming(api_client, "cluster-root", namespace),
        timeout=20,
        what="cluster-root's BundlesSynced not naming the bundle",
    )


def test_a_bundle_relabelled_to_an_authority_with_another_bundle_is_repaired(
    api_client, namespace, authority_name
):
    """tb writes tb-ca, in namespaces other than this one: a certsmith-ca marked for tb is
    still cluster-root's to repair, and tb claims nothing here."""
    core = client.CoreV1Api(api_client)
    create_authority(
        api_client,
        authority_name,
        trustBundle={
            "configMapName": "tb-ca",
            "namespaceSelector": {"matchLabels": {"certsmith-test/never": "selected"}},
        },
    )
    wait_for(
        lambda: (authority_ready(api_client, authority_name) or {}).get("status") == "True",
        timeout=30,
        what=f"{authority_name} Ready",
    )
    good = wait_for(lambda: bundle_of(core, namespace), timeout=20, what="bundle").data["ca.crt"]
    marks = {"certsmith.dev/trust-bundle": authority_name}
    core.patch_namespaced_config_map(
        "certsmith-ca",
        namespace,
        {"metadata": {"labels": marks, "annotations": marks}, "data": {"ca.crt": "junk"}},
    )
    wait_for(lambda: held_by_cluster_root(core, namespace, good), timeout=15, what="repaired")
    wait_for(
        lambda: not_naming(api_client, "cluster-root", namespace),
        timeout=20,
        what="cluster-root's BundlesSynced not naming the bundle",
    )
    assert not_naming(api_client, authority_name, namespace)
    assert bundle_of(core, namespace) is not None
    assert (
        core.list_namespaced_config_map(namespace, field_selector="metadata.name=tb-ca").items == []
    )


def test_a_second_authority_claiming_certsmith_ca_never_takes_cluster_roots_bundles(
    api_client, namespace, authority_name
):
    """Two candidates for certsmith-ca in a namespace: the default authority is its rightful
    owner whatever the order of events; the other reports the conflict and never writes."""
    core = client.CoreV1Api(api_client)
    good = wait_for(lambda: bundle_of(core, namespace), timeout=20, what="bundle").data["ca.crt"]
    # Selecting this namespace alone keeps the conflict among the three BundlesSynced shows.
    core.patch_namespace(namespace, {"metadata": {"labels": {"certsmith-test/cc": "yes"}}})
    create_authority(
        api_client,
        authority_name,
        trustBundle={
            "configMapName": "certsmith-ca",
            "namespaceSelector": {"matchLabels": {"certsmith-test/cc": "yes"}},
        },
    )
    synced = wait_for(
        lambda: bundle_conflict(api_client, authority_name, namespace),
        timeout=30,
        what=f"{authority_name} BundleConflict",
    )
    assert "trust bundle of CertificateAuthority cluster-root" in synced["message"]
    assert "another spec.trustBundle.configMapName" in synced["message"]
    in_bundle = {
        root.fingerprint(hashes.SHA256()).hex()
        for root in x509.load_pem_x509_certificates(good.encode())
    }
    trusted = get_authority(api_client, "cluster-root")["status"]["trustedRoots"]
    assert {fingerprint.replace(":", "").lower() for fingerprint in trusted} == in_bundle
    others = get_authority(api_client, authority_name)["status"]["trustedRoots"]
    assert others and not {f.replace(":", "").lower() for f in others} & in_bundle

    core.delete_namespaced_config_map("certsmith-ca", namespace)
    wait_for(lambda: held_by_cluster_root(core, namespace, good), timeout=15, what="recreated")

    stripped = {"labels": {"certsmith.dev/trust-bundle": None}, "annotations": None}
    core.patch_namespaced_config_map(
        "certsmith-ca", namespace, {"metadata": stripped, "data": {"ca.crt": "junk"}}
    )
    repaired = wait_for(
        lambda: held_by_cluster_root(core, namespace, good), timeout=15, what="repaired"
    )
    time.sleep(3)  # the other authority has stepped meanwhile: it wrote nothing
    now = bundle_of(core, namespace)
    assert now is not None
    assert now.metadata.resource_version == repaired.metadata.resource_version
    assert not_naming(api_client, "cluster-root", namespace)
    assert bundle_conflict(api_client, authority_name, namespace) is not None


def test_a_lost_default_root_at_start_leaves_probes_and_the_webhook_answering(
    api_client, namespace, running_operator
):
    core = client.CoreV1Api(api_client)
    saved = ca_secret(api_client, "cluster-root-root")
    running_operator.kill()
    core.delete_namespaced_secret("cluster-root-root", OPERATOR_NAMESPACE)
    try:
        running_operator.start()
        wait_for(lambda: running_operator.healthz() == 200, timeout=30, what="/healthz 200")
        _, text = wait_for(
            lambda: (answer := running_operator.probe(running_operator.health_port, "readyz"))[0]
            == 503
            and "cluster-root-root" in answer[1]
            and answer,
            timeout=30,
            what="/readyz 503 naming the lost root",
        )
        assert "CertificateAuthority cluster-root is not ready: Secret " in text
        assert "holding the root this authority trusts is gone" in text
        # The webhook still answers with the certificate written before: a Certificate
        # passes the validating webhook (failurePolicy Fail) instead of being refused.
        certs.create(
            api_client, namespace, certs.certificate("web", dnsNames=[f"web.{namespace}.svc"])
        )
        assert running_operator.healthz() == 200
    finally:
        core.create_namespaced_secret(
            OPERATOR_NAMESPACE,
            client.V1Secret(
                metadata=client.V1ObjectMeta(
                    name="cluster-root-root",
                    labels=saved.metadata.labels,
                    annotations=saved.metadata.annotations,
                ),
                type=saved.type,
                data=saved.data,
            ),
        )
    running_operator.wait_ready(timeout=60, what="/readyz 200 again")
    wait_for(lambda: certs.is_ready(api_client, namespace, "web"), timeout=30, what="web Ready")


# --- item 15: roots users bring ---------------------------------------------------------

OPENSSL_CA_CONFIG = """
[ca]
default_ca = local
[local]
database = {dir}/index.txt
new_certs_dir = {dir}
serial = {dir}/serial
default_md = sha256
policy = anything
copy_extensions = none
[anything]
commonName = supplied
[root]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
"""


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def openssl_root(directory: Path, flaw: str) -> tuple[bytes, bytes]:
    """(certificate, key) PEM of a root made by openssl, with the flaw asked for."""
    directory.mkdir()
    openssl(
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        "key.pem",
        cwd=directory,
    )
    if flaw == "expired":
        # openssl 3.0's `req -x509` cannot date a certificate in the past; `ca -selfsign` can.
        (directory / "index.txt").write_text("")
        (directory / "serial").write_text("01\n")
        (directory / "ca.cnf").write_text(OPENSSL_CA_CONFIG.format(dir=directory))
        openssl(
            "req",
            "-new",
            "-key",
            "key.pem",
            "-subj",
            "/CN=supplied",
            "-out",
            "req.csr",
            cwd=directory,
        )
        openssl(
            "ca",
            "-config",
            "ca.cnf",
            "-selfsign",
            "-keyfile",
            "key.pem",
            "-in",
            "req.csr",
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20210101000000Z",
            "-extensions",
            "root",
            "-batch",
            "-notext",
            "-out",
            "root.pem",
            cwd=directory,
        )
    else:
        extensions = {
            "good": ["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign"],
            "pathlen0": [
                "basicConstraints=critical,CA:TRUE,pathlen:0",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
            "not-ca": ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature"],
            "no-keycertsign": [
                "basicConstraints=critical,CA:TRUE",
                "keyUsage=critical,digitalSignature,cRLSign",
            ],
            "other-key": [
                "basicConstraints=critical,CA:TRUE",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        }[flaw]
        options = [arg for ext in extensions for arg in ("-addext", ext)]
        openssl(
            "req",
            "-x509",
            "-new",
            "-key",
            "key.pem",
            "-subj",
            "/CN=supplied",
            "-days",
            "3650",
            *options,
            "-out",
            "root.pem",
            cwd=directory,
        )
    if flaw == "other-key":
        openssl(
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "key.pem",
            cwd=directory,
        )
    return (directory / "root.pem").read_bytes(), (directory / "key.pem").read_bytes()


@pytest.fixture
def supplied(api_client, authority_name) -> Iterator[str]:
    """The name of the user's root Secret for the test's authority; deleted after."""
    secret = f"{authority_name}-mine"
    yield secret
    with contextlib.suppress(client.ApiException):
        client.CoreV1Api(api_client).delete_namespaced_secret(secret, OPERATOR_NAMESPACE)


def store_root(api_client: client.ApiClient, name: str, cert: bytes, key: bytes) -> None:
    client.CoreV1Api(api_client).create_namespaced_secret(
        OPERATOR_NAMESPACE,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=name),
            type="kubernetes.io/tls",
            data={
                "tls.crt": base64.b64encode(cert).decode(),
                "tls.key": base64.b64encode(key).decode(),
            },
        ),
    )


@pytest.mark.parametrize(
    ("flaw", "problem"),
    [
        ("pathlen0", "cannot be a root: basicConstraints pathlen:0 allows no CA below the root"),
        ("not-ca", "cannot be a root: basicConstraints is CA:FALSE (not a CA certificate)"),
        ("no-keycertsign", "cannot be a root: keyUsage lacks keyCertSign"),
        ("other-key", "tls.key does not match tls.crt"),
        ("expired", "cannot be a root: expired at 2021-01-01T00:00:00Z"),
    ],
)
def test_a_flawed_supplied_root_is_refused_naming_the_flaw(
    api_client, namespace, authority_name, supplied, tmp_path, flaw, problem
):
    cert, key = openssl_root(tmp_path / "root", flaw)
    store_root(api_client, supplied, cert, key)
    create_authority(api_client, authority_name, rootSecretRef={"name": supplied})

    cond = wait_for(
        lambda: authority_ready(api_client, authority_name), timeout=20, what="a verdict"
    )
    assert (cond["status"], cond["reason"]) == ("False", "InvalidRoot")
    assert cond["message"].startswith("spec.rootSecretRef: ")
    assert problem in cond["message"]
    events = wait_for(
        lambda: [e for e in authority_events(api_client, authority_name) if e.type == "Warning"],
        timeout=10,
        what="a Warning event",
    )
    assert events[0].reason == "InvalidRoot" and problem in events[0].message

    certs.create(
        api_client,
        namespace,
        certs.certificate(
            "web", dnsNames=[f"web.{namespace}.svc"], issuerRef={"name": authority_name}
        ),
    )
    refused = wait_for(
        lambda: not_ready(api_client, namespace, "web", "IssuerNotReady"),
        timeout=20,
        what="the Certificate refused",
    )
    assert problem in refused["message"]
    assert ca_secret(api_client, f"{authority_name}-intermediate") is None  # nothing signed


def test_a_good_supplied_root_signs_chains_openssl_accepts_and_is_never_rotated_away(
    api_client, namespace, authority_name, supplied, tmp_path
):
    cert, key = openssl_root(tmp_path / "root", "good")
    store_root(api_client, supplied, cert, key)
    create_authority(api_client, authority_name, rootSecretRef={"name": supplied})
    wait_for(
        lambda: (authority_ready(api_client, authority_name) or {}).get("status") == "True",
        timeout=20,
        what="authority Ready",
    )
    certs.create(
        api_client,
        namespace,
        certs.certificate(
            "web", dnsNames=[f"web.{namespace}.svc"], issuerRef={"name": authority_name}
        ),
    )
    wait_for(lambda: certs.is_ready(api_client, namespace, "web"), timeout=20, what="web Ready")
    sec = certs.secret(api_client, namespace, "web-tls")
    assert fingerprint(certs.secret_bytes(sec, "ca.crt")) == fingerprint(cert)
    result = openssl_verify(sec, tmp_path)
    assert result.returncode == 0 and result.stdout.strip().endswith("OK"), result.stderr

    requested = "2026-01-01T00:00:00Z"
    client.CustomObjectsApi(api_client).patch_cluster_custom_object(
        *CA_API,
        authority_name,
        {"metadata": {"annotations": {"certsmith.dev/rotate-requested-at": requested}}},
    )
    refusal = wait_for(
        lambda: [
            e for e in authority_events(api_client, authority_name) if e.reason == "RotationRefused"
        ],
        timeout=15,
        what="the rotation refused",
    )
    assert refusal[0].type == "Warning"
    assert f"Secret {OPERATOR_NAMESPACE}/{supplied}" in refusal[0].message
    # The event is posted before the step's status is written.
    status = wait_for(
        lambda: (
            (st := get_authority(api_client, authority_name)["status"]).get("rotation") or {}
        ).get("lastRequest")
        == requested
        and st,
        timeout=15,
        what="the refused request recorded in status",
    )
    assert status["phase"] == "Ready"
    assert status["trustedRoots"] == [fingerprint(cert)]
    assert ca_secret(api_client, f"{authority_name}-root-next") is None


# --- item 16: a cluster without certsmith's namespace -----------------------------------


def test_a_missing_namespace_is_named_once_and_the_operator_exits(kubeconfig, operator):
    missing = f"nowhere-{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        "KUBECONFIG": kubeconfig,
        "CERTSMITH_NAMESPACE": missing,
        "CERTSMITH_METRICS_PORT": "0",
        "CERTSMITH_HEALTH_PORT": "0",
        "CERTSMITH_WEBHOOKS": "off",
    }
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "certsmith"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert elapsed < 20, f"took {elapsed:.1f}s"
    said = [line for line in output.splitlines() if "ERROR certsmith: cannot start:" in line]
    assert said == [
        f"{said[0].split(' ERROR ')[0]} ERROR certsmith: cannot start: namespace {missing} "
        f"(CERTSMITH_NAMESPACE) does not exist: certsmith keeps its CA keys and its leader "
        f"Lease there. Create it with `kubectl create namespace {missing}`, or install "
        "everything with `kubectl apply -k manifests/`; or set CERTSMITH_NAMESPACE to the "
        "namespace certsmith runs in"
    ], output
    assert "Lease round failed" not in output


def test_an_authority_name_too_long_for_its_certificates_is_refused_at_apply(
    api_client: client.ApiClient, running_operator: Any
) -> None:
    """Its name goes into the CA certificates' common names (RFC 5280: 64 characters at
    most): a longer one would never become Ready, so the API refuses it, naming the field."""
    longest = "a" * 41
    create_authority(api_client, longest)
    try:
        wait_for(
            lambda: (authority_ready(api_client, longest) or {}).get("status") == "True",
            timeout=30,
            what="an authority named with 41 characters Ready",
        )
        with pytest.raises(client.ApiException) as refused:
            create_authority(api_client, "a" * 42)
        assert refused.value.status == 422
        assert "metadata.name: at most 41 characters" in refused.value.body
    finally:
        delete_authority(api_client, longest)
