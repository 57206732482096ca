"""A Certificate applied to a real apiserver becomes a valid, kept-valid Secret."""

from __future__ import annotations

import base64
import ipaddress
import subprocess
import threading
import time
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from kubernetes import client

from certsmith.pki import inspect
from tests.integration import certs
from tests.integration.conftest import authority_ready
from tests.support import kubectl, wait_for

pytestmark = pytest.mark.integration


ready = certs.wait_ready


def test_issued_secret_verifies_and_status_reports_it(
    api_client, namespace, running_operator, kubeconfig, tmp_path
):
    certs.create(
        api_client,
        namespace,
        certs.certificate(
            "web",
            dnsNames=[f"web.{namespace}.svc", f"web.{namespace}.svc.cluster.local"],
            ipAddresses=["10.0.0.10"],
            uris=[f"spiffe://cluster.local/ns/{namespace}/sa/web"],
        ),
    )
    body = ready(api_client, namespace, "web")
    sec = certs.secret(api_client, namespace, "web-tls")
    assert sec.type == "kubernetes.io/tls"
    assert sec.metadata.labels["certsmith.dev/certificate"] == "web"
    # Its writes are certsmith's in managedFields (what GitOps tools' ignore rules name).
    assert {entry.manager for entry in sec.metadata.managed_fields} == {"certsmith"}

    chain = x509.load_pem_x509_certificates(certs.secret_bytes(sec, "tls.crt"))
    leaf, intermediate = chain
    (root,) = x509.load_pem_x509_certificates(certs.secret_bytes(sec, "ca.crt"))
    leaf.verify_directly_issued_by(intermediate)
    intermediate.verify_directly_issued_by(root)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == [
        f"web.{namespace}.svc",
        f"web.{namespace}.svc.cluster.local",
    ]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.10")]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"spiffe://cluster.local/ns/{namespace}/sa/web"
    ]
    assert isinstance(
        serialization.load_pem_private_key(certs.secret_bytes(sec, "tls.key"), None),
        ec.EllipticCurvePrivateKey,
    )

    for key in ("tls.crt", "ca.crt"):
        (tmp_path / key).write_bytes(certs.secret_bytes(sec, key))
    (tmp_path / "intermediate.pem").write_bytes(
        intermediate.public_bytes(serialization.Encoding.PEM)
    )
    verified = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(tmp_path / "ca.crt"),
            "-untrusted",
            str(tmp_path / "intermediate.pem"),
            str(tmp_path / "tls.crt"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr + verified.stdout

    status = body["status"]
    assert status["serialNumber"] == inspect.serial_hex(leaf)
    assert status["notAfter"] == leaf.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert status["notBefore"] < status["renewalTime"] < status["notAfter"]
    assert status["revision"] == 1

    table = kubectl(kubeconfig, "get", "certificates", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "SECRET", "EXPIRES", "RENEWAL", "AGE"]
    assert table[1].split()[:5] == [
        "web",
        "True",
        "web-tls",
        status["notAfter"],
        status["renewalTime"],
    ]
    wide = kubectl(kubeconfig, "get", "certs", "-o", "wide", "-n", namespace).stdout.splitlines()
    assert wide[0].split()[6:9] == ["ISSUER", "SERIAL", "STATUS"]
    assert "cluster-root" in wide[1] and status["serialNumber"] in wide[1]

    issued = [e for e in certs.events_for(api_client, namespace, "web") if e.reason == "Issued"]
    assert len(issued) == 1 and status["serialNumber"] in issued[0].message


def test_short_certificate_renews_itself_without_losing_ready(
    api_client, namespace, running_operator
):
    for name, policy in (("always", "Always"), ("never", "Never")):
        certs.create(
            api_client,
            namespace,
            certs.certificate(
                name,
                dnsNames=[f"{name}.{namespace}.svc"],
                duration="2m",
                renewBefore="90s",
                privateKey={"rotationPolicy": policy},
            ),
        )
    first = {name: ready(api_client, namespace, name)["status"] for name in ("always", "never")}
    first_keys = {
        name: certs.public_key_der(certs.secret(api_client, namespace, f"{name}-tls"))
        for name in ("always", "never")
    }

    not_ready_seen: list[str] = []
    stop = threading.Event()

    def watch_ready() -> None:
        while not stop.is_set():
            for name in ("always", "never"):
                cond = certs.condition(certs.get(api_client, namespace, name))
                if cond is None or cond["status"] != "True":
                    not_ready_seen.append(name)
            time.sleep(0.2)

    watcher = threading.Thread(target=watch_ready, daemon=True)
    watcher.start()
    try:
        for name in ("always", "never"):
            renewed = wait_for(
                lambda n=name: certs.get(api_client, namespace, n)["status"]["revision"] >= 2
                and certs.get(api_client, namespace, n),
                timeout=60,
                what=f"{name} renewed",
            )
            assert renewed["status"]["serialNumber"] != first[name]["serialNumber"]
    finally:
        stop.set()
        watcher.join()
    assert not_ready_seen == []
    keys_now = {
        name: certs.public_key_der(certs.secret(api_client, namespace, f"{name}-tls"))
        for name in ("always", "never")
    }
    assert keys_now["always"] != first_keys["always"]
    assert keys_now["never"] == first_keys["never"]
    reasons = {e.reason for e in certs.events_for(api_client, namespace, "always")}
    assert {"Issued", "Renewed"} <= reasons


def test_secret_is_kept_valid_and_repaired(api_client, namespace, running_operator):
    core = client.CoreV1Api(api_client)
    certs.create(api_client, namespace, certs.certificate("kept", dnsNames=["kept.example.com"]))
    serial = ready(api_client, namespace, "kept")["status"]["serialNumber"]

    def serial_changed_from(old: str) -> str | None:
        body = certs.get(api_client, namespace, "kept")
        new = (body.get("status") or {}).get("serialNumber")
        cond = certs.condition(body)
        return new if new != old and cond and cond["status"] == "True" else None

    # Secret deleted → recreated with a new certificate.
    core.delete_namespaced_secret("kept-tls", namespace)
    serial = wait_for(lambda: serial_changed_from(serial), timeout=15, what="re-issue after delete")
    assert certs.leaf_of(certs.secret(api_client, namespace, "kept-tls")).serial_number == int(
        serial, 16
    )

    # tls.key swapped for another key → re-issued.
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    core.patch_namespaced_secret(
        "kept-tls", namespace, {"data": {"tls.key": base64.b64encode(other).decode()}}
    )
    serial = wait_for(
        lambda: serial_changed_from(serial), timeout=15, what="re-issue after key swap"
    )
    sec = certs.secret(api_client, namespace, "kept-tls")
    assert certs.public_key_der(sec) == certs.leaf_of(sec).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    # Annotation removed → restored, same serial.
    core.patch_namespaced_secret(
        "kept-tls", namespace, {"metadata": {"annotations": {"certsmith.dev/serial-number": None}}}
    )
    wait_for(
        lambda: certs.secret(api_client, namespace, "kept-tls").metadata.annotations.get(
            "certsmith.dev/serial-number"
        )
        == serial,
        timeout=15,
        what="annotation restored",
    )
    assert certs.get(api_client, namespace, "kept")["status"]["serialNumber"] == serial
    assert "Repaired" in {e.reason for e in certs.events_for(api_client, namespace, "kept")}

    # Annotation edited to another serial → put back, not re-issued: the leaf is the one
    # the Certificate's sealed status records.
    core.patch_namespaced_secret(
        "kept-tls", namespace, {"metadata": {"annotations": {"certsmith.dev/serial-number": "ab"}}}
    )
    wait_for(
        lambda: certs.secret(api_client, namespace, "kept-tls").metadata.annotations.get(
            "certsmith.dev/serial-number"
        )
        == serial,
        timeout=15,
        what="edited serial annotation put back",
    )
    assert certs.leaf_of(certs.secret(api_client, namespace, "kept-tls")).serial_number == int(
        serial, 16
    )
    assert certs.get(api_client, namespace, "kept")["status"]["serialNumber"] == serial
    assert "CertificateReplaced" not in {
        e.reason for e in certs.events_for(api_client, namespace, "kept")
    }

    # Spec dnsNames changed → re-issued with the new name.
    certs.patch_spec(api_client, namespace, "kept", {"dnsNames": ["kept2.example.com"]})
    serial = wait_for(
        lambda: serial_changed_from(serial), timeout=15, what="re-issue after spec change"
    )
    san = certs.leaf_of(certs.secret(api_client, namespace, "kept-tls")).extensions
    assert san.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    ) == ["kept2.example.com"]


