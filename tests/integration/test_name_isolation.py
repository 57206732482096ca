"""Names a namespace does not own: another zone, a bare commonName, a second or crafted
SPIFFE ID. Refused at apply time naming the field, and never signed when the webhook
was down."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from kubernetes import client

from tests import builders
from tests.integration import certs
from tests.support import wait_for

pytestmark = pytest.mark.integration

SPIFFE = "spiffe://cluster.local/ns/{namespace}/sa/{account}"


def _fresh_namespace(core: client.CoreV1Api, name: str) -> None:
    """Create `name` without the test grant, after any copy a former run left terminating."""

    def absent() -> bool:
        try:
            core.read_namespace(name)
        except client.ApiException as error:
            if error.status == 404:
                return True
            raise
        try:
            core.delete_namespace(name)
        except client.ApiException as error:
            if error.status != 404:
                raise
        return False

    wait_for(absent, timeout=60, what=f"namespace {name} gone")
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))


@pytest.fixture
def com_namespace(api_client) -> Iterator[str]:
    """A namespace named after the top-level domain `com`: its short form is example.com."""
    core = client.CoreV1Api(api_client)
    _fresh_namespace(core, "com")
    yield "com"
    core.delete_namespace("com")


@pytest.fixture
def plain_namespace(api_client) -> Iterator[str]:
    """A namespace without the test grant: the default isolation policy applies."""
    core = client.CoreV1Api(api_client)
    name = f"names-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def refused(api_client, namespace: str, name: str, **spec: Any) -> client.ApiException:
    with pytest.raises(client.ApiException) as caught:
        certs.create(api_client, namespace, certs.certificate(name, **spec))
    return caught.value


def escapes(namespace: str) -> list[tuple[str, dict[str, Any], int, str, str]]:
    """(name, spec, webhook status, the field named, the Ready reason without a webhook)."""
    own = SPIFFE.format(namespace=namespace, account="web")
    return [
        ("bare-cn", {"commonName": "postgres"}, 403, "spec.commonName", "PolicyDenied"),
        ("text-cn", {"commonName": "batch job"}, 422, "spec.commonName", "InvalidSpec"),
        (
            "two-ids",
            {"uris": [own, SPIFFE.format(namespace=namespace, account="other")]},
            422,
            "spec.uris[1]",
            "InvalidSpec",
        ),
        (
            "dot-segments",
            {"uris": [f"spiffe://cluster.local/ns/{namespace}/../kube-system/sa/admin"]},
            422,
            "spec.uris[0]",
            "InvalidSpec",
        ),
        (
            "no-cn-subject",
            {"dnsNames": [f"web.{namespace}.svc"], "subject": {"organizations": ["admins"]}},
            422,
            "spec.subject",
            "InvalidSpec",
        ),
    ]


def assert_never_signed(api_client, namespace: str, name: str, reason: str, field: str) -> None:
    cond = wait_for(
        lambda: certs.condition(certs.get(api_client, namespace, name)),
        timeout=20,
        what=f"{name} judged by the operator",
    )
    assert (cond["reason"], cond["status"]) == (reason, "False")
    assert field in cond["message"]
    with pytest.raises(client.ApiException) as missing:
        certs.secret(api_client, namespace, f"{name}-tls")
    assert missing.value.status == 404
    assert not (certs.get(api_client, namespace, name).get("status") or {}).get("serialNumber")


def test_a_namespace_named_com_cannot_name_com_zone(api_client, com_namespace, running_operator):
    error = refused(api_client, com_namespace, "zone", dnsNames=["example.com", "*.com"])
    assert error.status == 403
    assert "spec.dnsNames[0]: 'example.com'" in error.body
    assert "spec.dnsNames[1]: '*.com'" in error.body
    assert "com is a top-level domain of the Public Suffix List" in error.body
    error = refused(api_client, com_namespace, "zone-cn", commonName="example.com")
    assert error.status == 403 and "spec.commonName: 'example.com'" in error.body

    # Its names under svc are its own.
    certs.create(
        api_client, com_namespace, certs.certificate("own", dnsNames=["web.com.svc", "*.com.svc"])
    )
    wait_for(lambda: certs.is_ready(api_client, com_namespace, "own"), timeout=20, what="signed")


def test_com_zone_admitted_while_the_webhook_was_down_is_never_signed(
    api_client, com_namespace, running_operator, validating_webhook_down
):
    certs.create(
        api_client, com_namespace, certs.certificate("zone", dnsNames=["example.com", "*.com"])
    )
    assert_never_signed(api_client, com_namespace, "zone", "PolicyDenied", "spec.dnsNames[0]")


@pytest.mark.parametrize("case", range(len(escapes("n"))), ids=[c[0] for c in escapes("n")])
def test_names_a_namespace_does_not_own_are_refused_at_admission(
    api_client, plain_namespace, running_operator, case
):
    name, spec, status, field, _ = escapes(plain_namespace)[case]
    error = refused(api_client, plain_namespace, name, **spec)
    assert error.status == status
    assert f"{field}: " in error.body, error.body


def test_names_a_namespace_does_not_own_admitted_while_the_webhook_was_down_are_never_signed(
    api_client, plain_namespace, running_operator, validating_webhook_down
):
    cases = escapes(plain_namespace)
    for name, spec, *_ in cases:
        certs.create(api_client, plain_namespace, certs.certificate(name, **spec))
    for name, _, _, field, reason in cases:
        assert_never_signed(api_client, plain_namespace, name, reason, field)


def test_a_common_name_only_certificate_has_its_name_in_the_san(
    api_client, plain_namespace, running_operator
):
    name = f"web.{plain_namespace}.svc"
    certs.create(api_client, plain_namespace, certs.certificate("cn-only", commonName=name))
    wait_for(
        lambda: certs.is_ready(api_client, plain_namespace, "cn-only"), timeout=20, what="Ready"
    )
    leaf = certs.leaf_of(certs.secret(api_client, plain_namespace, "cn-only-tls"))
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [name]
    assert leaf.subject.rfc4514_string() == f"CN={name}"
    # One SPIFFE ID, of its own, is an X.509-SVID it may have.
    own = SPIFFE.format(namespace=plain_namespace, account="web")
    certs.create(api_client, plain_namespace, certs.certificate("svid", uris=[own]))
    wait_for(lambda: certs.is_ready(api_client, plain_namespace, "svid"), timeout=20, what="Ready")


def test_a_grant_whose_selector_is_misspelt_is_refused_naming_the_field(
    running_operator, api_client
):
    """`operator: in` (for `In`) was once read as no constraint, granting to every namespace.
    The schema refuses it at apply time; isolation.parse_grants refuses it in objects
    stored under an older CRD (unit-tested)."""
    objects = client.CustomObjectsApi(api_client)
    grant = {
        "namespaceSelector": {
            "matchExpressions": [{"key": "team", "operator": "in", "values": ["payments"]}]
        },
        "dnsNames": ["*.payments.example.org"],
    }
    body = builders.authority(f"typo-{uuid.uuid4().hex[:6]}", policy={"grants": [grant]})
    with pytest.raises(client.ApiException) as caught:
        objects.create_cluster_custom_object(
            "certsmith.dev", "v1alpha1", "certificateauthorities", body
        )
    assert caught.value.status == 422
    assert "spec.policy.grants[0].namespaceSelector.matchExpressions[0].operator" in str(
        caught.value.body
    )
    grant["namespaceSelector"] = {"matchExpressions": [{"key": "team", "operator": "In"}]}
    with pytest.raises(client.ApiException) as caught:
        objects.create_cluster_custom_object(
            "certsmith.dev", "v1alpha1", "certificateauthorities", body
        )
    assert caught.value.status == 422 and "In and NotIn need values" in str(caught.value.body)
