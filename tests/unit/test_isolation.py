"""Namespace isolation: own names pass, others need a grant naming them."""

from __future__ import annotations

import pytest

from certsmith.api import model
from certsmith.certificates import isolation
from tests import builders


def spec(**fields) -> model.CertificateSpec:
    return model.parse_certificate_spec(builders.spec({"secretName": "s"}, **fields))


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


def rules(namespace="a", **fields) -> list[str]:
    return [
        str(v)
        for v in isolation.evaluate(
            namespace=namespace,
            namespace_labels={},
            spec=spec(**fields),
            grants=(),
            trust_domain="cluster.local",
        )
    ]


# Namespaces whose name is a zone of someone else: the search-path short form <svc>.N
# would be a name in that zone (a public TLD, a special-use name, the cluster's own zones).
NOT_A_ZONE_OF_ITS_OWN = [
    ("com", "top-level domain of the Public Suffix List"),
    ("shop", "top-level domain of the Public Suffix List"),
    ("dev", "top-level domain of the Public Suffix List"),
    ("io", "top-level domain of the Public Suffix List"),
    ("za", "top-level domain of the Public Suffix List"),  # only co.za etc. are listed
    ("ck", "top-level domain of the Public Suffix List"),  # listed as *.ck
    ("xn--p1ai", "top-level domain of the Public Suffix List"),  # .рф
    ("arpa", "special-use domain name"),
    ("local", "special-use domain name"),
    ("localhost", "special-use domain name"),
    ("test", "special-use domain name"),
    ("example", "special-use domain name"),
    ("invalid", "special-use domain name"),
    ("onion", "special-use domain name"),
    ("alt", "special-use domain name"),
    ("internal", "special-use domain name"),
    ("lan", "special-use domain name"),
    ("localdomain", "special-use domain name"),  # localhost.localdomain
    ("svc", "label of the cluster's own zones"),
    ("cluster", "label of the cluster's own zones"),
]


@pytest.mark.parametrize(("namespace", "reason"), NOT_A_ZONE_OF_ITS_OWN)
def test_the_short_form_is_not_a_namespaces_own_when_its_name_is_another_zone(namespace, reason):
    refusal = isolation.short_form_refusal(namespace)
    assert refusal is not None and reason in refusal
    for name in (f"web.{namespace}", f"*.{namespace}"):
        assert violations(namespace=namespace, dnsNames=[name]) == ["spec.dnsNames[0]"]
        (rule,) = rules(namespace=namespace, dnsNames=[name])
        assert f"{namespace} is no zone of its own: {refusal}" in rule
    # Its names under svc remain its own.
    own = [f"web.{namespace}.svc", f"*.{namespace}.svc.cluster.local"]
    assert violations(namespace=namespace, dnsNames=own) == []


@pytest.mark.parametrize("namespace", ["t1", "default", "kube-system", "certsmith-demo", "x"])
def test_the_short_form_is_own_for_ordinary_namespace_names(namespace):
    assert isolation.short_form_refusal(namespace) is None
    found = violations(namespace=namespace, dnsNames=[f"web.{namespace}", f"*.{namespace}"])
    # `*.default` would cover the apiserver's `kubernetes.default`: never default's own.
    assert found == (["spec.dnsNames[1]"] if namespace == "default" else [])


def test_a_namespace_named_com_cannot_name_example_com():
    assert violations(namespace="com", dnsNames=["example.com", "*.com"]) == [
        "spec.dnsNames[0]",
        "spec.dnsNames[1]",
    ]
    assert violations(namespace="com", commonName="example.com") == ["spec.commonName"]


@pytest.mark.parametrize(
    ("fields", "refused"),
    [
        ({"commonName": "postgres"}, ["spec.commonName"]),
        ({"commonName": "web.b.svc"}, ["spec.commonName"]),
        ({"commonName": "example.com", "dnsNames": ["web.a.svc"]}, ["spec.commonName"]),
        ({"commonName": "web.a.svc"}, []),
        ({"commonName": "*.a.svc.cluster.local"}, []),
        # Judged once, as the spec.dnsNames entry it repeats.
        ({"commonName": "Web.B.svc", "dnsNames": ["web.b.svc"]}, ["spec.dnsNames[0]"]),
        ({"commonName": "WEB.A.svc", "dnsNames": ["web.a.svc"]}, []),
        # A commonName that is the certificate's URI is judged as that URI.
        (
            {
                "commonName": "spiffe://cluster.local/ns/b/sa/x",
                "uris": ["spiffe://cluster.local/ns/b/sa/x"],
            },
            ["spec.uris[0]"],
        ),
        (
            {
                "commonName": "spiffe://cluster.local/ns/a/sa/x",
                "uris": ["spiffe://cluster.local/ns/a/sa/x"],
            },
            [],
        ),
        ({"commonName": "10.1.2.3", "ipAddresses": ["10.1.2.3"]}, ["spec.ipAddresses[0]"]),
    ],
)
def test_the_common_name_is_judged_like_the_names_it_is(fields, refused):
    assert violations(**fields) == refused


