"""Whose Secret it is: certsmith writes only the Secret it created for a Certificate, changes
only what it owns in it, and never reports Ready for a certificate that expired."""

from __future__ import annotations

import base64
import contextlib
import time
import uuid
from datetime import UTC, datetime

import pytest
from kubernetes import client

from tests.integration import certs
from tests.integration.conftest import OPERATOR_NAMESPACE, authority_ready
from tests.integration.test_operability import scrape, value
from tests.support import wait_for

pytestmark = pytest.mark.integration


ready = certs.wait_ready


def condition_with(api_client, namespace, name, reason, timeout=15, kind="Ready", saying=""):
    def probe():
        found = certs.condition(certs.get(api_client, namespace, name), kind)
        return found if found and found["reason"] == reason and saying in found["message"] else None

    return wait_for(probe, timeout=timeout, what=f"{namespace}/{name} {kind} reason {reason}")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def tls_secret(name: str, **metadata) -> client.V1Secret:
    return client.V1Secret(
        metadata=client.V1ObjectMeta(name=name, **metadata),
        type="kubernetes.io/tls",
        data={"tls.crt": base64.b64encode(b"mine").decode(), "tls.key": ""},
    )


def test_a_certificate_in_the_operator_namespace_is_refused_at_apply(api_client, running_operator):
    """The operator's namespace holds CA keys only: no Certificate is admitted there, under a
    CA's Secret name or any other (a name reserved by an authority created later included)."""
    core = client.CoreV1Api(api_client)
    before = core.read_namespaced_secret("cluster-root-intermediate", OPERATOR_NAMESPACE)
    for name, secret_name in {
        "steal": "cluster-root-intermediate",
        "next": "cluster-root-root-next",
        "future": "future-intermediate",
        "web": "web-tls",
    }.items():
        body = certs.certificate(
            name, secretName=secret_name, dnsNames=[f"web.{OPERATOR_NAMESPACE}.svc"]
        )
        with pytest.raises(client.ApiException) as refused:
            certs.create(api_client, OPERATOR_NAMESPACE, body)
        assert refused.value.status == 403
        assert (
            "metadata.namespace: 'certsmith' is certsmith's own namespace, which holds only the "
            "keys of CertificateAuthorities" in refused.value.body
        )
    after = core.read_namespaced_secret("cluster-root-intermediate", OPERATOR_NAMESPACE)
    assert after.metadata.resource_version == before.metadata.resource_version


def test_a_certificate_admitted_in_the_operator_namespace_is_never_signed(
    api_client, running_operator, validating_webhook_down
):
    """Admitted while the webhook was down (or before an upgrade), a Certificate in the
    operator's namespace is PolicyDenied: no Secret is written, not even on a renew, so an
    authority created later always gets its Secret name."""
    core = client.CoreV1Api(api_client)
    objects = client.CustomObjectsApi(api_client)
    authority = f"t-ca-{uuid.uuid4().hex[:8]}"
    before = core.read_namespaced_secret("cluster-root-intermediate", OPERATOR_NAMESPACE)
    names = {"steal": "cluster-root-intermediate", "early": f"{authority}-intermediate"}
    for name, secret_name in names.items():
        certs.create(
            api_client,
            OPERATOR_NAMESPACE,
            certs.certificate(
                name, secretName=secret_name, dnsNames=[f"{name}.{OPERATOR_NAMESPACE}.svc"]
            ),
        )
    try:
        for name in names:
            denied = condition_with(api_client, OPERATOR_NAMESPACE, name, "PolicyDenied")
            assert denied["status"] == "False"
            assert (
                "metadata.namespace: 'certsmith' is certsmith's own namespace"
                in (denied["message"])
            )
        certs.create_authority(api_client, authority)
        wait_for(
            lambda: authority_ready(api_client, authority), timeout=30, what=f"{authority} Ready"
        )
        created = core.read_namespaced_secret(f"{authority}-intermediate", OPERATOR_NAMESPACE)
        assert created.metadata.labels["certsmith.dev/role"] == "intermediate"
        # A renewal request changes nothing: still denied, the CA's Secrets untouched.
        objects.patch_namespaced_custom_object(
            certs.GROUP,
            certs.VERSION,
            OPERATOR_NAMESPACE,
            certs.PLURAL,
            "early",
            {"metadata": {"annotations": {"certsmith.dev/renew-requested-at": "now"}}},
        )
        time.sleep(3)
        assert certs.condition(certs.get(api_client, OPERATOR_NAMESPACE, "early"))["reason"] == (
            "PolicyDenied"
        )
        for secret_name, earlier in (
            (f"{authority}-intermediate", created),
            ("cluster-root-intermediate", before),
        ):
            now = core.read_namespaced_secret(secret_name, OPERATOR_NAMESPACE)
            assert now.metadata.resource_version == earlier.metadata.resource_version
        status = certs.get(api_client, OPERATOR_NAMESPACE, "early").get("status") or {}
        assert "serialNumber" not in status and "revision" not in status
    finally:
        for name in names:
            objects.delete_namespaced_custom_object(
                certs.GROUP, certs.VERSION, OPERATOR_NAMESPACE, certs.PLURAL, name
            )
        with contextlib.suppress(client.ApiException):
            objects.delete_cluster_custom_object(
                certs.GROUP, certs.VERSION, "certificateauthorities", authority
            )
        core.delete_collection_namespaced_secret(
            OPERATOR_NAMESPACE, label_selector=f"certsmith.dev/authority={authority}"
        )


