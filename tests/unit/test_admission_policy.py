"""The admission table against the operator's own rules, and the CEL policy's shape."""

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


@pytest.mark.parametrize("case", admission_cases.CASES, ids=lambda c: c.id)
def test_cel_admits_only_what_needs_no_grant(case: admission_cases.Case) -> None:
    """What CEL judges (the webhook not called) the operator admits with no grant at all."""
    if case.judge != "cel":
        return
    spec = model.parse_certificate_spec(case.spec)
    assert case.message is None
    assert not isolation.evaluate(
        namespace=case.namespace,
        namespace_labels={},
        spec=spec,
        grants=(),
        trust_domain=admission_cases.TRUST_DOMAIN,
    )


def test_cel_owns_only_the_svc_zones_short_forms_go_to_the_webhook() -> None:
    condition = admission_policy.judged_in_cel("certsmith", "td")
    assert "[request.namespace + '.svc', request.namespace + '.svc.cluster.local']" in condition
    # No Public Suffix List in it: the short form `<svc>.<ns>` is the webhook's.
    assert "'zip'" not in condition and len(condition) < 10_000


def test_cel_reads_the_operator_settings() -> None:
    condition = admission_policy.judged_in_cel("certs-system", "corp.example")
    assert condition.startswith("request.namespace == 'certs-system' || ")
    assert "'spiffe://corp.example/ns/' + request.namespace" in condition
    body = admission_policy.policy(operator_namespace="certs-system")
    assert "paramKind" not in body["spec"]
    assert body["spec"]["matchConditions"] == [
        {"name": "spec-changed-or-decision", "expression": admission_policy.JUDGED}
    ]
    assert body["spec"]["validations"][0] == {
        "expression": (
            "has(request.subResource) && request.subResource == 'status' || "
            "request.namespace != 'certs-system'"
        ),
        "message": isolation.operator_namespace_refusal("certs-system", "certs-system"),
        "reason": "Forbidden",
    }
    status_rules = body["spec"]["validations"][1:]
    assert all(
        rule["expression"].startswith(f"!({admission_policy.STATUS_WRITE}) || ")
        for rule in status_rules
    )
    approval, auto_approved, signed = (rule["expression"] for rule in status_rules[2:])
    assert approval.endswith(f"|| {admission_policy.APPROVAL_AUTHORIZED}")
    assert ".namespace(object.metadata.namespace)" in admission_policy.APPROVAL_AUTHORIZED
    assert "'/AutoApproved'" in auto_approved
    assert auto_approved.endswith(f"|| {admission_policy.SIGN_AUTHORIZED}")
    assert signed.endswith(f"variables.signedPartUnchanged || {admission_policy.SIGN_AUTHORIZED}")
    assert ".check('sign')" in admission_policy.SIGN_AUTHORIZED
    assert "paramRef" not in admission_policy.binding()["spec"]


def test_webhook_is_called_only_when_cel_cannot_judge() -> None:
    matched = webhook_config.validating_match_conditions("certsmith", "td")
    conditions = {c["name"]: c["expression"] for c in matched}
    assert conditions == {
        "spec-changed": admission_policy.SPEC_CHANGED,
        "not-judged-in-cel": f"!({admission_policy.judged_in_cel('certsmith', 'td')})",
    }


@pytest.mark.parametrize(
    ("constant", "python_limit"),
    [
        (admission_policy.MAX_DNS_NAME, "a" * 63 + ("." + "a" * 63) * 2 + "." + "a" * 61),
        (admission_policy.MAX_DNS1123, "a" * 63 + ("." + "a" * 63) * 2 + "." + "a" * 61),
    ],
)
def test_name_limits_are_the_models(constant: int, python_limit: str) -> None:
    """The longest name model accepts is exactly the policy's limit; one more is refused."""
    assert len(python_limit) == constant
    assert model.is_dns_name(python_limit)
    assert not model.is_dns_name(python_limit + "a")
    assert model._is_dns1123(python_limit)
    assert not model._is_dns1123(python_limit + "a")