def test_a_leaf_copied_from_another_certificate_is_reissued(
    api_client, namespace, running_operator
):
    """Another Certificate's valid leaf copied into this one's Secret (same authority, same
    key type; this Secret's annotations kept, as after a hand copy or a restore) is
    re-issued for this spec at once, not reported Ready under the other's serial."""
    core = client.CoreV1Api(api_client)
    suffix = f".{namespace}.svc"
    common_name = "a" * (64 - len(suffix)) + suffix
    certs.create(api_client, namespace, certs.certificate("f", dnsNames=[f"*.{namespace}"]))
    certs.create(api_client, namespace, certs.certificate("cn64", commonName=common_name))
    foreign = ready(api_client, namespace, "f")["status"]["serialNumber"]
    own = ready(api_client, namespace, "cn64")["status"]
    assert own["revision"] == 1
    source = certs.secret(api_client, namespace, "f-tls")
    core.patch_namespaced_secret(
        "cn64-tls",
        namespace,
        {"data": {key: source.data[key] for key in ("tls.crt", "tls.key")}},
    )

    def reissued() -> dict | None:
        body = certs.is_ready(api_client, namespace, "cn64")
        status = (body or {}).get("status") or {}
        return status if status.get("revision") == 2 else None

    status = wait_for(reissued, timeout=15, what="cn64 re-issued after the copy")
    assert status["serialNumber"] not in (foreign, own["serialNumber"])
    leaf = certs.leaf_of(certs.secret(api_client, namespace, "cn64-tls"))
    assert inspect.serial_hex(leaf) == status["serialNumber"]
    assert leaf.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName) == [common_name]
    assert {e.reason: e.message for e in certs.events_for(api_client, namespace, "cn64")}[
        "Renewed"
    ].endswith(
        f"(the certificate in Secret cn64-tls does not match the spec: its subject is "
        f"empty, the spec asks for CN={common_name})"
    )
    # Nothing more: the re-issued leaf matches, so it stays at revision 2.
    time.sleep(2)
    assert certs.get(api_client, namespace, "cn64")["status"]["revision"] == 2


