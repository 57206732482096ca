"""Revocation under bad input and change, on a real apiserver with the real operator: a bad
serial or a damaged record never stops the authority's other work; a request revokes the
certificate it names, never one issued after it nor one another authority signed; leaves of
a replaced intermediate keep a current CRL; a deleted record does not un-revoke."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from kubernetes import client

from tests import builders, csrs
from tests.integration import certs
from tests.integration.conftest import OPERATOR_NAMESPACE, OperatorProcess, authority_ready
from tests.integration.test_certificate_requests import create, wait_ready_reason
from tests.integration.test_operability import scrape, value
from tests.integration.test_revocation import (
    REVOKE_ANNOTATION,
    crl_number,
    crls_in,
    lists,
    openssl_verify,
    plugin,
    published_crl,
    served_crl,
)
from tests.support import kubectl, wait_for

pytestmark = pytest.mark.integration

GROUP, VERSION, AUTHORITIES = "certsmith.dev", "v1alpha1", "certificateauthorities"


def authority(api_client: client.ApiClient, name: str = "cluster-root") -> dict[str, Any]:
    body: dict[str, Any] = client.CustomObjectsApi(api_client).get_cluster_custom_object(
        GROUP, VERSION, AUTHORITIES, name
    )
    return body


def crl_condition(api_client: client.ApiClient, name: str = "cluster-root") -> dict[str, Any]:
    found = (authority(api_client, name).get("status") or {}).get("conditions") or []
    return next((c for c in found if c["type"] == "CRLPublished"), {})


def bundle(api_client: client.ApiClient, namespace: str) -> dict[str, str]:
    data = client.CoreV1Api(api_client).read_namespaced_config_map("certsmith-ca", namespace).data
    return dict(data or {})


def events(api_client: client.ApiClient, namespace: str, name: str, reason: str) -> list[str]:
    return [e.message for e in certs.events_for(api_client, namespace, name) if e.reason == reason]


def test_a_bad_serial_never_stops_the_authority(
    api_client: client.ApiClient, running_operator: OperatorProcess, namespace: str
) -> None:
    """Serial 0 (RFC 5280: positive) and a 21-octet one are refused with an event and their
    annotations removed; a valid serial asked for with them is recorded, and the authority
    keeps signing."""
    objects = client.CustomObjectsApi(api_client)
    objects.patch_cluster_custom_object(
        GROUP,
        VERSION,
        AUTHORITIES,
        "cluster-root",
        {
            "metadata": {
                "annotations": {
                    "revoke.certsmith.dev/0": "unspecified",
                    "revoke.certsmith.dev/00" + "ff" * 20: "unspecified",
                    "revoke.certsmith.dev/5eed": "superseded",
                }
            }
        },
    )
    certs.create(
        api_client, namespace, builders.certificate("after", dnsNames=[f"after.{namespace}.svc"])
    )
    wait_for(lambda: lists(api_client, namespace, 0x5EED), timeout=30, what="5eed published")
    certs.wait_ready(api_client, namespace, "after")
    wait_for(
        lambda: not [
            k
            for k in (authority(api_client)["metadata"].get("annotations") or {})
            if k.startswith("revoke.certsmith.dev/")
        ],
        timeout=20,
        what="every revoke annotation removed",
    )
    refused = [
        e.message
        for e in client.CoreV1Api(api_client).list_namespaced_event("default").items
        if e.reason == "InvalidRevocation" and e.involved_object.name == "cluster-root"
    ]
    assert any("is 0: a serial number is positive" in m for m in refused), refused
    assert any("longer than 20 octets" in m for m in refused), refused
    assert crl_condition(api_client)["status"] == "True"


def test_a_damaged_record_is_a_condition_and_the_authority_carries_on(
    api_client: client.ApiClient, kubeconfig: str, running_operator: OperatorProcess, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    record = core.read_namespaced_config_map("cluster-root-revocations", OPERATOR_NAMESPACE)
    saved = dict(record.data)
    core.patch_namespaced_config_map(
        "cluster-root-revocations", OPERATOR_NAMESPACE, {"data": {"revocations.json": "{"}}
    )
    try:
        certs.create(
            api_client, namespace, builders.certificate("dmg", dnsNames=[f"dmg.{namespace}.svc"])
        )
        certs.wait_ready(api_client, namespace, "dmg")
        kubectl_revoke = plugin(kubeconfig, "revoke", "dmg", "-n", namespace, "--no-reissue")
        assert kubectl_revoke.returncode == 0, kubectl_revoke.stderr
        condition = wait_for(
            lambda: (c := crl_condition(api_client)) and c["status"] == "False" and c,
            timeout=30,
            what="CRLPublished False",
        )
        assert condition["reason"] == "RevocationRecordInvalid"
        assert "revocations.json is not a revocation record" in condition["message"]
        ready = next(
            c for c in authority(api_client)["status"]["conditions"] if c["type"] == "Ready"
        )
        assert ready["status"] == "True"
        # Still signing while the record is damaged.
        certs.create(
            api_client, namespace, builders.certificate("dmg2", dnsNames=[f"dmg2.{namespace}.svc"])
        )
        certs.wait_ready(api_client, namespace, "dmg2")
    finally:
        core.patch_namespaced_config_map(
            "cluster-root-revocations", OPERATOR_NAMESPACE, {"data": saved}
        )
    # Restored: found within the 30 s the operator looks again, and the request recorded.
    serial = int(certs.get(api_client, namespace, "dmg")["status"]["serialNumber"], 16)
    wait_for(lambda: lists(api_client, namespace, serial), timeout=60, what="dmg recorded")
    wait_for(
        lambda: crl_condition(api_client).get("status") == "True",
        timeout=30,
        what="CRLPublished True again",
    )


def test_a_request_pinning_another_serial_revokes_nothing(
    api_client: client.ApiClient, kubeconfig: str, running_operator: OperatorProcess, namespace: str
) -> None:
    certs.create(
        api_client, namespace, builders.certificate("pin", dnsNames=[f"pin.{namespace}.svc"])
    )
    serial = int(certs.wait_ready(api_client, namespace, "pin")["status"]["serialNumber"], 16)
    kubectl(
        kubeconfig,
        *("annotate", "certificates.certsmith.dev/pin", "-n", namespace),
        f"{REVOKE_ANNOTATION}=2026-01-01T00:00:00.000001Z",
        f"certsmith.dev/revoke-serial={serial + 1:x}",
    )
    message = wait_for(
        lambda: next(iter(events(api_client, namespace, "pin", "InvalidRevocation")), None),
        timeout=20,
        what="an InvalidRevocation event",
    )
    assert f"holds serial {serial:x}, not {serial + 1:x} (re-issued since the request)" in message
    assert not lists(api_client, namespace, serial)
    assert not lists(api_client, namespace, serial + 1)


def test_a_revoke_meeting_a_reissue_revokes_the_certificate_it_named(
    api_client: client.ApiClient, kubeconfig: str, running_operator: OperatorProcess, namespace: str
) -> None:
    """The plugin pins the serial; a spec change made before the operator handles the
    request waits until that serial is revoked, then re-issues."""
    certs.create(
        api_client, namespace, builders.certificate("race", dnsNames=[f"race.{namespace}.svc"])
    )
    certs.wait_ready(api_client, namespace, "race")
    first = certs.leaf_of(certs.secret(api_client, namespace, "race-tls")).serial_number
    running_operator.kill()
    try:
        asked = plugin(kubeconfig, "revoke", "race", "-n", namespace, "--reason", "keyCompromise")
        assert asked.returncode == 0, asked.stderr
        certs.patch_spec(
            api_client,
            namespace,
            "race",
            {"dnsNames": [f"race.{namespace}.svc", f"race2.{namespace}.svc"]},
        )
    finally:
        running_operator.start()
    running_operator.wait_serving(api_client)
    wait_for(lambda: lists(api_client, namespace, first), timeout=30, what="the named serial")
    after = wait_for(
        lambda: (leaf := certs.leaf_of(certs.secret(api_client, namespace, "race-tls")))
        and leaf.serial_number != first
        and leaf,
        timeout=30,
        what="the re-issue",
    )
    assert not lists(api_client, namespace, after.serial_number)


def test_a_leaf_is_revoked_only_through_the_authority_that_signed_it(
    api_client: client.ApiClient, kubeconfig: str, running_operator: OperatorProcess, namespace: str
) -> None:
    partner = f"partner-{uuid.uuid4().hex[:6]}"
    certs.create_authority(api_client, partner, trustBundle={"configMapName": f"{partner}-ca"})
    objects = client.CustomObjectsApi(api_client)
    try:
        wait_for(lambda: authority_ready(api_client, partner), timeout=30, what="partner Ready")
        certs.create(
            api_client, namespace, builders.certificate("sw", dnsNames=[f"sw.{namespace}.svc"])
        )
        serial = int(certs.wait_ready(api_client, namespace, "sw")["status"]["serialNumber"], 16)
        objects.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "certificates",
            "sw",
            {
                "spec": {"issuerRef": {"name": partner}},
                "metadata": {
                    "annotations": {
                        REVOKE_ANNOTATION: datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                        "certsmith.dev/revoke-reason": "keyCompromise",
                        "certsmith.dev/revoke-reissue": "false",
                        "certsmith.dev/revoke-serial": f"{serial:x}",
                    }
                },
            },
        )
        message = wait_for(
            lambda: next(iter(events(api_client, namespace, "sw", "InvalidRevocation")), None),
            timeout=30,
            what="an InvalidRevocation event",
        )
        assert f"not by a CA of CertificateAuthority {partner}" in message
        record = client.CoreV1Api(api_client).read_namespaced_config_map(
            f"{partner}-revocations", OPERATOR_NAMESPACE
        )
        assert f'"{serial:x}"' not in record.data["revocations.json"]
    finally:
        objects.delete_cluster_custom_object(GROUP, VERSION, AUTHORITIES, partner)


def test_leaves_of_a_replaced_intermediate_keep_a_current_crl(
    api_client: client.ApiClient,
    kubeconfig: str,
    running_operator: OperatorProcess,
    namespace: str,
    tmp_path: Path,
) -> None:
    for name in ("old-ok", "old-revoked"):
        certs.create(
            api_client, namespace, builders.certificate(name, dnsNames=[f"{name}.{namespace}.svc"])
        )
        certs.wait_ready(api_client, namespace, name)
    ok_chain = certs.secret_bytes(certs.secret(api_client, namespace, "old-ok-tls"), "tls.crt")
    revoked_chain = certs.secret_bytes(
        certs.secret(api_client, namespace, "old-revoked-tls"), "tls.crt"
    )
    old = x509.load_pem_x509_certificates(ok_chain)[1]
    old_key_id = x509.SubjectKeyIdentifier.from_public_key(old.public_key()).digest.hex()
    # README: the intermediate is replaced at once under the same root.
    client.CoreV1Api(api_client).delete_namespaced_secret(
        "cluster-root-intermediate", OPERATOR_NAMESPACE
    )

    def signers(pem: str) -> list[str]:
        found = []
        for revocation_list in crls_in(pem):
            aki = revocation_list.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
            found.append((aki.value.key_identifier or b"").hex())
        return found

    wait_for(
        lambda: len(signers(bundle(api_client, namespace)["ca.crl"])) >= 3
        and signers(bundle(api_client, namespace)["ca.crl"])[0] != old_key_id,
        timeout=30,
        what="the new intermediate's CRL first, the replaced one's kept",
    )
    assert old_key_id in signers(bundle(api_client, namespace)["ca.crl"])
    accepted, output = openssl_verify(tmp_path, bundle(api_client, namespace), ok_chain)
    assert accepted, output
    number = crl_number(published_crl(api_client, namespace))

    result = plugin(kubeconfig, "revoke", "old-revoked", "-n", namespace, "--no-reissue", "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "revoked (unspecified); the CRL of CertificateAuthority cluster-root" in result.stdout
    data = wait_for(
        lambda: (d := bundle(api_client, namespace))
        and crl_number(crls_in(d["ca.crl"])[0]) > number
        and d,
        timeout=20,
        what="the CRLs signed again",
    )
    accepted, output = openssl_verify(tmp_path, data, revoked_chain)
    assert not accepted and "certificate revoked" in output
    accepted, output = openssl_verify(tmp_path, data, ok_chain)
    assert accepted, output
    # The leaf's own issuer's CRL, over HTTP, lists it; the current intermediate's does not.
    revoked_serial = x509.load_pem_x509_certificates(revoked_chain)[0].serial_number
    served = wait_for(
        lambda: (c := served_crl(running_operator, f"cluster-root/{old_key_id}"))
        and c.get_revoked_certificate_by_serial_number(revoked_serial) is not None
        and c,
        timeout=15,
        what="the replaced intermediate's CRL served",
    )
    assert served.issuer == old.subject
    assert (
        served_crl(running_operator).get_revoked_certificate_by_serial_number(revoked_serial)
        is None
    )
    # The signers Secret deleted (or edited): written again from the operator's memory, the
    # replaced intermediate's CRL still published.
    core = client.CoreV1Api(api_client)
    core.delete_namespaced_secret("cluster-root-crl-signers", OPERATOR_NAMESPACE)
    again = plugin(kubeconfig, "revoke", "--serial", "de:1e:a0", "--wait")
    assert again.returncode == 0, again.stdout + again.stderr
    data = wait_for(
        lambda: (d := bundle(api_client, namespace))
        and crls_in(d["ca.crl"])[0].get_revoked_certificate_by_serial_number(0xDE1EA0)
        and d,
        timeout=20,
        what="the CRLs signed after the Secret's deletion",
    )
    assert old_key_id in signers(data["ca.crl"])
    accepted, output = openssl_verify(tmp_path, data, revoked_chain)
    assert not accepted and "certificate revoked" in output
    kept = core.read_namespaced_secret("cluster-root-crl-signers", OPERATOR_NAMESPACE).data
    assert f"{old_key_id}.crt" in kept


def test_a_deleted_record_is_rebuilt_and_the_crl_number_grows(
    api_client: client.ApiClient, kubeconfig: str, running_operator: OperatorProcess, namespace: str
) -> None:
    result = plugin(kubeconfig, "revoke", "--serial", "de:1e:7e", "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    wait_for(lambda: lists(api_client, namespace, 0xDE1E7E), timeout=20, what="published")
    number = crl_number(published_crl(api_client, namespace))
    client.CoreV1Api(api_client).delete_namespaced_config_map(
        "cluster-root-revocations", OPERATOR_NAMESPACE
    )
    # The deletion itself is not watched: the next step (here a revoke) finds it.
    again = plugin(kubeconfig, "revoke", "--serial", "de:1e:7f", "--wait")
    assert again.returncode == 0, again.stdout + again.stderr
    wait_for(lambda: lists(api_client, namespace, 0xDE1E7F), timeout=20, what="published")
    assert lists(api_client, namespace, 0xDE1E7E)
    assert crl_number(published_crl(api_client, namespace)) > number


def test_during_a_root_rotation_the_old_chain_keeps_its_crls(
    api_client: client.ApiClient,
    kubeconfig: str,
    running_operator: OperatorProcess,
    namespace: str,
    tmp_path: Path,
) -> None:
    """Devices enrolled before a rotation (never re-issued by certsmith) verify with
    -crl_check_all while the old root is still trusted, and one revoked then is refused."""
    chains = {}
    for name in ("dev-ok", "dev-lost"):
        create(
            api_client,
            csrs.request_body(
                name,
                namespace,
                csrs.csr_pem(csrs.ecdsa_key(), dns_names=[f"{name}.{namespace}.svc"]),
            ),
        )
        body = wait_ready_reason(api_client, namespace, name, "Issued")
        chains[name] = body["status"]["certificate"].encode()
    objects = client.CustomObjectsApi(api_client)
    # cluster-root is shared by the whole tier: its rotation settings are put back and the
    # rotation is seen to its end, so no later test meets it under way.
    rotation_before = (authority(api_client).get("spec") or {}).get("rotation")
    objects.patch_cluster_custom_object(
        GROUP,
        VERSION,
        AUTHORITIES,
        "cluster-root",
        {
            "metadata": {
                "annotations": {"certsmith.dev/rotate-requested-at": datetime.now(UTC).isoformat()}
            },
            "spec": {"rotation": {"propagationDelay": "40s"}},
        },
    )
    try:
        wait_for(
            lambda: (authority(api_client).get("status") or {}).get("phase") == "Retiring",
            timeout=120,
            what="the rotation in Retiring (both roots trusted, the new one signing)",
        )
        data = bundle(api_client, namespace)
        accepted, output = openssl_verify(tmp_path, data, chains["dev-ok"])
        assert accepted, output
        result = plugin(
            kubeconfig, "revoke", "certificaterequest/dev-lost", "-n", namespace, "--wait"
        )
        assert result.returncode == 0, result.stdout + result.stderr
        refused = wait_for(
            lambda: (
                found := openssl_verify(tmp_path, bundle(api_client, namespace), chains["dev-lost"])
            )
            and not found[0]
            and found,
            timeout=20,
            what="the revoked device refused",
        )
        assert "certificate revoked" in refused[1]
        accepted, output = openssl_verify(tmp_path, bundle(api_client, namespace), chains["dev-ok"])
        assert accepted, output
        assert (authority(api_client).get("status") or {}).get("phase") == "Retiring"
    finally:
        # Ended under this test's propagationDelay (40 s), then the settings put back: the
        # default delay would hold Retiring for minutes.
        wait_for(
            lambda: (authority(api_client).get("status") or {}).get("phase") == "Ready",
            timeout=180,
            what="cluster-root's rotation ended",
        )
        objects.patch_cluster_custom_object(
            GROUP, VERSION, AUTHORITIES, "cluster-root", {"spec": {"rotation": None}}
        )
        if rotation_before:
            objects.patch_cluster_custom_object(
                GROUP, VERSION, AUTHORITIES, "cluster-root", {"spec": {"rotation": rotation_before}}
            )


def test_a_record_deleted_while_the_operator_was_down_is_rebuilt_from_the_published_crls(
    api_client: client.ApiClient, kubeconfig: str, running_operator: OperatorProcess, namespace: str
) -> None:
    result = plugin(kubeconfig, "revoke", "--serial", "de:1e:80", "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    wait_for(lambda: lists(api_client, namespace, 0xDE1E80), timeout=20, what="published")
    number = crl_number(published_crl(api_client, namespace))
    core = client.CoreV1Api(api_client)
    running_operator.kill()
    try:
        core.delete_namespaced_config_map("cluster-root-revocations", OPERATOR_NAMESPACE)
    finally:
        running_operator.start()
    running_operator.wait_serving(api_client)
    wait_for(
        lambda: core.read_namespaced_config_map("cluster-root-revocations", OPERATOR_NAMESPACE),
        timeout=30,
        what="the record written again",
    )
    again = plugin(kubeconfig, "revoke", "--serial", "de:1e:81", "--wait")
    assert again.returncode == 0, again.stdout + again.stderr
    wait_for(lambda: lists(api_client, namespace, 0xDE1E81), timeout=20, what="published")
    assert lists(api_client, namespace, 0xDE1E80)
    assert crl_number(published_crl(api_client, namespace)) > number


def test_a_certificate_and_a_request_deleted_before_the_operator_handled_their_revocation(
    api_client: client.ApiClient, kubeconfig: str, running_operator: OperatorProcess, namespace: str
) -> None:
    """The plugin adds the revocation finalizer: deleting the object right after asking
    waits until the operator recorded the revocation, then the object goes."""
    custom = client.CustomObjectsApi(api_client)
    certs.create(
        api_client, namespace, builders.certificate("gone", dnsNames=[f"gone.{namespace}.svc"])
    )
    certificate = int(certs.wait_ready(api_client, namespace, "gone")["status"]["serialNumber"], 16)
    create(
        api_client,
        csrs.request_body(
            "gone-dev", namespace, csrs.csr_pem(csrs.ecdsa_key(), dns_names=[f"d.{namespace}.svc"])
        ),
    )
    device = int(
        wait_ready_reason(api_client, namespace, "gone-dev", "Issued")["status"]["serialNumber"], 16
    )
    running_operator.kill()
    try:
        for target in ("gone", "certificaterequest/gone-dev"):
            asked = plugin(
                kubeconfig, "revoke", target, "-n", namespace, "--reason", "keyCompromise"
            )
            assert asked.returncode == 0, asked.stdout + asked.stderr
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "certificates", "gone")
        custom.delete_namespaced_custom_object(
            GROUP, VERSION, namespace, "certificaterequests", "gone-dev"
        )
        waiting = certs.get(api_client, namespace, "gone")["metadata"]
        assert waiting.get("deletionTimestamp") and waiting["finalizers"] == [
            "certsmith.dev/revocation"
        ]
    finally:
        running_operator.start()
    running_operator.wait_serving(api_client)
    wait_for(
        lambda: lists(api_client, namespace, certificate) and lists(api_client, namespace, device),
        timeout=30,
        what="both revocations published",
    )

    def gone(plural: str, name: str) -> bool:
        try:
            custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        except client.ApiException as error:
            return error.status == 404
        return False

    wait_for(
        lambda: gone("certificates", "gone") and gone("certificaterequests", "gone-dev"),
        timeout=30,
        what="both objects deleted once handled",
    )


def test_a_request_the_authority_cannot_record_yet_holds_the_reissue_back_until_it_can(
    api_client: client.ApiClient, kubeconfig: str, running_operator: OperatorProcess, namespace: str
) -> None:
    """A keyCompromise request made while the CRLs cannot be updated, and a spec change
    meanwhile: the re-issue waits (past the 2 minutes, with a RevocationPending event)
    instead of replacing the certificate and leaving the request stale; once the record is
    restored the named serial is revoked, then the Certificate re-issued."""
    certs.create(
        api_client, namespace, builders.certificate("held", dnsNames=[f"held.{namespace}.svc"])
    )
    serial = certs.wait_ready(api_client, namespace, "held")["status"]["serialNumber"]
    core = client.CoreV1Api(api_client)
    saved = dict(
        core.read_namespaced_config_map("cluster-root-revocations", OPERATOR_NAMESPACE).data
    )
    core.patch_namespaced_config_map(
        "cluster-root-revocations", OPERATOR_NAMESPACE, {"data": {"revocations.json": "{"}}
    )
    try:
        # Asked three minutes ago (as the plugin writes it), so the wait is past 2 minutes.
        asked = datetime.now(UTC).replace(microsecond=1) - timedelta(minutes=3)
        kubectl(
            kubeconfig,
            *("annotate", "certificates.certsmith.dev/held", "-n", namespace),
            f"{REVOKE_ANNOTATION}={asked.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}",
            "certsmith.dev/revoke-reason=keyCompromise",
            f"certsmith.dev/revoke-serial={serial}",
        )
        wait_for(
            lambda: crl_condition(api_client).get("status") == "False",
            timeout=30,
            what="CRLPublished False",
        )
        certs.patch_spec(
            api_client,
            namespace,
            "held",
            {"dnsNames": [f"held.{namespace}.svc", f"held2.{namespace}.svc"]},
        )
        message = wait_for(
            lambda: next(iter(events(api_client, namespace, "held", "RevocationPending")), None),
            timeout=30,
            what="a RevocationPending event",
        )
        assert f"the revocation of serial {serial} asked at" in message
        assert certs.get(api_client, namespace, "held")["status"]["serialNumber"] == serial
        assert not events(api_client, namespace, "held", "InvalidRevocation")
    finally:
        core.patch_namespaced_config_map(
            "cluster-root-revocations", OPERATOR_NAMESPACE, {"data": saved}
        )
    wait_for(lambda: lists(api_client, namespace, int(serial, 16)), timeout=60, what="revoked")
    renewed = wait_for(
        lambda: (s := certs.get(api_client, namespace, "held")["status"].get("serialNumber"))
        != serial
        and s,
        timeout=30,
        what="the re-issue after the revocation",
    )
    assert not lists(api_client, namespace, int(renewed, 16))
    assert not events(api_client, namespace, "held", "InvalidRevocation")


def test_a_record_restored_from_an_older_backup_keeps_what_was_revoked_since(
    api_client: client.ApiClient, kubeconfig: str, running_operator: OperatorProcess, namespace: str
) -> None:
    """The README's advice (back the record up) followed by a restore: what was revoked
    after the backup stays revoked, and the CRL number keeps growing."""
    core = client.CoreV1Api(api_client)
    record = "cluster-root-revocations"
    backup = dict(core.read_namespaced_config_map(record, OPERATOR_NAMESPACE).data)
    result = plugin(kubeconfig, "revoke", "--serial", "de:1e:90", "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    wait_for(lambda: lists(api_client, namespace, 0xDE1E90), timeout=20, what="published")
    number = crl_number(published_crl(api_client, namespace))
    core.patch_namespaced_config_map(record, OPERATOR_NAMESPACE, {"data": backup})
    # The authority's next step (here the next revocation; else within 5 minutes) merges it.
    again = plugin(kubeconfig, "revoke", "--serial", "de:1e:91", "--wait")
    assert again.returncode == 0, again.stdout + again.stderr
    wait_for(lambda: lists(api_client, namespace, 0xDE1E91), timeout=20, what="published")
    assert lists(api_client, namespace, 0xDE1E90)
    assert crl_number(published_crl(api_client, namespace)) > number
    stored = core.read_namespaced_config_map(record, OPERATOR_NAMESPACE).data
    assert json.loads(stored["revocations.json"])["crlNumber"] > number
    restored = [
        e.message
        for e in core.list_namespaced_event("default").items  # a cluster-scoped object's
        if e.reason == "RevocationRecordRestored" and "lacked 1 revocations" in (e.message or "")
    ]
    assert restored


def test_an_authority_whose_crls_cannot_be_updated_has_crl_metrics_after_a_restart(
    api_client: client.ApiClient, kubeconfig: str, running_operator: OperatorProcess, namespace: str
) -> None:
    """The CRL-stale alert needs the series for every authority: after a restart, one whose
    record is damaged exports the age of the CRLs still served (from its trust bundle)."""
    served = wait_for(
        lambda: published_crl(api_client, namespace), timeout=20, what="a CRL published"
    ).last_update_utc.timestamp()
    core = client.CoreV1Api(api_client)
    record = "cluster-root-revocations"
    saved = dict(core.read_namespaced_config_map(record, OPERATOR_NAMESPACE).data)
    running_operator.kill()
    try:
        core.patch_namespaced_config_map(
            record, OPERATOR_NAMESPACE, {"data": {"revocations.json": "{"}}
        )
    finally:
        running_operator.start()
    try:
        running_operator.wait_serving(api_client)
        wait_for(
            lambda: crl_condition(api_client).get("reason") == "RevocationRecordInvalid",
            timeout=30,
            what="CRLPublished False",
        )
        samples = wait_for(
            lambda: (s := scrape(running_operator.metrics_port))
            and ("certsmith_crl_this_update_timestamp_seconds", (("authority", "cluster-root"),))
            in s
            and s,
            timeout=20,
            what="the CRL metrics of cluster-root",
        )
        assert (
            value(samples, "certsmith_crl_this_update_timestamp_seconds", authority="cluster-root")
            == served
        )
        assert value(samples, "certsmith_crl_age_seconds", authority="cluster-root") > 0
    finally:
        core.patch_namespaced_config_map(record, OPERATOR_NAMESPACE, {"data": saved})


def test_a_compromised_key_is_never_certified_again(
    api_client: client.ApiClient, kubeconfig: str, running_operator: OperatorProcess, namespace: str
) -> None:
    """rotationPolicy Never keeps the key at a re-issue: for keyCompromise the plugin refuses
    (unless --no-reissue), and a hand-written request is recorded but not re-issued."""
    certs.create(
        api_client,
        namespace,
        builders.certificate(
            "same-key",
            dnsNames=[f"same-key.{namespace}.svc"],
            privateKey={"rotationPolicy": "Never"},
        ),
    )
    serial = certs.wait_ready(api_client, namespace, "same-key")["status"]["serialNumber"]
    refused = plugin(kubeconfig, "revoke", "same-key", "-n", namespace, "--reason", "keyCompromise")
    assert refused.returncode != 0
    assert "rotationPolicy Never" in refused.stderr + refused.stdout
    assert REVOKE_ANNOTATION not in (
        certs.get(api_client, namespace, "same-key")["metadata"].get("annotations") or {}
    )
    kubectl(
        kubeconfig,
        *("annotate", "certificates.certsmith.dev/same-key", "-n", namespace),
        f"{REVOKE_ANNOTATION}={datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}",
        "certsmith.dev/revoke-reason=keyCompromise",
    )
    message = wait_for(
        lambda: next(iter(events(api_client, namespace, "same-key", "Revoked")), None),
        timeout=20,
        what="a Revoked event",
    )
    assert "not re-issued: spec.privateKey.rotationPolicy is Never" in message
    wait_for(lambda: lists(api_client, namespace, int(serial, 16)), timeout=20, what="revoked")
    ready = wait_for(
        lambda: next(
            (
                c
                for c in certs.get(api_client, namespace, "same-key")["status"]["conditions"]
                if c["type"] == "Ready" and c["status"] == "False"
            ),
            None,
        ),
        timeout=20,
        what="Ready False",
    )
    assert ready["reason"] == "Revoked"
    assert certs.get(api_client, namespace, "same-key")["status"]["serialNumber"] == serial


def test_a_serial_is_revoked_only_through_the_authority_that_issued_it(
    api_client: client.ApiClient, kubeconfig: str, running_operator: OperatorProcess, namespace: str
) -> None:
    certs.create(
        api_client, namespace, builders.certificate("wrong", dnsNames=[f"wrong.{namespace}.svc"])
    )
    serial = certs.wait_ready(api_client, namespace, "wrong")["status"]["serialNumber"]
    refused = plugin(kubeconfig, "revoke", "--serial", serial, "--authority", "partner")
    assert refused.returncode != 0
    assert (
        f"Certificate {namespace}/wrong holds it, issued by CertificateAuthority cluster-root, "
        "not partner: revoke it with --authority cluster-root"
    ) in refused.stderr + refused.stdout


def test_a_revocation_for_an_authority_that_does_not_exist_never_holds_a_deletion(
    api_client: client.ApiClient, kubeconfig: str, running_operator: OperatorProcess, namespace: str
) -> None:
    certs.create(
        api_client, namespace, builders.certificate("orphan", dnsNames=[f"orphan.{namespace}.svc"])
    )
    certs.wait_ready(api_client, namespace, "orphan")
    running_operator.kill()
    try:
        asked = plugin(kubeconfig, "revoke", "orphan", "-n", namespace)
        assert asked.returncode == 0, asked.stdout + asked.stderr
        certs.patch_spec(api_client, namespace, "orphan", {"issuerRef": {"name": "nowhere"}})
        client.CustomObjectsApi(api_client).delete_namespaced_custom_object(
            GROUP, VERSION, namespace, "certificates", "orphan"
        )
    finally:
        running_operator.start()
    running_operator.wait_serving(api_client)
    message = wait_for(
        lambda: next(iter(events(api_client, namespace, "orphan", "InvalidRevocation")), None),
        timeout=30,
        what="an InvalidRevocation event",
    )
    assert message == "CertificateAuthority nowhere does not exist: nothing revoked"

    def gone() -> bool:
        try:
            certs.get(api_client, namespace, "orphan")
        except client.ApiException as error:
            return error.status == 404
        return False

    wait_for(gone, timeout=30, what="the Certificate deleted")


def test_wait_says_when_a_trust_bundle_of_the_namespace_does_not_list_the_revocation(
    api_client: client.ApiClient, kubeconfig: str, running_operator: OperatorProcess, namespace: str
) -> None:
    """A namespace's own key fills its bundle: the new CRL cannot be written there
    (BundlesSynced False); `--wait` does not report success for that namespace."""
    certs.create(
        api_client, namespace, builders.certificate("full", dnsNames=[f"full.{namespace}.svc"])
    )
    certs.wait_ready(api_client, namespace, "full")
    data = wait_for(lambda: bundle(api_client, namespace), timeout=20, what="the trust bundle")
    used = sum(len(k) + len(v.encode()) for k, v in data.items()) + len("pad")
    client.CoreV1Api(api_client).patch_namespaced_config_map(
        "certsmith-ca", namespace, {"data": {"pad": "x" * (1048576 - used - 10)}}
    )
    result = plugin(
        kubeconfig,
        *("revoke", "full", "-n", namespace, "--no-reissue", "--wait", "--timeout", "10s"),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"warning: ConfigMap {namespace}/certsmith-ca does not list it yet" in result.stdout
