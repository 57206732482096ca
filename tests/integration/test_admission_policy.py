"""Certificate admission in the apiserver: CEL admits what needs no grant (the
namespace's own names in a spec it proves valid) and the ValidatingAdmissionPolicy
refuses the operator's namespace; the webhook judges the rest, with the operator's own
messages; never an admission the operator then refuses, never a refusal it would not make.
Dry-run requests (admission runs in full, nothing is stored) unless a test needs the
object."""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client

from certsmith.admission import admission_policy, serving
from certsmith.api import model
from certsmith.certificates import isolation
from tests import admission_cases
from tests.builders import GROUP, VERSION
from tests.integration import certs
from tests.integration.conftest import OPERATOR_NAMESPACE
from tests.support import install_admission, kubectl, wait_for

pytestmark = pytest.mark.integration

POLICY_PREFIX = (
    f"ValidatingAdmissionPolicy '{admission_policy.POLICY_NAME}' with binding "
    f"'{admission_policy.POLICY_NAME}' denied request: "
)
WEBHOOK_PREFIX = 'admission webhook "validate.certificates.certsmith.dev" denied the request: '
AUTHORITIES = "certificateauthorities"


def answer(
    api_client: client.ApiClient, namespace: str, spec: dict[str, Any], *, dry_run: bool = True
) -> tuple[str | None, str | None]:
    """(who refused: "policy", "webhook" or "schema"; the message after its prefix), or
    (None, None) when the apiserver admits the Certificate `spec` in `namespace`."""
    body = certs.certificate(f"adm-{uuid.uuid4().hex[:8]}", **spec)
    try:
        client.CustomObjectsApi(api_client).create_namespaced_custom_object(
            GROUP, VERSION, namespace, certs.PLURAL, body, dry_run="All" if dry_run else None
        )
    except client.ApiException as error:
        message = json.loads(error.body)["message"]
        for judge, prefix in (("policy", POLICY_PREFIX), ("webhook", WEBHOOK_PREFIX)):
            if prefix in message:
                return judge, message.split(prefix, 1)[1]
        return "schema", message
    return None, None


def put_authority(api_client: client.ApiClient, name: str, grants: list[dict[str, Any]]) -> None:
    objects = client.CustomObjectsApi(api_client)
    try:
        objects.create_cluster_custom_object(
            GROUP, VERSION, AUTHORITIES, certs.builders.authority(name, policy={"grants": grants})
        )
    except client.ApiException as error:
        if error.status != 409:
            raise
        objects.patch_cluster_custom_object(
            GROUP, VERSION, AUTHORITIES, name, {"spec": {"policy": {"grants": grants}}}
        )


def delete_authority(api_client: client.ApiClient, name: str) -> None:
    try:
        client.CustomObjectsApi(api_client).delete_cluster_custom_object(
            GROUP, VERSION, AUTHORITIES, name
        )
    except client.ApiException as error:
        if error.status != 404:
            raise


def put_namespace(api_client: client.ApiClient, name: str, labels: dict[str, str]) -> None:
    core = client.CoreV1Api(api_client)
    try:
        core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
        )
    except client.ApiException as error:
        if error.status != 409:
            raise
        current = core.read_namespace(name).metadata.labels or {}
        removed = {key: None for key in current if key.startswith("adm-") and key not in labels}
        core.patch_namespace(name, {"metadata": {"labels": {**removed, **labels}}})


def settled(check: Any, what: str) -> Any:
    """`check()` once truthy: the operator's caches (signing) follow writes a moment late."""
    return wait_for(check, timeout=20, what=what)