def test_an_authority_never_takes_a_secret_left_by_an_earlier_certificate(
    api_client, running_operator
):
    """The upgrade case: an earlier version signed a Certificate in `certsmith` into
    `<ca>-intermediate` (simulated by a Secret labelled as its); an authority created later
    neither signs with that leaf nor overwrites it, and says whose it is."""
    core = client.CoreV1Api(api_client)
    objects = client.CustomObjectsApi(api_client)
    authority = f"t-ca-{uuid.uuid4().hex[:8]}"
    left = tls_secret(
        f"{authority}-intermediate",
        labels={"app.kubernetes.io/managed-by": "certsmith", "certsmith.dev/certificate": "early"},
    )
    core.create_namespaced_secret(OPERATOR_NAMESPACE, left)
    try:
        before = core.read_namespaced_secret(f"{authority}-intermediate", OPERATOR_NAMESPACE)
        certs.create_authority(api_client, authority)

        def refused():
            body = objects.get_cluster_custom_object(
                certs.GROUP, certs.VERSION, "certificateauthorities", authority
            )
            found = certs.condition(body)
            return found if found and found["status"] == "False" else None

        found = wait_for(refused, timeout=15, what=f"CertificateAuthority {authority} refused")
        assert f"{authority}-intermediate carries no certsmith CA mark" in found["message"]
        assert "it holds the certificate of Certificate early" in found["message"]
        after = core.read_namespaced_secret(f"{authority}-intermediate", OPERATOR_NAMESPACE)
        assert after.metadata.resource_version == before.metadata.resource_version
    finally:
        with contextlib.suppress(client.ApiException):
            objects.delete_cluster_custom_object(
                certs.GROUP, certs.VERSION, "certificateauthorities", authority
            )
        core.delete_collection_namespaced_secret(
            OPERATOR_NAMESPACE, label_selector=f"certsmith.dev/authority={authority}"
        )
        with contextlib.suppress(client.ApiException):
            core.delete_namespaced_secret(f"{authority}-intermediate", OPERATOR_NAMESPACE)


