"""Revocation on a real apiserver with the real operator: `kubectl certsmith revoke` puts the
serial in the authority's CRL (published in every namespace's trust bundle and over HTTP),
re-issues a Certificate with a new key, revokes a CertificateRequest's certificate, keeps
namespace users to their own namespace, and survives a restart of the operator."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from kubernetes import client

from tests import builders, csrs
from tests.integration import certs
from tests.integration.conftest import OPERATOR_NAMESPACE, OperatorProcess, authority_ready
from tests.integration.test_certificate_requests import as_user, create, wait_ready_reason
from tests.support import REPO_ROOT, kubectl, wait_for

pytestmark = pytest.mark.integration

PLUGIN = Path(sys.executable).parent / "kubectl-certsmith"
RBAC = REPO_ROOT / "manifests" / "rbac.yaml"
REVOKE_ANNOTATION = "certsmith.dev/revoke-requested-at"


def plugin(kubeconfig: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PLUGIN), "--kubeconfig", kubeconfig, *args], capture_output=True, text=True, timeout=90
    )


def crls_in(pem: str) -> list[x509.CertificateRevocationList]:
    marker = "-----BEGIN X509 CRL-----"
    return [x509.load_pem_x509_crl((marker + part).encode()) for part in pem.split(marker)[1:]]


def published_crl(api_client: client.ApiClient, namespace: str) -> x509.CertificateRevocationList:
    """The intermediate's CRL in the namespace's trust bundle (certsmith-ca, key ca.crl)."""
    data = client.CoreV1Api(api_client).read_namespaced_config_map("certsmith-ca", namespace).data
    return crls_in((data or {}).get("ca.crl", ""))[0]


def served_crl(
    operator: OperatorProcess, authority: str = "cluster-root"
) -> x509.CertificateRevocationList:
    url = f"http://127.0.0.1:{operator.health_port}/crl/{authority}.crl"
    with urllib.request.urlopen(url, timeout=5) as answer:
        assert answer.headers["Content-Type"] == "application/pkix-crl"
        return x509.load_der_x509_crl(answer.read())


def reason_of(crl: x509.CertificateRevocationList, serial: int) -> x509.ReasonFlags | None:
    entry = crl.get_revoked_certificate_by_serial_number(serial)
    assert entry is not None, f"serial {serial:x} is not in the CRL"
    for extension in entry.extensions:
        if isinstance(extension.value, x509.CRLReason):
            return extension.value.reason
    return None


def lists(api_client: client.ApiClient, namespace: str, serial: int) -> bool:
    return (
        published_crl(api_client, namespace).get_revoked_certificate_by_serial_number(serial)
        is not None
    )


def openssl_verify(tmp_path: Path, data: dict[str, str], chain: bytes) -> tuple[bool, str]:
    """`openssl verify -crl_check_all` of the leaf in `chain` (leaf, intermediate) against
    the trust bundle's roots and CRLs: (accepted, output)."""
    (tmp_path / "ca.crt").write_text(data["ca.crt"])
    (tmp_path / "ca.crl").write_text(data["ca.crl"])
    parts = x509.load_pem_x509_certificates(chain)
    (tmp_path / "leaf.pem").write_bytes(parts[0].public_bytes(serialization.Encoding.PEM))
    (tmp_path / "chain.pem").write_bytes(
        b"".join(p.public_bytes(serialization.Encoding.PEM) for p in parts[1:])
    )
    done = subprocess.run(
        [
            "openssl",
            "verify",
            "-crl_check_all",
            "-CRLfile",
            "ca.crl",
            "-CAfile",
            "ca.crt",
            "-untrusted",
            "chain.pem",
            "leaf.pem",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    return done.returncode == 0, done.stdout + done.stderr


def crl_number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


@pytest.fixture(scope="module")
def editor(kubeconfig: str, operator: OperatorProcess) -> Iterator[str]:
    """manifests/rbac.yaml applied (certsmith-edit aggregated into `edit`)."""
    kubectl(kubeconfig, "apply", "-f", str(RBAC))
    yield f"dev-{uuid.uuid4().hex[:6]}"


def test_revoking_a_certificate_publishes_its_serial_and_reissues_it(
    api_client: client.ApiClient,
    kubeconfig: str,
    running_operator: OperatorProcess,
    namespace: str,
    tmp_path: Path,
) -> None:
    certs.create(
        api_client, namespace, builders.certificate("web", dnsNames=[f"web.{namespace}.svc"])
    )
    certs.wait_ready(api_client, namespace, "web")
    before = certs.secret(api_client, namespace, "web-tls")
    old_leaf, old_key = certs.leaf_of(before), certs.public_key_der(before)

    result = plugin(
        kubeconfig, "revoke", "web", "-n", namespace, "--reason", "keyCompromise", "--wait"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "revoked (keyCompromise)" in result.stdout
    assert "re-issued, serial" in result.stdout

    wait_for(
        lambda: lists(api_client, namespace, old_leaf.serial_number),
        timeout=20,
        what="the serial in the published CRL",
    )
    crl = published_crl(api_client, namespace)
    assert reason_of(crl, old_leaf.serial_number) is x509.ReasonFlags.key_compromise
    # Served from a cache of at most 10 s (CRL_CACHE_SECONDS).
    served = wait_for(
        lambda: (found := served_crl(running_operator))
        and crl_number(found) == crl_number(crl)
        and found,
        timeout=15,
        what="the same CRL served over HTTP",
    )
    assert reason_of(served, old_leaf.serial_number) is x509.ReasonFlags.key_compromise
    # Re-issued with a new key; the annotation is gone, the new serial not revoked.
    after = wait_for(
        lambda: (s := certs.secret(api_client, namespace, "web-tls"))
        and certs.leaf_of(s).serial_number != old_leaf.serial_number
        and s,
        timeout=20,
        what="the revoked Certificate re-issued",
    )
    assert certs.public_key_der(after) != old_key
    assert (
        served_crl(running_operator).get_revoked_certificate_by_serial_number(
            certs.leaf_of(after).serial_number
        )
        is None
    )
    body = certs.get(api_client, namespace, "web")
    assert REVOKE_ANNOTATION not in (body["metadata"].get("annotations") or {})
    reasons = [e.reason for e in certs.events_for(api_client, namespace, "web")]
    assert "Revoked" in reasons

    # openssl, with the trust bundle and the published CRLs, refuses the old leaf only.
    data = client.CoreV1Api(api_client).read_namespaced_config_map("certsmith-ca", namespace).data
    chain = certs.secret_bytes(after, "tls.crt")
    intermediate = chain[chain.index(b"-----END CERTIFICATE-----") + 26 :]
    accepted, output = openssl_verify(
        tmp_path, data, old_leaf.public_bytes(serialization.Encoding.PEM) + intermediate
    )
    assert not accepted and "certificate revoked" in output
    accepted, output = openssl_verify(tmp_path, data, chain)
    assert accepted, output


def test_no_reissue_keeps_the_revoked_certificate(
    api_client: client.ApiClient, kubeconfig: str, running_operator: OperatorProcess, namespace: str
) -> None:
    certs.create(
        api_client, namespace, builders.certificate("api", dnsNames=[f"api.{namespace}.svc"])
    )
    certs.wait_ready(api_client, namespace, "api")
    serial = certs.leaf_of(certs.secret(api_client, namespace, "api-tls")).serial_number
    result = plugin(
        kubeconfig, "revoke", "certificate/api", "-n", namespace, "--no-reissue", "--wait"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert lists(api_client, namespace, serial)
    assert reason_of(published_crl(api_client, namespace), serial) is None  # unspecified
    assert certs.leaf_of(certs.secret(api_client, namespace, "api-tls")).serial_number == serial
    # Not reported valid any more: Ready=False (Revoked) until renewed.
    ready = wait_for(
        lambda: (c := certs.condition(certs.get(api_client, namespace, "api")))
        and c["status"] == "False"
        and c,
        timeout=20,
        what="Ready=False on the revoked Certificate",
    )
    assert ready["reason"] == "Revoked"
    renewed = plugin(kubeconfig, "renew", "api", "-n", namespace, "--wait")
    assert renewed.returncode == 0, renewed.stdout + renewed.stderr
    certs.wait_ready(api_client, namespace, "api")


def test_revoking_a_certificate_request(
    api_client: client.ApiClient, kubeconfig: str, running_operator: OperatorProcess, namespace: str
) -> None:
    own = f"cam-1.{namespace}.svc"
    create(
        api_client,
        csrs.request_body("cam-1", namespace, csrs.csr_pem(csrs.ecdsa_key(), dns_names=[own])),
    )
    body = wait_ready_reason(api_client, namespace, "cam-1", "Issued")
    serial = int(body["status"]["serialNumber"], 16)
    result = plugin(
        kubeconfig,
        "revoke",
        "certificaterequest/cam-1",
        "-n",
        namespace,
        "--reason",
        "cessationOfOperation",
        "--wait",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        reason_of(published_crl(api_client, namespace), serial)
        is x509.ReasonFlags.cessation_of_operation
    )


def test_a_namespace_user_revokes_only_in_their_namespace(
    api_client: client.ApiClient,
    kubeconfig: str,
    running_operator: OperatorProcess,
    namespace: str,
    editor: str,
) -> None:
    """`edit` in one namespace: the revocation annotation on another namespace's
    Certificate, and a bare serial on the (cluster-scoped) authority, are refused by RBAC."""
    other = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(name=other, labels={"certsmith.dev/test-grants": "true"})
        )
    )
    try:
        kubectl(
            kubeconfig,
            "create",
            "rolebinding",
            "dev",
            "--clusterrole=edit",
            f"--user={editor}",
            "-n",
            namespace,
        )
        certs.create(
            api_client, other, builders.certificate("theirs", dnsNames=[f"theirs.{other}.svc"])
        )
        certs.create(
            api_client, namespace, builders.certificate("mine", dnsNames=[f"mine.{namespace}.svc"])
        )
        theirs = certs.wait_ready(api_client, other, "theirs")
        certs.wait_ready(api_client, namespace, "mine")
        wait_for(
            lambda: as_user(
                kubeconfig,
                editor,
                "auth",
                "can-i",
                "patch",
                "certificates.certsmith.dev",
                "-n",
                namespace,
            ).returncode
            == 0,
            timeout=30,
            what="the editor's RoleBinding in effect",
        )
        request = f"{REVOKE_ANNOTATION}=2026-01-01T00:00:00.000001Z"
        theirs_path = "certificates.certsmith.dev/theirs"
        refused = as_user(kubeconfig, editor, "annotate", theirs_path, request, "-n", other)
        assert refused.returncode != 0 and "forbidden" in refused.stderr
        serial = theirs["status"]["serialNumber"]
        by_serial = as_user(
            kubeconfig,
            editor,
            "annotate",
            "certificateauthorities.certsmith.dev/cluster-root",
            f"revoke.certsmith.dev/{serial}=keyCompromise",
        )
        assert by_serial.returncode != 0 and "forbidden" in by_serial.stderr
        mine = as_user(
            kubeconfig,
            editor,
            "annotate",
            "certificates.certsmith.dev/mine",
            request,
            "-n",
            namespace,
        )
        assert mine.returncode == 0, mine.stderr
        mine_serial = int(certs.get(api_client, namespace, "mine")["status"]["serialNumber"], 16)
        wait_for(
            lambda: lists(api_client, namespace, mine_serial),
            timeout=20,
            what="the editor's own revocation published",
        )
        assert not lists(api_client, namespace, int(serial, 16))
    finally:
        core.delete_namespace(other)


def test_a_bare_serial_needs_the_authority_and_survives_a_restart(
    api_client: client.ApiClient,
    kubeconfig: str,
    running_operator: OperatorProcess,
    namespace: str,
) -> None:
    result = plugin(
        kubeconfig, "revoke", "--serial", "0A:BC:DE:F1", "--reason", "superseded", "--wait"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    wait_for(
        lambda: lists(api_client, namespace, 0x0ABCDEF1), timeout=20, what="the serial published"
    )
    number = crl_number(published_crl(api_client, namespace))
    annotations = (
        client.CustomObjectsApi(api_client)
        .get_cluster_custom_object(
            "certsmith.dev", "v1alpha1", "certificateauthorities", "cluster-root"
        )["metadata"]
        .get("annotations")
        or {}
    )
    assert not [k for k in annotations if k.startswith("revoke.certsmith.dev/")]
    record = client.CoreV1Api(api_client).read_namespaced_config_map(
        "cluster-root-revocations", OPERATOR_NAMESPACE
    )
    assert '["abcdef1",' in record.data["revocations.json"]

    running_operator.kill()
    # Another intermediate makes the restarted operator sign the CRL again (a new number).
    client.CoreV1Api(api_client).delete_namespaced_secret(
        "cluster-root-intermediate", OPERATOR_NAMESPACE
    )
    running_operator.start()
    running_operator.wait_serving(api_client)
    wait_for(
        lambda: crl_number(published_crl(api_client, namespace)) > number,
        timeout=30,
        what="the CRL signed again by the new intermediate",
    )
    crl = published_crl(api_client, namespace)
    assert reason_of(crl, 0x0ABCDEF1) is x509.ReasonFlags.superseded
    assert reason_of(served_crl(running_operator), 0x0ABCDEF1) is x509.ReasonFlags.superseded


def test_a_bad_reason_on_the_annotation_is_refused_with_an_event(
    api_client: client.ApiClient, kubeconfig: str, running_operator: OperatorProcess, namespace: str
) -> None:
    certs.create(
        api_client, namespace, builders.certificate("odd", dnsNames=[f"odd.{namespace}.svc"])
    )
    certs.wait_ready(api_client, namespace, "odd")
    serial = int(certs.get(api_client, namespace, "odd")["status"]["serialNumber"], 16)
    kubectl(
        kubeconfig,
        "annotate",
        "certificates.certsmith.dev/odd",
        "-n",
        namespace,
        f"{REVOKE_ANNOTATION}=2026-01-01T00:00:00.000001Z",
        "certsmith.dev/revoke-reason=certificateHold",
    )
    event = wait_for(
        lambda: next(
            (
                e
                for e in certs.events_for(api_client, namespace, "odd")
                if e.reason == "InvalidRevocation"
            ),
            None,
        ),
        timeout=20,
        what="an InvalidRevocation event",
    )
    assert (
        "certsmith.dev/revoke-reason: 'certificateHold' is not a revocation reason" in event.message
    )
    wait_for(
        lambda: REVOKE_ANNOTATION
        not in (certs.get(api_client, namespace, "odd")["metadata"].get("annotations") or {}),
        timeout=20,
        what="the refused request's annotation removed",
    )
    assert not lists(api_client, namespace, serial)


def test_a_revocation_asked_while_the_operator_is_down_is_applied_at_start(
    api_client: client.ApiClient, kubeconfig: str, running_operator: OperatorProcess, namespace: str
) -> None:
    certs.create(
        api_client, namespace, builders.certificate("late", dnsNames=[f"late.{namespace}.svc"])
    )
    certs.wait_ready(api_client, namespace, "late")
    serial = int(certs.get(api_client, namespace, "late")["status"]["serialNumber"], 16)
    running_operator.kill()
    try:
        kubectl(
            kubeconfig,
            *("annotate", "certificates.certsmith.dev/late", "-n", namespace),
            f"{REVOKE_ANNOTATION}=2026-01-01T00:00:00.000001Z",
            "certsmith.dev/revoke-reason=affiliationChanged",
        )
    finally:
        running_operator.start()
    running_operator.wait_serving(api_client)
    wait_for(lambda: lists(api_client, namespace, serial), timeout=30, what="the serial published")
    crl = published_crl(api_client, namespace)
    assert reason_of(crl, serial) is x509.ReasonFlags.affiliation_changed
    wait_for(
        lambda: certs.leaf_of(certs.secret(api_client, namespace, "late-tls")).serial_number
        != serial,
        timeout=30,
        what="the revoked Certificate re-issued",
    )


def test_an_authority_names_its_crl_distribution_point_in_the_leaves_it_signs(
    api_client: client.ApiClient, running_operator: OperatorProcess, namespace: str
) -> None:
    name = f"cdp-{namespace}"
    url = f"http://certsmith-crl.certsmith.svc/crl/{name}/{{issuer}}.crl"
    objects = client.CustomObjectsApi(api_client)
    certs.create_authority(api_client, name, crl={"distributionPointURL": url})
    try:
        wait_for(lambda: authority_ready(api_client, name), timeout=30, what=f"{name} Ready")
        certs.create(
            api_client,
            namespace,
            builders.certificate(
                "cdp", dnsNames=[f"cdp.{namespace}.svc"], issuerRef={"name": name}
            ),
        )
        certs.wait_ready(api_client, namespace, "cdp")
        sec = certs.secret(api_client, namespace, "cdp-tls")
        leaf = certs.leaf_of(sec)
        intermediate = x509.load_pem_x509_certificates(certs.secret_bytes(sec, "tls.crt"))[1]
        key_id = x509.SubjectKeyIdentifier.from_public_key(intermediate.public_key()).digest.hex()
        points = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        named = url.replace("{issuer}", key_id)
        assert [[n.value for n in p.full_name or []] for p in points] == [[named]]
        # Its issuer's CRL is served at that path (by every replica; here on the health port).
        served = served_crl(running_operator, f"{name}/{key_id}")
        assert served.issuer == intermediate.subject and len(served) == 0
        # Without the field, leaves name none (cluster-root's).
        certs.create(
            api_client,
            namespace,
            builders.certificate("plain", dnsNames=[f"plain.{namespace}.svc"]),
        )
        certs.wait_ready(api_client, namespace, "plain")
        plain = certs.leaf_of(certs.secret(api_client, namespace, "plain-tls"))
        with pytest.raises(x509.ExtensionNotFound):
            plain.extensions.get_extension_for_class(x509.CRLDistributionPoints)

        # URLs certsmith cannot name are refused by the CRD: they never reach the operator.
        for bad in ("http://", "http://exa mple/x.crl", "ftp://crl.example/x.crl"):
            with pytest.raises(client.ApiException) as refused:
                objects.patch_cluster_custom_object(
                    "certsmith.dev",
                    "v1alpha1",
                    "certificateauthorities",
                    name,
                    {"spec": {"crl": {"distributionPointURL": bad}}},
                )
            assert "distributionPointURL must be an http:// or https:// URL" in refused.value.body
    finally:
        objects.delete_cluster_custom_object(
            "certsmith.dev", "v1alpha1", "certificateauthorities", name
        )