@pytest.fixture(scope="module")
def table(api_client: client.ApiClient, operator: object) -> Iterator[None]:
    """The table's namespaces and authority, the policy caught up with them."""
    for name, labels in admission_cases.NAMESPACES.items():
        put_namespace(api_client, name, labels)
    put_authority(api_client, admission_cases.AUTHORITY, admission_cases.GRANTS)
    granted = {"secretName": "t", "dnsNames": ["x.gold.example"]}
    granted["issuerRef"] = {"name": admission_cases.AUTHORITY}
    settled(lambda: answer(api_client, "adm-gold", granted) == (None, None), "the grants read")
    yield
    for name in ("zip", "lan", "cluster"):
        client.CoreV1Api(api_client).delete_namespace(name)


def test_the_install_ships_the_policy_and_its_binding(api_client, running_operator):
    """manifests/admission-policy.yaml, as the tier's fixture applies it: it compiles, with
    no param (the webhook judges what needs a grant)."""
    admission = client.AdmissionregistrationV1Api(api_client)
    policy = admission.read_validating_admission_policy(admission_policy.POLICY_NAME)
    assert policy.spec.param_kind is None
    assert not (policy.status.type_checking.expression_warnings or [])
    binding = admission.read_validating_admission_policy_binding(admission_policy.POLICY_NAME)
    assert binding.spec.param_ref is None


@pytest.mark.parametrize("case", admission_cases.CASES, ids=lambda c: c.id)
def test_each_rule_gives_the_webhooks_message(api_client, table, case: admission_cases.Case):
    spec = {**case.spec, "issuerRef": {"name": admission_cases.AUTHORITY}}
    judge, message = answer(api_client, case.namespace, spec)
    assert message == case.message
    if message is not None:
        assert judge == case.judge


def webhook_calls(kubeconfig: str) -> int:
    """How many Certificate admissions the apiserver has sent to the webhook so far."""
    metrics = kubectl(kubeconfig, "get", "--raw", "/metrics").stdout
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in metrics.splitlines()
        if line.startswith("apiserver_admission_webhook_request_total{")
        and 'name="validate.certificates.certsmith.dev"' in line
    )


def test_the_webhook_is_not_called_for_what_the_policy_judges(api_client, kubeconfig, table):
    before = webhook_calls(kubeconfig)
    names = [f"calls-{uuid.uuid4().hex[:6]}-{i}" for i in range(5)]
    objects = client.CustomObjectsApi(api_client)
    for name in names:
        certs.create(api_client, "adm-plain", certs.certificate(name, dnsNames=["w.adm-plain.svc"]))
        objects.patch_namespaced_custom_object(
            GROUP, VERSION, "adm-plain", certs.PLURAL, name, {"metadata": {"labels": {"a": "b"}}}
        )
    assert webhook_calls(kubeconfig) == before
    assert answer(api_client, "adm-plain", {"dnsNames": ["w.other.svc"]})[0] == "webhook"
    assert webhook_calls(kubeconfig) == before + 1
    assert answer(api_client, "adm-plain", {"dnsNames": ["W.adm-plain.svc"]}) == (None, None)
    assert webhook_calls(kubeconfig) == before + 2
    for name in names:
        objects.delete_namespaced_custom_object(GROUP, VERSION, "adm-plain", certs.PLURAL, name)


def test_the_policy_refuses_the_operator_namespace(api_client, kubeconfig, running_operator):
    before = webhook_calls(kubeconfig)
    judge, message = answer(
        api_client, OPERATOR_NAMESPACE, {"dnsNames": [f"web.{OPERATOR_NAMESPACE}.svc"]}
    )
    assert webhook_calls(kubeconfig) == before
    assert judge == "policy"
    assert message == isolation.operator_namespace_refusal(OPERATOR_NAMESPACE, OPERATOR_NAMESPACE)


def test_the_default_authority_judges_without_issuer_ref(api_client, table):
    # cluster-root grants *.example.com to the test namespaces only (conftest), not here.
    judge, message = answer(api_client, "adm-plain", {"dnsNames": ["a.example.com"]})
    assert (judge, message) == (
        "webhook",
        "spec.dnsNames[0]: 'a.example.com' is not allowed in this namespace (namespace "
        f"adm-plain {admission_cases.OWN})",
    )