def test_foreign_secrets_are_never_written_and_say_whose_they_are(
    api_client, namespace, running_operator
):
    core = client.CoreV1Api(api_client)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    reference = client.V1OwnerReference(
        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid, controller=True
    )
    foreign = {
        "by-hand": (tls_secret("by-hand"), "was created by hand (not labelled by certsmith)"),
        "controlled": (
            tls_secret("controlled", owner_references=[reference]),
            "is controlled by ConfigMap owner (ownerReferences)",
        ),
        "cert-manager": (
            tls_secret(
                "cert-manager",
                annotations={
                    "cert-manager.io/certificate-name": "web",
                    "cert-manager.io/issuer-name": "ca",
                },
            ),
            "was issued by cert-manager for its Certificate web",
        ),
        "helm": (
            tls_secret("helm", labels={"app.kubernetes.io/managed-by": "Helm"}),
            "is managed by Helm",
        ),
        "opaque": (
            client.V1Secret(metadata=client.V1ObjectMeta(name="opaque"), string_data={"p": "x"}),
            "was created by hand",
        ),
    }
    versions = {}
    for name, (secret, _) in foreign.items():
        versions[name] = core.create_namespaced_secret(namespace, secret).metadata.resource_version
        certs.create(
            api_client,
            namespace,
            certs.certificate(name, secretName=name, dnsNames=[f"{name}.example.com"]),
        )
    for name, (_, whose) in foreign.items():
        found = condition_with(api_client, namespace, name, "SecretConflict")
        assert found["status"] == "False"
        assert f"Secret {name} {whose}" in found["message"], found["message"]
    time.sleep(3)  # a re-check (every 2 s at first) that wrongly wrote would show by now
    for name in foreign:
        assert (
            core.read_namespaced_secret(name, namespace).metadata.resource_version
            == (versions[name])
        )
    events = certs.events_for(api_client, namespace, "by-hand")
    assert any(e.reason == "SecretConflict" and e.type == "Warning" for e in events)

    # The hand-made Secret is deleted: certsmith is not told (it does not watch foreign
    # Secrets) yet issues within its re-check interval, 2 s for a conflict this young.
    core.delete_namespaced_secret("by-hand", namespace)
    deleted_at = time.monotonic()
    ready(api_client, namespace, "by-hand", timeout=15)
    assert time.monotonic() - deleted_at < 10
    issued = core.read_namespaced_secret("by-hand", namespace)
    assert issued.metadata.labels["certsmith.dev/certificate"] == "by-hand"


def test_a_secret_labelled_for_a_certificate_is_handed_over(
    api_client, namespace, running_operator
):
    core = client.CoreV1Api(api_client)
    handed = tls_secret("handed", labels={"certsmith.dev/certificate": "handed"})
    handed.data["keystore.p12"] = base64.b64encode(b"p12").decode()
    core.create_namespaced_secret(namespace, handed)
    certs.create(
        api_client,
        namespace,
        certs.certificate("handed", secretName="handed", dnsNames=["handed.example.com"]),
    )
    status = ready(api_client, namespace, "handed")["status"]
    secret = core.read_namespaced_secret("handed", namespace)
    assert certs.leaf_of(secret).serial_number == int(status["serialNumber"], 16)
    assert secret.data["keystore.p12"] == handed.data["keystore.p12"]


def test_left_over_secret_is_adopted_by_its_certificate_only(
    api_client, namespace, running_operator
):
    core = client.CoreV1Api(api_client)
    objects = client.CustomObjectsApi(api_client)
    spec = {"secretName": "kept", "dnsNames": ["kept.example.com"]}
    certs.create(api_client, namespace, certs.certificate("old", **spec))
    serial = ready(api_client, namespace, "old")["status"]["serialNumber"]
    objects.delete_namespaced_custom_object(
        certs.GROUP, certs.VERSION, namespace, certs.PLURAL, "old"
    )
    wait_for(
        lambda: "old" not in [i["metadata"]["name"] for i in certs_in(api_client, namespace)],
        timeout=15,
        what="Certificate old gone",
    )

    # Another Certificate naming the left-over Secret: a conflict naming the deleted one.
    certs.create(api_client, namespace, certs.certificate("new", **spec))
    found = condition_with(api_client, namespace, "new", "SecretConflict")
    assert "Certificate old, which no longer exists" in found["message"]
    assert "delete the Secret" in found["message"]

    # The Certificate it was issued for, created again: adopted, not re-issued.
    certs.create(api_client, namespace, certs.certificate("old", **spec))
    assert ready(api_client, namespace, "old")["status"]["serialNumber"] == serial
    condition_with(
        api_client, namespace, "new", "SecretConflict", saying="belongs to Certificate old"
    )

    # Its Secret deleted and "old" moved elsewhere: the waiting Certificate is woken by the
    # Secret's watch event and takes the name at once.
    certs.patch_spec(api_client, namespace, "old", {"secretName": "elsewhere"})
    ready(api_client, namespace, "old")
    core.delete_namespaced_secret("kept", namespace)
    deleted_at = time.monotonic()
    ready(api_client, namespace, "new", timeout=15)
    assert time.monotonic() - deleted_at < 5
    secret = core.read_namespaced_secret("kept", namespace)
    assert secret.metadata.labels["certsmith.dev/certificate"] == "new"