def test_a_twin_certificates_leaf_copied_in_is_replaced(api_client, namespace, running_operator):
    """Two Certificates with the same names: one's leaf and key copied into the other's
    Secret match the spec, yet it is not the leaf certsmith wrote there, and its key now
    sits in two Secrets: re-issued, never reported Ready with the twin's serial."""
    core = client.CoreV1Api(api_client)
    names = [f"twin.{namespace}.svc"]
    certs.create(api_client, namespace, certs.certificate("twina", dnsNames=names))
    certs.create(api_client, namespace, certs.certificate("twinb", dnsNames=names))
    twin = ready(api_client, namespace, "twina")["status"]["serialNumber"]
    own = ready(api_client, namespace, "twinb")["status"]["serialNumber"]
    source = certs.secret(api_client, namespace, "twina-tls")
    core.patch_namespaced_secret(
        "twinb-tls", namespace, {"data": {k: source.data[k] for k in ("tls.crt", "tls.key")}}
    )

    def reissued() -> dict | None:
        body = certs.is_ready(api_client, namespace, "twinb")
        status = (body or {}).get("status") or {}
        return status if status.get("revision") == 2 else None

    status = wait_for(reissued, timeout=15, what="twinb re-issued after the copy")
    assert status["serialNumber"] not in (twin, own)
    secret = certs.secret(api_client, namespace, "twinb-tls")
    assert inspect.serial_hex(certs.leaf_of(secret)) == status["serialNumber"]
    assert certs.public_key_der(secret) != certs.public_key_der(source)


def test_invalid_names_are_refused_at_admission(api_client, namespace, running_operator):
    with pytest.raises(client.ApiException) as refused:
        certs.create(
            api_client,
            namespace,
            certs.certificate("bad", dnsNames=["ok.example.com", "bad..name"]),
        )
    assert refused.value.status == 422
    assert "spec.dnsNames[1]" in refused.value.body


def test_invalid_names_admitted_while_webhook_down_are_reported_without_harming_neighbours(
    api_client, namespace, running_operator, validating_webhook_down
):
    certs.create(
        api_client, namespace, certs.certificate("bad", dnsNames=["ok.example.com", "bad..name"])
    )
    certs.create(api_client, namespace, certs.certificate("good", dnsNames=["good.example.com"]))
    ready(api_client, namespace, "good")

    def invalid():
        cond = certs.condition(certs.get(api_client, namespace, "bad"))
        return cond if cond and cond["reason"] == "InvalidSpec" else None

    cond = wait_for(invalid, timeout=15, what="bad Certificate reported InvalidSpec")
    assert cond["status"] == "False"
    assert "spec.dnsNames[1]" in cond["message"]
    warnings = [e for e in certs.events_for(api_client, namespace, "bad") if e.type == "Warning"]
    assert warnings and warnings[0].reason == "InvalidSpec"
    assert "spec.dnsNames[1]" in warnings[0].message
    with pytest.raises(client.ApiException):
        certs.secret(api_client, namespace, "bad-tls")