def test_grant_edits_and_relabels_are_followed(api_client, table):
    authority = f"adm-edit-{uuid.uuid4().hex[:6]}"
    namespace = f"adm-relabel-{uuid.uuid4().hex[:6]}"
    put_namespace(api_client, namespace, {})
    spec = {"dnsNames": ["api.example.org"], "issuerRef": {"name": authority}}
    try:
        # No such authority yet: admitted, as the operator judges again before signing.
        assert answer(api_client, namespace, spec) == (None, None)
        put_authority(api_client, authority, [])
        settled(lambda: answer(api_client, namespace, spec)[0] == "webhook", "authority read")
        grant = {"namespaceSelector": {"matchLabels": {"adm-edit": "yes"}}}
        put_authority(api_client, authority, [{**grant, "dnsNames": ["*.example.org"]}])
        time.sleep(1)
        assert answer(api_client, namespace, spec)[0] == "webhook"  # not labelled yet
        put_namespace(api_client, namespace, {"adm-edit": "yes"})
        settled(lambda: answer(api_client, namespace, spec) == (None, None), "relabel read")
        put_authority(api_client, authority, [{**grant, "dnsNames": ["*.example.net"]}])
        settled(lambda: answer(api_client, namespace, spec)[0] == "webhook", "grant edit read")
        # A malformed pattern makes the authority grant nothing, as isolation.parse_grants.
        put_authority(api_client, authority, [{**grant, "dnsNames": ["*.example.org", "a b"]}])
        time.sleep(1)
        assert answer(api_client, namespace, spec)[0] == "webhook"
    finally:
        delete_authority(api_client, authority)
        client.CoreV1Api(api_client).delete_namespace(namespace)


def test_an_authority_created_after_the_certificate_refuses_it_at_signing(
    api_client, table, running_operator
):
    authority = f"adm-late-{uuid.uuid4().hex[:6]}"
    name = f"late-{uuid.uuid4().hex[:6]}"
    body = certs.certificate(name, dnsNames=["api.example.org"], issuerRef={"name": authority})
    certs.create(api_client, "adm-plain", body)
    try:
        put_authority(api_client, authority, [])
        ready = wait_for(
            lambda: (c := certs.condition(certs.get(api_client, "adm-plain", name)))
            and c["reason"] == "PolicyDenied"
            and c,
            timeout=60,
            what=f"{name} refused at signing",
        )
        assert "spec.dnsNames[0]: 'api.example.org' is not allowed" in ready["message"]
    finally:
        client.CustomObjectsApi(api_client).delete_namespaced_custom_object(
            GROUP, VERSION, "adm-plain", certs.PLURAL, name
        )
        delete_authority(api_client, authority)


def test_with_admission_off_the_operator_still_refuses_at_signing(
    api_client, table, validating_webhook_down
):
    """The policy's binding deleted (and the webhook): a Certificate the policy would
    refuse is admitted, and the operator's signing-time check refuses it, naming the field."""
    name = f"off-{uuid.uuid4().hex[:6]}"
    certs.create(api_client, "adm-plain", certs.certificate(name, dnsNames=["web.other.svc"]))
    try:
        cond = wait_for(
            lambda: certs.condition(certs.get(api_client, "adm-plain", name)),
            timeout=30,
            what=f"{name} judged by the operator",
        )
        assert (cond["status"], cond["reason"]) == ("False", "PolicyDenied")
        assert cond["message"].startswith("spec.dnsNames[0]: 'web.other.svc' is not allowed")
    finally:
        client.CustomObjectsApi(api_client).delete_namespaced_custom_object(
            GROUP, VERSION, "adm-plain", certs.PLURAL, name
        )