def certs_in(api_client, namespace):
    return client.CustomObjectsApi(api_client).list_namespaced_custom_object(
        certs.GROUP, certs.VERSION, namespace, certs.PLURAL
    )["items"]


def test_removed_certsmith_labels_are_restored(api_client, namespace, running_operator):
    core = client.CoreV1Api(api_client)
    certs.create(api_client, namespace, certs.certificate("web", dnsNames=["web.example.com"]))
    serial = ready(api_client, namespace, "web")["status"]["serialNumber"]
    core.patch_namespaced_secret(
        "web-tls",
        namespace,
        {
            "metadata": {
                "labels": {"certsmith.dev/certificate": None, "app.kubernetes.io/managed-by": None}
            }
        },
    )
    wait_for(
        lambda: core.read_namespaced_secret("web-tls", namespace).metadata.labels
        == {"certsmith.dev/certificate": "web", "app.kubernetes.io/managed-by": "certsmith"},
        timeout=15,
        what="labels restored",
    )
    assert certs.get(api_client, namespace, "web")["status"]["serialNumber"] == serial


def test_reissue_keeps_what_others_added_to_the_secret(api_client, namespace, running_operator):
    core = client.CoreV1Api(api_client)
    certs.create(api_client, namespace, certs.certificate("web", dnsNames=["web.example.com"]))
    first = ready(api_client, namespace, "web")["status"]
    keystore = base64.b64encode(b"a PKCS#12 keystore").decode()
    core.patch_namespaced_secret(
        "web-tls",
        namespace,
        {
            "metadata": {
                "labels": {"backup": "daily"},
                "annotations": {"example.com/owner": "team-a"},
            },
            "data": {"keystore.p12": keystore},
        },
    )
    # What `kubectl certsmith renew` does.
    client.CustomObjectsApi(api_client).patch_namespaced_custom_object(
        certs.GROUP,
        certs.VERSION,
        namespace,
        certs.PLURAL,
        "web",
        {"metadata": {"annotations": {"certsmith.dev/renew-requested-at": "2026-01-01T00:00:00Z"}}},
    )
    renewed = wait_for(
        lambda: (b := certs.get(api_client, namespace, "web"))["status"].get("revision") == 2 and b,
        timeout=15,
        what="renewed",
    )["status"]
    assert renewed["serialNumber"] != first["serialNumber"]
    secret = core.read_namespaced_secret("web-tls", namespace)
    assert certs.leaf_of(secret).serial_number == int(renewed["serialNumber"], 16)
    assert secret.metadata.labels["backup"] == "daily"
    assert secret.metadata.annotations["example.com/owner"] == "team-a"
    assert secret.data["keystore.p12"] == keystore


def test_secret_template_changes_apply_without_reissue(api_client, namespace, running_operator):
    core = client.CoreV1Api(api_client)
    certs.create(
        api_client,
        namespace,
        certs.certificate(
            "web",
            dnsNames=["web.example.com"],
            secretTemplate={
                "labels": {"team": "shop", "tier": "web"},
                "annotations": {"example.com/contact": "ops"},
            },
        ),
    )
    first = ready(api_client, namespace, "web")["status"]
    core.patch_namespaced_secret(
        "web-tls", namespace, {"metadata": {"labels": {"backup": "daily"}}}
    )
    certs.patch_spec(
        api_client,
        namespace,
        "web",
        {"secretTemplate": {"labels": {"team": "payments", "tier": None}, "annotations": None}},
    )

    def template_applied():
        secret = core.read_namespaced_secret("web-tls", namespace)
        labels, annotations = secret.metadata.labels, secret.metadata.annotations
        return (
            labels.get("team") == "payments"
            and "tier" not in labels
            and "example.com/contact" not in annotations
            and secret
        )

    secret = wait_for(template_applied, timeout=15, what="template change applied")
    assert secret.metadata.labels["backup"] == "daily"  # set by hand, never in the template
    status = ready(api_client, namespace, "web")["status"]
    assert (status["serialNumber"], status["revision"]) == (first["serialNumber"], 1)