def test_two_certificates_cannot_share_a_secret(api_client, namespace, running_operator):
    certs.create(
        api_client,
        namespace,
        certs.certificate("first", secretName="shared", dnsNames=["a.example.com"]),
    )
    first_serial = ready(api_client, namespace, "first")["status"]["serialNumber"]
    certs.create(
        api_client,
        namespace,
        certs.certificate("second", secretName="shared", dnsNames=["b.example.com"]),
    )

    def conflict():
        cond = certs.condition(certs.get(api_client, namespace, "second"))
        return cond if cond and cond["reason"] == "SecretConflict" else None

    cond = wait_for(conflict, timeout=15, what="second Certificate reported SecretConflict")
    assert cond["status"] == "False" and "first" in cond["message"]
    assert certs.leaf_of(certs.secret(api_client, namespace, "shared")).serial_number == int(
        first_serial, 16
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"secretName": "s"},
            'needs a commonName, dnsNames, ipAddresses, uris or emailAddresses","field":"spec"',
        ),
        (
            {
                "secretName": "s",
                "dnsNames": ["a.example.com"],
                "duration": "1h",
                "renewBefore": "2h",
            },
            "renewBefore must be shorter than duration",
        ),
        (
            {
                "secretName": "s",
                "dnsNames": ["a.example.com"],
                "renewBefore": "1h",
                "renewBeforePercentage": 10,
            },
            'cannot be combined with spec.renewBefore","field":"spec.renewBeforePercentage"',
        ),
        (
            {"secretName": "s", "dnsNames": ["a.example.com"], "duration": "30s"},
            'must be from 1m to 100 years (876000h)","field":"spec.duration"',
        ),
        (
            {"secretName": "s", "dnsNames": ["a.example.com"], "privateKey": {"algorithm": "DSA"}},
            "spec.privateKey.algorithm: Unsupported value",
        ),
        (
            {
                "secretName": "s",
                "dnsNames": ["a.example.com"],
                "privateKey": {"algorithm": "RSA", "size": 1024},
            },
            "size must be 2048, 3072 or 4096",
        ),
        (
            {
                "secretName": "s",
                "dnsNames": ["a.example.com"],
                "privateKey": {"algorithm": "Ed25519", "encoding": "PKCS1"},
            },
            "Ed25519 keys can only",
        ),
        (
            {"secretName": "s", "dnsNames": ["a.example.com"], "usages": ["world domination"]},
            "spec.usages[0]: Unsupported value",
        ),
        ({"secretName": "Not_A_Name", "dnsNames": ["a.example.com"]}, "RFC 1123 subdomain"),
    ],
)
def test_schema_and_cel_rules_refuse_bad_manifests(api_client, namespace, operator, spec, message):
    body = certs.certificate("refused", **spec)
    with pytest.raises(client.ApiException) as refused:
        certs.create(api_client, namespace, body)
    assert refused.value.status == 422
    assert message in refused.value.body


def test_restart_keeps_valid_certificates_and_catches_up_on_renewals(
    api_client, namespace, running_operator
):
    certs.create(
        api_client, namespace, certs.certificate("steady", dnsNames=["steady.example.com"])
    )
    certs.create(
        api_client,
        namespace,
        certs.certificate("due", dnsNames=["due.example.com"], duration="2m", renewBefore="90s"),
    )
    steady = ready(api_client, namespace, "steady")["status"]
    due = ready(api_client, namespace, "due")["status"]
    renewal = datetime.fromisoformat(due["renewalTime"].replace("Z", "+00:00"))

    running_operator.kill()
    # Stay down until the renewal is overdue, so it must happen right after start.
    time.sleep(max(0.0, (renewal - datetime.now(UTC)).total_seconds()) + 2)
    restarted_at = time.monotonic()
    running_operator.start()
    wait_for(lambda: authority_ready(api_client), timeout=30, what="operator back")
    renewed = wait_for(
        lambda: certs.get(api_client, namespace, "due")["status"]["serialNumber"]
        != due["serialNumber"]
        and certs.get(api_client, namespace, "due"),
        timeout=20,
        what="overdue renewal after restart",
    )
    assert time.monotonic() - restarted_at < 20
    assert renewed["status"]["revision"] == due["revision"] + 1
    time.sleep(2)  # give a wrongful re-issue of the valid one time to show
    assert (
        certs.get(api_client, namespace, "steady")["status"]["serialNumber"]
        == steady["serialNumber"]
    )
    assert certs.get(api_client, namespace, "steady")["status"]["revision"] == 1