def test_a_grant_can_allow_a_common_name():
    grant = isolation.Grant(selector={}, dns_names=("postgres", "*.db.example.com"))
    assert violations(grants=(grant,), commonName="postgres") == []
    assert violations(grants=(grant,), commonName="main.db.example.com") == []
    assert violations(grants=(grant,), commonName="mysql") == ["spec.commonName"]


@pytest.mark.parametrize(
    ("uri", "own"),
    [
        ("spiffe://cluster.local/ns/a/sa/web", True),
        ("spiffe://cluster.local/ns/a/x", True),
        ("spiffe://cluster.local/ns/a", False),  # the namespace itself, no workload
        ("spiffe://cluster.local/ns/b/sa/web", False),
        ("spiffe://cluster.local/ns/ab/sa/web", False),
        ("spiffe://cluster.local/ns-a/sa/web", False),
        ("spiffe://cluster.local/x/ns/a/sa/web", False),
        ("spiffe://other.domain/ns/a/sa/web", False),
        ("spiffe://cluster.local.evil/ns/a/sa/web", False),
        ("https://cluster.local/ns/a/sa/web", False),
    ],
)
def test_own_spiffe_ids_are_compared_segment_by_segment(uri, own):
    assert violations(uris=[uri]) == ([] if own else ["spec.uris[0]"])


@pytest.mark.parametrize(
    ("uri", "granted"),
    [
        ("https://api.payments.example.com/v1", True),
        ("https://API.Payments.example.com/v1", True),  # hosts are case-insensitive
        ("https://a.b.payments.example.com/v1", False),  # '*' stays in one label
        ("https://evil.test#.payments.example.com/v1", False),  # '*' cannot reach a fragment
        ("https://evil.test/.payments.example.com/v1", False),  # nor the path
        ("https://x@evil.test/?.payments.example.com/", False),
        ("https://api.payments.example.com/v1?admin=1", False),  # nor a query
        ("http://api.payments.example.com/v1", False),
    ],
)
def test_granted_uri_patterns_match_part_by_part(uri, granted):
    grant = isolation.Grant(selector={}, uris=("https://*.payments.example.com/*",))
    assert violations(grants=(grant,), uris=[uri]) == ([] if granted else ["spec.uris[0]"])


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


def test_an_unknown_selector_operator_matches_no_namespace():
    # `in` for `In`: read as no constraint, it would grant names to every namespace.
    selector = {"matchExpressions": [{"key": "team", "operator": "in", "values": ["payments"]}]}
    assert isolation.selector_matches(selector, {"team": "web"}) is False


@pytest.mark.parametrize(
    ("selector", "field", "words"),
    [
        ("team=a", "spec.policy.grants[1].namespaceSelector", "label selector object"),
        ({"matchLabels": {"team": 1}}, "grants[1].namespaceSelector.matchLabels", "strings"),
        (
            {"matchExpressions": [{"key": "team", "operator": "in", "values": ["a"]}]},
            "grants[1].namespaceSelector.matchExpressions[0].operator",
            "'in' is not one of In, NotIn, Exists, DoesNotExist",
        ),
        (
            {"matchExpressions": [{"key": "team", "operator": "In"}]},
            "matchExpressions[0].values",
            "In needs values",
        ),
    ],
)
def test_a_grant_with_a_bad_selector_is_refused_naming_the_grant(selector, field, words):
    policy = {
        "grants": [
            {"namespaceSelector": {}, "dnsNames": ["*.example.org"]},
            {"namespaceSelector": selector, "dnsNames": ["*.example.com"]},
        ]
    }
    with pytest.raises(model.InvalidSpec) as raised:
        isolation.parse_grants(policy)
    assert raised.value.field.endswith(field) and words in str(raised.value)