def test_template_keys_that_claim_the_secret_are_refused_at_apply(
    api_client, namespace, running_operator
):
    """A template key the ownership rule reads would lock certsmith out of its own Secret
    (cert-manager's annotation: SecretConflict at the next renewal) or be dropped silently
    (another managed-by): refused at apply, naming the field; no Secret is written."""
    refused_keys = {
        "annotations": "cert-manager.io/certificate-name",
        "labels": "app.kubernetes.io/managed-by",
    }
    for kind, key in refused_keys.items():
        body = certs.certificate(
            "claims", dnsNames=["web.example.com"], secretTemplate={kind: {key: "Helm"}}
        )
        with pytest.raises(client.ApiException) as refused:
            certs.create(api_client, namespace, body)
        assert refused.value.status == 422
        assert f"spec.secretTemplate.{kind}[{key}]: says whose the Secret is" in (
            refused.value.body
        )
    with pytest.raises(client.ApiException) as missing:
        certs.secret(api_client, namespace, "claims-tls")
    assert missing.value.status == 404


def test_a_secret_name_changed_into_a_conflict_shows_no_old_certificate(
    api_client, namespace, running_operator
):
    """The old Secret's notAfter and serial (printer columns EXPIRES, SERIAL) leave status
    while the Certificate has no Secret of its own; they come back once it has one."""
    core = client.CoreV1Api(api_client)
    certs.create(api_client, namespace, certs.certificate("moving", dnsNames=["m.example.com"]))
    before = ready(api_client, namespace, "moving")["status"]
    assert before["serialNumber"] and before["notAfter"]
    core.create_namespaced_secret(namespace, tls_secret("taken"))
    certs.patch_spec(api_client, namespace, "moving", {"secretName": "taken"})
    condition_with(api_client, namespace, "moving", "SecretConflict")
    status = wait_for(
        lambda: (s := certs.get(api_client, namespace, "moving")["status"]).get("notAfter") is None
        and s,
        timeout=10,
        what="the old certificate gone from status",
    )
    for key in ("notBefore", "notAfter", "renewalTime", "serialNumber"):
        assert key not in status
    assert status["revision"] == before["revision"]
    core.delete_namespaced_secret("taken", namespace)
    after = ready(api_client, namespace, "moving", timeout=45)["status"]
    assert after["serialNumber"] != before["serialNumber"] and after["notAfter"]


def test_expired_certificate_in_an_immutable_secret_is_not_ready(
    api_client, namespace, running_operator
):
    """`duration: 1m`, the smallest admitted: the leaf (back-dated 1 minute) expires 60 s
    after issuance, renewal is due after 20 s and fails; the test waits ≈ 65 s for expiry."""
    core = client.CoreV1Api(api_client)
    port = running_operator.metrics_port
    certs.create(
        api_client,
        namespace,
        certs.certificate("short", dnsNames=["short.example.com"], duration="1m"),
    )
    status = ready(api_client, namespace, "short")["status"]
    core.patch_namespaced_secret("short-tls", namespace, {"immutable": True})
    not_after = parse_time(status["notAfter"])

    # Renewal due: refused for the immutable Secret, while the old leaf still serves.
    issuing = condition_with(
        api_client, namespace, "short", "SecretConflict", timeout=40, kind="Issuing"
    )
    assert "is immutable" in issuing["message"] and "delete it" in issuing["message"]
    assert certs.condition(certs.get(api_client, namespace, "short"))["status"] == "True"
    assert datetime.now(UTC) < not_after

    # Expired: Ready=False right after notAfter, although retries have backed off by then.
    seconds_left = (not_after - datetime.now(UTC)).total_seconds()
    expired = condition_with(api_client, namespace, "short", "Expired", timeout=seconds_left + 10)
    assert expired["status"] == "False"
    assert status["notAfter"] in expired["message"] and "is immutable" in expired["message"]
    assert (parse_time(expired["lastTransitionTime"]) - not_after).total_seconds() <= 5
    assert (
        value(scrape(port), "certsmith_certificate_ready", namespace=namespace, name="short") == 0
    )

    # The way out the message gives: delete the Secret; it is issued again at once.
    core.delete_namespaced_secret("short-tls", namespace)
    renewed = ready(api_client, namespace, "short")["status"]
    assert renewed["serialNumber"] != status["serialNumber"]
    assert (
        value(scrape(port), "certsmith_certificate_ready", namespace=namespace, name="short") == 1
    )
