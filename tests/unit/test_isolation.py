"""Namespace isolation: own names pass, others need a grant naming them."""

from __future__ import annotations

import pytest

from certsmith import isolation, model


def spec(**fields) -> model.CertificateSpec:
    return model.parse_certificate_spec({"secretName": "s", **fields})


def violations(namespace="a", labels=None, grants=(), **fields) -> list[str]:
    return [
        v.field
        for v in isolation.evaluate(
            namespace=namespace,
            namespace_labels=labels or {},
            spec=spec(**fields),
            grants=grants,
            trust_domain="cluster.local",
        )
    ]


@pytest.mark.parametrize(
    "name", ["web.a", "web.a.svc", "web.a.svc.cluster.local", "*.a.svc", "*.a.svc.cluster.local"]
)
def test_own_service_names_are_allowed(name):
    assert violations(dnsNames=[name]) == []


@pytest.mark.parametrize(
    "name",
    ["web.b.svc.cluster.local", "web.b", "web", "example.com", "x.web.a.svc", "a.svc", "*.svc"],
)
def test_other_names_are_refused(name):
    assert violations(dnsNames=[name]) == ["spec.dnsNames[0]"]


def test_spiffe_ids_of_other_namespaces_are_refused():
    assert violations(uris=["spiffe://cluster.local/ns/a/sa/web"]) == []
    assert violations(uris=["spiffe://cluster.local/ns/b/sa/web"]) == ["spec.uris[0]"]
    assert violations(uris=["spiffe://other.domain/ns/a/sa/web"]) == ["spec.uris[0]"]


def test_ips_and_emails_need_grants():
    assert violations(ipAddresses=["10.1.2.3"], emailAddresses=["ops@example.com"]) == [
        "spec.emailAddresses[0]",
        "spec.ipAddresses[0]",
    ]


def test_grants_apply_only_to_selected_namespaces():
    grant = isolation.Grant(
        selector={"matchLabels": {"team": "payments"}},
        dns_names=("*.payments.example.com",),
        ip_ranges=("10.0.0.0/8",),
        uris=("spiffe://cluster.local/ns/b/*",),
    )
    names = {
        "dnsNames": ["api.payments.example.com"],
        "ipAddresses": ["10.9.9.9"],
        "uris": ["spiffe://cluster.local/ns/b/sa/web"],
    }
    assert violations(labels={"team": "payments"}, grants=(grant,), **names) == []
    assert len(violations(labels={"team": "other"}, grants=(grant,), **names)) == 3
    # A wildcard in a grant stays inside one label.
    assert violations(
        labels={"team": "payments"}, grants=(grant,), dnsNames=["a.b.payments.example.com"]
    ) == ["spec.dnsNames[0]"]


def test_malformed_grant_ranges_grant_nothing():
    grant = isolation.Grant(selector={}, ip_ranges=("not-a-range",))
    assert violations(grants=(grant,), ipAddresses=["10.0.0.1"]) == ["spec.ipAddresses[0]"]


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ({}, {}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "1"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        (
            {"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]},
            {"a": "2"},
            True,
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]},
            {"a": "1"},
            False,
        ),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {}, True),
    ],
)
def test_label_selectors(selector, labels, matches):
    assert isolation.selector_matches(selector, labels) is matches