def test_metadata_edits_pass_for_a_certificate_admitted_earlier(api_client, table):
    """A Certificate the policy would now refuse (admitted with a grant since removed)
    keeps taking label edits, in dry-run and for real; a spec edit is judged."""
    authority = f"adm-meta-{uuid.uuid4().hex[:6]}"
    grant = {"namespaceSelector": {}, "dnsNames": ["*.example.org"]}
    put_authority(api_client, authority, [grant])
    name = f"meta-{uuid.uuid4().hex[:6]}"
    spec = {"dnsNames": ["api.example.org"], "issuerRef": {"name": authority}}
    objects = client.CustomObjectsApi(api_client)
    try:
        settled(lambda: answer(api_client, "adm-plain", spec) == (None, None), "grant read")
        certs.create(api_client, "adm-plain", certs.certificate(name, **spec))
        put_authority(api_client, authority, [])
        settled(lambda: answer(api_client, "adm-plain", spec)[0] == "webhook", "grant removed")
        for dry_run in ("All", None):
            objects.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                "adm-plain",
                certs.PLURAL,
                name,
                {"metadata": {"labels": {"edited": "yes"}}},
                dry_run=dry_run,
            )
        with pytest.raises(client.ApiException) as refused:
            certs.patch_spec(api_client, "adm-plain", name, {"duration": "48h"})
        assert json.loads(refused.value.body)["message"].startswith(WEBHOOK_PREFIX)
    finally:
        objects.delete_namespaced_custom_object(GROUP, VERSION, "adm-plain", certs.PLURAL, name)
        delete_authority(api_client, authority)


# --- the property: admitted ⇔ the operator accepts, refused naming the operator's field ----

NAMES = [
    *("web.{ns}.svc", "*.{ns}.svc", "web.{ns}.svc.cluster.local", "web.{ns}", "a.b.{ns}"),
    *("web.other.svc", "x.example.com", "x.y.example.com", "x.gold.example", "open.example"),
    *("api.z.corp.example", "Web.{ns}.svc", "X.Example.com", "-bad-.example.com", "a..b"),
    *("1.2.3.4", "*.1.2.3.4", "example.com", "web.{ns}.svc."),
    # Boundaries: labels of 63 and 64 characters, names of 253 and 254.
    *(f"{'s' * 63}.{{ns}}.svc", f"{'s' * 64}.{{ns}}.svc", f"{'s' * 63}.{{ns}}.svc.cluster.local"),
    *(".".join(["n" * 63] * 3 + ["n" * 61]), ".".join(["n" * 63] * 3 + ["n" * 62])),
    "\u212aelvin.{ns}.svc",
]
URIS = [
    *("spiffe://cluster.local/ns/{ns}/sa/web", "spiffe://cluster.local/ns/other/sa/web"),
    *("spiffe://cluster.local/ns/shared/sa/x", "https://api.example.com/v1", "spiffe://x/ns/a"),
    *("spiffe://cluster.local/ns/{ns}/../sa/x", "SPIFFE://cluster.local/ns/{ns}/sa/web"),
    "spiffe://cluster.local/ns/{ns}/sa/web?x",
]
EMAILS = ["dev@example.com", "ops1@example.org", "x@evil.example", "bad@@x", "A@Example.COM"]
IPS = ["10.1.2.3", "192.168.1.1", "192.168.1.2", "2001:db8::1", "::ffff:10.0.0.1", "010.1.2.3"]
_PREFIX_253 = ".".join(["p" * 63] * 3 + ["p" * 61])
TEMPLATES = [
    *(None, {"labels": {"app": "x"}}, {"labels": {"certsmith.dev/x": "y"}}),
    # Boundaries of keys ([prefix/]name: prefix 253, name 63) and label values (63).
    *({"labels": {f"{_PREFIX_253}/app": "x"}}, {"labels": {f"{_PREFIX_253}p/app": "x"}}),
    *({"annotations": {f"{_PREFIX_253}/a": "x"}}, {"annotations": {f"{_PREFIX_253}p/a": "x"}}),
    *({"labels": {"k" * 63: "v" * 63}}, {"labels": {"k" * 64: "v"}}, {"labels": {"k": "v" * 64}}),
    {"annotations": {f"x/{'k' * 64}": "v"}},
]
CNS = ["web.{ns}.svc", "x.example.com", "postgres", "dev@example.com", "10.1.2.3", "Web.A.svc"]
ISSUERS = [admission_cases.AUTHORITY, None, "adm-missing"]