def test_the_operator_namespace_holds_no_certificate():
    refusal = isolation.operator_namespace_refusal("certsmith", "certsmith")
    assert refusal is not None
    assert refusal.startswith("metadata.namespace: 'certsmith' is certsmith's own namespace")
    assert isolation.operator_namespace_refusal("ops", "ops") is not None
    assert isolation.operator_namespace_refusal("certsmith", "ops") is None
    assert isolation.operator_namespace_refusal("team-a", "certsmith") is None


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("ipRanges", "garbage", "not an IP address or CIDR range"),
        ("ipRanges", "10.0.0.0/33", "not an IP address or CIDR range"),
        ("dnsNames", "bad name.example.com", "not a DNS name pattern"),
        ("dnsNames", "a..example.com", "not a DNS name pattern"),
        ("dnsNames", "-a.example.com", "not a DNS name pattern"),
        ("uris", "no-scheme/path", "not a URI pattern"),
        ("uris", "https://[::1", "not a URI pattern"),
        # ASCII only: str.lower() maps the Kelvin sign to 'k'; a full match of each label.
        ("dnsNames", "\u212a.example.com", "not a DNS name pattern"),
        ("dnsNames", "a.example.com\n", "not a DNS name pattern"),
    ],
)
def test_a_malformed_grant_pattern_is_refused_naming_it(key, value, words):
    valid = {
        "dnsNames": "*.example.com",
        "uris": "spiffe://cluster.local/ns/*",
        "ipRanges": "::1",
    }
    policy = {
        "grants": [
            {
                "namespaceSelector": {},
                "dnsNames": ["*.example.org"],
                "uris": ["spiffe://cluster.local/ns/*/sa/*", "https://*.example.com/*?q=*"],
                "emailAddresses": ["*@example.com", "dev+*@Example.COM"],
                "ipRanges": ["10.0.0.0/8", "fd00::/8", "10.1.2.3", "10.1.2.3/8"],
            },
            {"namespaceSelector": {}, key: [valid[key], value]},
        ]
    }
    with pytest.raises(model.InvalidSpec) as raised:
        isolation.parse_grants(policy)
    assert raised.value.field == f"spec.policy.grants[1].{key}[1]"
    assert words in str(raised.value) and repr(value) in str(raised.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("emailAddresses", "a=b@example.com"),
        ("emailAddresses", "o'brien@example.com"),
        ("emailAddresses", "x!y@example.com"),
        ("emailAddresses", "[ab]@example.com"),
        ("ipRanges", "10.0.0.0/255.0.0.0"),
        ("ipRanges", "::ffff:0:0/96"),
        ("uris", "https://a.example.com/[ab]"),
        ("uris", "spiffe://Cluster.Local/ns/*"),
    ],
)
def test_grant_pattern_forms_accepted_before_stay_accepted(key, value):
    """Forms an authority may already carry (an upgrade must not make it InvalidSpec)."""
    (grant,) = isolation.parse_grants({"grants": [{"namespaceSelector": {}, key: [value]}]})
    assert getattr(
        grant, {"emailAddresses": "email_addresses", "ipRanges": "ip_ranges"}.get(key, key)
    ) == (value,)


@pytest.mark.parametrize(
    ("name", "apiserver"),
    [
        ("kubernetes", True),
        ("kubernetes.default", True),
        ("kubernetes.default.svc", True),
        ("Kubernetes.Default.SVC", True),
        ("kubernetes.default.svc.cluster.local", True),
        ("*.default", True),
        ("*.default.svc", True),
        ("*.default.svc.cluster.local", True),
        ("web.default.svc", False),
        ("kubernetes.kube-system.svc", False),
        ("kubernetes.default.svc.example.com", False),
        ("x.kubernetes.default.svc", False),
    ],
)
def test_the_apiserver_services_names_and_the_wildcards_covering_them(name, apiserver):
    assert isolation.apiserver_name(name) is apiserver


@pytest.mark.parametrize(
    "name",
    [
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "*.default.svc",
        "*.default.svc.cluster.local",
        "*.default",
    ],
)
def test_the_apiserver_names_are_not_defaults_own(name):
    (found,) = rules(namespace="default", dnsNames=[name])
    assert found == (
        f"spec.dnsNames[0]: {name!r} is not allowed in this namespace (a name of the cluster's "
        "apiserver, Service default/kubernetes, is no namespace's own: it needs a grant naming "
        "it exactly)"
    )
    assert violations(namespace="default", commonName=name) == ["spec.commonName"]
    # default's other services stay its own.
    assert violations(namespace="default", dnsNames=["web.default.svc", "*.web.default"]) == [
        "spec.dnsNames[1]"
    ]


def test_only_a_grant_naming_an_apiserver_name_exactly_allows_it():
    exact = isolation.Grant(selector={}, dns_names=("Kubernetes.default.svc",))
    wildcard = isolation.Grant(selector={}, dns_names=("*.default.svc", "kubernetes.*", "*.svc"))
    assert violations(namespace="ops", grants=(exact,), dnsNames=["kubernetes.default.svc"]) == []
    assert violations(
        namespace="ops", grants=(wildcard,), dnsNames=["kubernetes.default.svc", "kubernetes"]
    ) == ["spec.dnsNames[0]", "spec.dnsNames[1]"]
    # The wildcard grant's exact pattern is itself granted: it names it.
    assert violations(namespace="ops", grants=(wildcard,), dnsNames=["*.default.svc"]) == []


def test_a_pod_certificates_names_are_judged_by_the_same_rule():
    found = isolation.evaluate_names(
        namespace="default",
        namespace_labels={},
        dns_names=[("annotation", "kubernetes.default.svc"), ("service", "web.default.svc")],
        uris=[],
        grants=(),
        trust_domain="cluster.local",
    )
    assert [(v.field, v.value) for v in found] == [("annotation", "kubernetes.default.svc")]
