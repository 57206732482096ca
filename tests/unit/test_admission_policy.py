"""The ValidatingAdmissionPolicy's table against the operator's own rules, and its shape."""

from __future__ import annotations

import pytest

from certsmith.admission import admission_policy, webhook_config
from certsmith.api import model
from certsmith.certificates import isolation
from tests import admission_cases


def operator_message(case: admission_cases.Case) -> str | None:
    """What the operator (and the webhook) refuses `case` with, or None."""
    try:
        spec = model.parse_certificate_spec(
            {**case.spec, "issuerRef": {"name": admission_cases.AUTHORITY}}
        )
    except model.InvalidSpec as invalid:
        return str(invalid)
    violations = isolation.evaluate(
        namespace=case.namespace,
        namespace_labels=admission_cases.NAMESPACES[case.namespace],
        spec=spec,
        grants=isolation.parse_grants({"grants": admission_cases.GRANTS}),
        trust_domain=admission_cases.TRUST_DOMAIN,
    )
    return "; ".join(map(str, violations)) or None


@pytest.mark.parametrize("case", admission_cases.CASES, ids=lambda c: c.id)
def test_table_messages_are_the_operators(case: admission_cases.Case) -> None:
    assert operator_message(case) == case.message


@pytest.mark.parametrize(
    ("namespace", "reason"),
    [
        ("zip", "zip is a top-level domain of the Public Suffix List"),
        ("lan", "lan is a special-use domain name"),
        ("local", "local is a special-use domain name"),
        ("svc", "svc is a label of the cluster's own zones (svc.cluster.local)"),
        ("cluster", "cluster is a label of the cluster's own zones (svc.cluster.local)"),
        ("adm-plain", None),
    ],
)
def test_short_form_refusals_match_the_policy_categories(namespace: str, reason: str | None):
    assert isolation.short_form_refusal(namespace) == reason
    refusal = next(
        v["expression"]
        for v in admission_policy.policy(operator_namespace="certsmith", trust_domain="td")["spec"][
            "variables"
        ]
        if v["name"] == "refusal"
    )
    listed = f"'{namespace}'" in refusal
    assert listed == (reason is not None)


def test_policy_reads_the_operator_settings() -> None:
    body = admission_policy.policy(operator_namespace="certs-system", trust_domain="corp.example")
    conditions = {c["name"]: c["expression"] for c in body["spec"]["matchConditions"]}
    assert conditions["judged-in-cel"].startswith("request.namespace != 'certs-system' && ")
    assert conditions["spec-changed"] == admission_policy.SPEC_CHANGED
    uri = next(v for v in body["spec"]["variables"] if v["name"] == "uriViolations")
    assert "'spiffe://corp.example/ns/' + request.namespace + '/'" in uri["expression"]
    assert body["spec"]["paramKind"] == {
        "apiVersion": "certsmith.dev/v1alpha1",
        "kind": "CertificateAuthority",
    }
    assert admission_policy.binding()["spec"]["paramRef"] == {
        "selector": {},
        "parameterNotFoundAction": "Allow",
    }


def test_webhook_is_called_only_when_cel_cannot_judge() -> None:
    matched = webhook_config.validating_match_conditions("certsmith")
    conditions = {c["name"]: c["expression"] for c in matched}
    assert conditions == {
        "spec-changed": admission_policy.SPEC_CHANGED,
        "not-judged-in-cel": f"!({admission_policy.judged_in_cel('certsmith')})",
    }


@pytest.mark.parametrize(
    ("edit", "drifted"),
    [
        (lambda spec: None, False),
        (lambda spec: spec.update(failurePolicy="Ignore"), True),
        (lambda spec: spec["validations"].clear(), True),
        (lambda spec: spec.update(auditAnnotations=[]), False),  # a field it does not set
    ],
)
def test_policy_drift(edit, drifted: bool) -> None:
    desired = admission_policy.policy(operator_namespace="certsmith", trust_domain="td")
    live = {"spec": {**desired["spec"], "validations": list(desired["spec"]["validations"])}}
    edit(live["spec"])
    assert webhook_config.drifted(live, desired) is drifted