def lists(pool: list[str], most: int) -> st.SearchStrategy[list[str] | None]:
    return st.one_of(st.none(), st.lists(st.sampled_from(pool), min_size=0, max_size=most))


SPECS = st.fixed_dictionaries(
    {
        "namespace": st.sampled_from(sorted(admission_cases.NAMESPACES)),
        "issuer": st.sampled_from(ISSUERS),
        "dnsNames": lists(NAMES, 4),
        "uris": lists(URIS, 2),
        "emailAddresses": lists(EMAILS, 2),
        "ipAddresses": lists(IPS, 2),
        "commonName": st.one_of(st.none(), st.sampled_from(CNS)),
        "duration": st.sampled_from([None, "1h", "90s", "1h30m", "0.5h", "2160h"]),
        "renewBefore": st.sampled_from([None, "10m", "59m", "30m"]),
        "usages": st.sampled_from(
            [None, ["digital signature"], ["cert sign"], ["ocsp signing"], ["key agreement"]]
        ),
        "subject": st.sampled_from(
            [
                *(None, {"organizations": ["acme"]}, {"countries": ["de"]}),
                *({"organizations": ["o" * 64]}, {"organizations": ["o" * 65]}),
                *({"serialNumber": "1" * 64}, {"serialNumber": "1" * 65}),
            ]
        ),
        "secretTemplate": st.sampled_from(TEMPLATES),
    }
)


def operator_verdict(
    api_client: client.ApiClient, namespace: str, spec: dict[str, Any]
) -> str | None:
    """The message the operator refuses `spec` with (as the webhook and the signing-time
    check do), or None when it accepts it."""
    try:
        parsed = model.parse_certificate_spec(spec)
    except model.InvalidSpec as invalid:
        return str(invalid)
    try:
        authority = client.CustomObjectsApi(api_client).get_cluster_custom_object(
            GROUP, VERSION, AUTHORITIES, parsed.issuer_name
        )
    except client.ApiException as error:
        if error.status != 404:
            raise
        return None
    try:
        grants = isolation.parse_grants((authority.get("spec") or {}).get("policy"))
    except model.InvalidSpec:
        grants = ()
    labels = client.CoreV1Api(api_client).read_namespace(namespace).metadata.labels or {}
    violations = isolation.evaluate(
        namespace=namespace,
        namespace_labels=labels,
        spec=parsed,
        grants=grants,
        trust_domain=admission_cases.TRUST_DOMAIN,
    )
    if not violations:
        return None
    return "; ".join(map(str, violations))


# What a field's rules read besides the field itself.
_READS = {"renewBefore": ("duration",), "renewBeforePercentage": ("duration",)}
_READS |= {"usages": ("privateKey",), "subject": ("commonName",)}


def refused_alone(spec: dict[str, Any], field: str) -> bool:
    """Whether the operator refuses spec.<field> (with what its rules read) in an
    otherwise valid spec, naming that field."""
    alone = {"secretName": "t", "dnsNames": ["web.example.com"]}
    for key in (field, *_READS.get(field, ())):
        if key in spec:
            alone[key] = spec[key]
    try:
        model.parse_certificate_spec(alone)
    except model.InvalidSpec as invalid:
        return invalid.field.startswith(f"spec.{field}")
    return False


@settings(
    max_examples=int(os.environ.get("CERTSMITH_ADMISSION_EXAMPLES", "80")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(drawn=SPECS)
def test_admitted_exactly_when_the_operator_accepts(api_client, table, drawn: dict[str, Any]):
    namespace, issuer = drawn.pop("namespace"), drawn.pop("issuer")
    spec: dict[str, Any] = {"secretName": "prop-tls"}
    for key, value in drawn.items():
        if value is not None:
            spec[key] = (
                [v.replace("{ns}", namespace) for v in value]
                if isinstance(value, list) and value and isinstance(value[0], str)
                else value.replace("{ns}", namespace)
                if isinstance(value, str)
                else value
            )
    if issuer is not None:
        spec["issuerRef"] = {"name": issuer}
    judge, message = answer(api_client, namespace, spec)
    # What the apiserver stored would carry its defaults; the operator reads those.
    stored = {"privateKey": {"algorithm": "ECDSA", "encoding": "PKCS8"}, **spec}
    stored.setdefault("issuerRef", {"name": model.DEFAULT_ISSUER})
    verdict = operator_verdict(api_client, namespace, stored)
    if judge is None:
        assert verdict is None, f"admitted, but the operator refuses: {verdict}"
        return
    assert verdict is not None, f"refused by the {judge} ({message}), the operator accepts"
    operator_message = verdict
    if judge == "schema":
        # The schema names every field it refuses, the operator the first in its order.
        for named in set(re.findall(r"\bspec\.([A-Za-z]+)", message)):
            assert refused_alone(stored, named), (named, message)
    else:
        assert message == operator_message


def test_the_operator_leaves_the_policy_to_the_install(api_client, kubeconfig, running_operator):
    """The install owns the policy and its binding: one loosened and the other deleted stay
    so through serving checks (the operator never writes them); a Certificate the policy
    would have refused is admitted and never signed (PolicyDenied, naming the field) until
    the install applies them again."""
    admission = client.AdmissionregistrationV1Api(api_client)
    name = admission_policy.POLICY_NAME
    admission.patch_validating_admission_policy(
        name,
        [
            {"op": "replace", "path": "/spec/failurePolicy", "value": "Ignore"},
            {"op": "replace", "path": "/spec/validations/0/expression", "value": "true"},
        ],
    )
    admission.delete_validating_admission_policy_binding(name)
    own = {"dnsNames": [f"web.{OPERATOR_NAMESPACE}.svc"]}
    certificate = f"own-{uuid.uuid4().hex[:6]}"
    objects = client.CustomObjectsApi(api_client)
    try:
        settled(lambda: answer(api_client, OPERATOR_NAMESPACE, own) == (None, None), "unbound")
        certs.create(api_client, OPERATOR_NAMESPACE, certs.certificate(certificate, **own))
        refused = wait_for(
            lambda: certs.condition(certs.get(api_client, OPERATOR_NAMESPACE, certificate)),
            timeout=30,
            what=f"{certificate} judged by the operator",
        )
        assert (refused["status"], refused["reason"]) == ("False", "PolicyDenied")
        assert refused["message"] == isolation.operator_namespace_refusal(
            OPERATOR_NAMESPACE, OPERATOR_NAMESPACE
        )
        time.sleep(serving.CHECK_PERIOD + 5)
        policy = admission.read_validating_admission_policy(name).spec
        assert (policy.failure_policy, policy.validations[0].expression) == ("Ignore", "true")
        with pytest.raises(client.ApiException) as gone:
            admission.read_validating_admission_policy_binding(name)
        assert gone.value.status == 404
    finally:
        with contextlib.suppress(client.ApiException):
            objects.delete_namespaced_custom_object(
                GROUP, VERSION, OPERATOR_NAMESPACE, certs.PLURAL, certificate
            )
        install_admission(kubeconfig, f"https://127.0.0.1:{running_operator.webhook_port}")
    # The apiserver compiles them again a moment later (its policy source refreshes each 1 s).
    settled(lambda: answer(api_client, OPERATOR_NAMESPACE, own)[0] == "policy", "policy in force")
