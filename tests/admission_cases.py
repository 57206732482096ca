"""One table of Certificate admissions, checked against the operator's rules
(tests/unit/test_admission_policy.py: model.parse_certificate_spec and
isolation.evaluate) and against the real apiserver's ValidatingAdmissionPolicy and webhook
(tests/integration/test_admission_policy.py), so the messages of the two cannot drift."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

AUTHORITY = "admission-table"
TRUST_DOMAIN = "cluster.local"

NAMESPACES = {
    "adm-plain": {},
    "adm-team-a": {"adm-team": "a"},
    "adm-gold": {"adm-tier": "gold"},
    "adm-blocked": {"adm-block": "x"},
    "zip": {},  # a top-level domain of the Public Suffix List
    "lan": {},  # a special-use name (RFC 6762 appendix G)
    "cluster": {},  # a label of the cluster's own zones
    "default": {"kubernetes.io/metadata.name": "default"},  # the apiserver Service's
    "adm-apiserver": {"adm-apiserver": "granted"},  # granted one apiserver name exactly
}
"""The namespaces of the table and their labels."""

GRANTS: list[dict[str, Any]] = [
    {
        "namespaceSelector": {"matchLabels": {"adm-team": "a"}},
        "dnsNames": ["*.example.com", "api.*.corp.example"],
        "uris": ["spiffe://cluster.local/ns/shared/*", "https://*.example.com/*"],
        "emailAddresses": ["*@example.com", "ops?@example.org"],
        "ipRanges": ["10.0.0.0/8", "192.168.1.1", "2001:db8::/32"],
    },
    {
        "namespaceSelector": {
            "matchExpressions": [{"key": "adm-tier", "operator": "In", "values": ["gold"]}]
        },
        "dnsNames": ["*.gold.example"],
    },
    {
        "namespaceSelector": {
            "matchExpressions": [
                {"key": "adm-block", "operator": "DoesNotExist"},
                {"key": "adm-team", "operator": "NotIn", "values": ["a"]},
            ]
        },
        "dnsNames": ["open.example"],
    },
    {
        "namespaceSelector": {"matchLabels": {"adm-apiserver": "granted"}},
        "dnsNames": ["kubernetes.default.svc", "*.default.svc.cluster.local"],
    },
    {
        # A wildcard grant never reaches the apiserver's names.
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "default"}},
        "dnsNames": ["kubernetes.*.svc", "kubernetes.*.svc.cluster.local", "kubernetes.*"],
    },
]
"""spec.policy.grants of the table's CertificateAuthority AUTHORITY."""

OWN = "may name its own services and SPIFFE IDs only"
APISERVER = (
    "a name of the cluster's apiserver, Service default/kubernetes, is no namespace's own: it "
    "needs a grant naming it exactly"
)
LONG_PREFIX = ".".join(["a" * 63] * 3 + ["b" * 62])
"""A DNS-1123 subdomain of 254 characters (labels of 63): one past the limit."""
LONG_LABEL = "s" * 63
"""A DNS label of the longest length."""


@dataclass(frozen=True)
class Case:
    """A Certificate `spec` (issuerRef AUTHORITY added) in `namespace`: `message` is what
    the apiserver refuses it with (None: admitted), `judge` who refuses or admits it: "cel"
    (admission_policy.judged_in_cel: only the namespace's own names in a spec CEL proves
    valid, the webhook not called) or "webhook" (any name needing a grant, any spec CEL
    cannot prove valid)."""

    id: str
    namespace: str
    spec: dict[str, Any]
    message: str | None
    judge: str = "webhook"


def _names(field: str, *values: str) -> dict[str, Any]:
    return {"secretName": "table-tls", field: list(values)}


CASES = [
    Case(
        "own service names",
        "adm-plain",
        _names("dnsNames", "web.adm-plain.svc", "*.adm-plain.svc.cluster.local", "web.adm-plain"),
        None,
        judge="cel",
    ),
    Case(
        "another namespace's service and a public name",
        "adm-plain",
        _names("dnsNames", "web.adm-plain.svc", "web.other.svc", "example.com"),
        f"spec.dnsNames[1]: 'web.other.svc' is not allowed in this namespace (namespace "
        f"adm-plain {OWN}); spec.dnsNames[2]: 'example.com' is not allowed in this namespace "
        f"(namespace adm-plain {OWN})",
    ),
    Case(
        "granted DNS patterns, '*' within one label",
        "adm-team-a",
        _names(
            "dnsNames", "a.example.com", "*.example.com", "api.x.corp.example", "b.c.example.com"
        ),
        f"spec.dnsNames[3]: 'b.c.example.com' is not allowed in this namespace (namespace "
        f"adm-team-a {OWN})",
    ),
    Case(
        "the grant of another namespace's labels",
        "adm-plain",
        _names("dnsNames", "a.example.com"),
        f"spec.dnsNames[0]: 'a.example.com' is not allowed in this namespace (namespace "
        f"adm-plain {OWN})",
    ),
    Case(
        "a commonName outside the SANs",
        "adm-plain",
        {"secretName": "t", "commonName": "www.example.net", "dnsNames": ["web.adm-plain.svc"]},
        f"spec.commonName: 'www.example.net' is not allowed in this namespace (namespace "
        f"adm-plain {OWN})",
    ),
    Case(
        "a commonName listed in dnsNames is judged once",
        "adm-plain",
        {"secretName": "t", "commonName": "www.example.net", "dnsNames": ["www.example.net"]},
        f"spec.dnsNames[0]: 'www.example.net' is not allowed in this namespace (namespace "
        f"adm-plain {OWN})",
    ),
    Case(
        "its own SPIFFE ID",
        "adm-plain",
        _names("uris", "spiffe://cluster.local/ns/adm-plain/sa/web"),
        None,
        judge="cel",
    ),
    Case(
        "another namespace's SPIFFE ID",
        "adm-plain",
        _names("uris", "spiffe://cluster.local/ns/other/sa/web"),
        "spec.uris[0]: 'spiffe://cluster.local/ns/other/sa/web' is not allowed in this "
        f"namespace (namespace adm-plain {OWN})",
    ),
    Case(
        "another trust domain",
        "adm-plain",
        _names("uris", "spiffe://other.example/ns/adm-plain/sa/web"),
        "spec.uris[0]: 'spiffe://other.example/ns/adm-plain/sa/web' is not allowed in this "
        f"namespace (namespace adm-plain {OWN})",
    ),
    Case(
        "a granted SPIFFE ID pattern",
        "adm-team-a",
        _names("uris", "spiffe://cluster.local/ns/shared/sa/web"),
        None,
    ),
    Case(
        "granted and ungranted email addresses",
        "adm-team-a",
        _names("emailAddresses", "dev@example.com", "ops1@example.org", "x@evil.example"),
        "spec.emailAddresses[2]: 'x@evil.example' is not allowed in this namespace (email "
        "addresses need a grant)",
    ),
    Case(
        "granted and ungranted IP addresses, canonical in the message",
        "adm-team-a",
        _names(
            "ipAddresses",
            *("10.1.2.3", "192.168.1.1", "192.168.1.2", "2001:db8:0:0:1:0:0:1", "2001:0db9::1"),
        ),
        "spec.ipAddresses[2]: '192.168.1.2' is not allowed in this namespace (IP addresses "
        "need a grant); spec.ipAddresses[4]: '2001:db9::1' is not allowed in this namespace "
        "(IP addresses need a grant)",
    ),
    Case(
        "every kind of name, in the order of the fields",
        "adm-plain",
        {
            "secretName": "t",
            "ipAddresses": ["10.0.0.1"],
            "emailAddresses": ["a@example.com"],
            "uris": ["spiffe://cluster.local/ns/x/sa/y"],
            "dnsNames": ["a.example.com"],
        },
        f"spec.dnsNames[0]: 'a.example.com' is not allowed in this namespace (namespace "
        f"adm-plain {OWN}); spec.uris[0]: 'spiffe://cluster.local/ns/x/sa/y' is not allowed "
        f"in this namespace (namespace adm-plain {OWN}); spec.emailAddresses[0]: "
        "'a@example.com' is not allowed in this namespace (email addresses need a grant); "
        "spec.ipAddresses[0]: '10.0.0.1' is not allowed in this namespace (IP addresses need "
        "a grant)",
    ),
    Case(
        "a namespace named after a top-level domain",
        "zip",
        _names("dnsNames", "web.zip.svc", "web.zip", "a.b.zip"),
        f"spec.dnsNames[1]: 'web.zip' is not allowed in this namespace (namespace zip {OWN}; "
        "zip is no zone of its own: zip is a top-level domain of the Public Suffix List); "
        f"spec.dnsNames[2]: 'a.b.zip' is not allowed in this namespace (namespace zip {OWN}; "
        "zip is no zone of its own: zip is a top-level domain of the Public Suffix List)",
    ),
    Case(
        "a namespace named after a special-use name",
        "lan",
        _names("dnsNames", "web.lan"),
        f"spec.dnsNames[0]: 'web.lan' is not allowed in this namespace (namespace lan {OWN}; "
        "lan is no zone of its own: lan is a special-use domain name)",
    ),
    Case(
        "a namespace named after a label of the cluster's zones",
        "cluster",
        _names("dnsNames", "web.cluster"),
        f"spec.dnsNames[0]: 'web.cluster' is not allowed in this namespace (namespace cluster "
        f"{OWN}; cluster is no zone of its own: cluster is a label of the cluster's own zones "
        "(svc.cluster.local))",
    ),
    Case("a matchExpressions In grant", "adm-gold", _names("dnsNames", "x.gold.example"), None),
    Case(
        "NotIn and DoesNotExist grants",
        "adm-plain",
        _names("dnsNames", "open.example"),
        None,
    ),
    Case(
        "DoesNotExist refuses a namespace with the label",
        "adm-blocked",
        _names("dnsNames", "open.example"),
        "spec.dnsNames[0]: 'open.example' is not allowed in this namespace (namespace "
        f"adm-blocked {OWN})",
    ),
    Case(
        "the short form of a namespace named after a top-level domain needs a grant",
        "zip",
        _names("dnsNames", "web.zip.svc", "*.zip.svc.cluster.local"),
        None,
        judge="cel",
    ),
    Case(
        "own names and a commonName among them",
        "adm-team-a",
        {"secretName": "t", "commonName": "web.adm-team-a", "dnsNames": ["web.adm-team-a.svc"]},
        None,
        # The short form's zone depends on the Public Suffix List: the webhook judges it.
        judge="webhook",
    ),
    Case(
        "own names and a granted one: the webhook reads the grant",
        "adm-team-a",
        _names("dnsNames", "web.adm-team-a.svc", "a.example.com"),
        None,
    ),
    Case(
        "upper case: the webhook judges",
        "adm-plain",
        _names("dnsNames", "Web.Other.svc"),
        f"spec.dnsNames[0]: 'Web.Other.svc' is not allowed in this namespace (namespace "
        f"adm-plain {OWN})",
    ),
    Case(
        "a URL: the webhook judges",
        "adm-team-a",
        _names("uris", "https://api.example.com/v1"),
        None,
    ),
    Case(
        "an invalid name: the webhook names it",
        "adm-plain",
        _names("dnsNames", "web.adm-plain.svc", "-bad-.example.com"),
        "spec.dnsNames[1]: '-bad-.example.com' is not a valid DNS name",
    ),
    Case(
        "a Unicode look-alike of K (the Kelvin sign) is no DNS name",
        "adm-plain",
        _names("dnsNames", "\u212aelvin.adm-plain.svc"),
        "spec.dnsNames[0]: '\u212aelvin.adm-plain.svc' is not a valid DNS name",
    ),
    Case(
        "a secretTemplate key prefix of 253 characters",
        "adm-plain",
        {
            "secretName": "t",
            "dnsNames": ["web.adm-plain.svc"],
            "secretTemplate": {"labels": {f"{LONG_PREFIX[:253]}/app": "x"}},
        },
        None,
        judge="cel",
    ),
    Case(
        "a secretTemplate key prefix of 254 characters",
        "adm-plain",
        {
            "secretName": "t",
            "dnsNames": ["web.adm-plain.svc"],
            "secretTemplate": {"annotations": {f"{LONG_PREFIX}/app": "x"}},
        },
        f"spec.secretTemplate.annotations[{LONG_PREFIX}/app]: key must be [dns-prefix/]name "
        "with a name of at most 63 characters",
    ),
    Case(
        "an own service name of 63 characters",
        "adm-plain",
        _names("dnsNames", f"{LONG_LABEL}.adm-plain.svc.cluster.local"),
        None,
        judge="cel",
    ),
    Case(
        "an own service name of 64 characters",
        "adm-plain",
        _names("dnsNames", f"{LONG_LABEL}s.adm-plain.svc"),
        f"spec.dnsNames[0]: '{LONG_LABEL}s.adm-plain.svc' is not a valid DNS name",
    ),
]

_MANY = [f"w{i:02d}.other.example" for i in range(30)]
CASES += [
    Case(
        "more refusals than a policy message holds (5 KiB): the webhook judges",
        "adm-plain",
        _names("dnsNames", *_MANY),
        "; ".join(
            f"spec.dnsNames[{i}]: '{name}' is not allowed in this namespace (namespace "
            f"adm-plain {OWN})"
            for i, name in enumerate(_MANY)
        ),
    ),
    Case(
        "more names than CEL compares pairwise: the webhook judges",
        "adm-plain",
        _names("dnsNames", *(f"w{i}.adm-plain.svc" for i in range(101))),
        None,
    ),
    Case(
        "default's own services, not the apiserver's names",
        "default",
        _names("dnsNames", "web.default.svc", "web.default.svc.cluster.local", "web.default"),
        None,
        judge="cel",
    ),
    Case(
        "the apiserver's names are not default's own, nor a wildcard grant's",
        "default",
        _names(
            "dnsNames",
            "kubernetes.default.svc",
            "kubernetes.default",
            "*.default.svc",
            "kubernetes.default.svc.cluster.local",
            "*.default",
        ),
        "; ".join(
            f"spec.dnsNames[{i}]: '{name}' is not allowed in this namespace ({APISERVER})"
            for i, name in enumerate(
                [
                    "kubernetes.default.svc",
                    "kubernetes.default",
                    "*.default.svc",
                    "kubernetes.default.svc.cluster.local",
                    "*.default",
                ]
            )
        ),
    ),
    Case(
        "the apiserver's name as a commonName",
        "default",
        {"secretName": "t", "commonName": "kubernetes.default.svc.cluster.local"},
        "spec.commonName: 'kubernetes.default.svc.cluster.local' is not allowed in this "
        f"namespace ({APISERVER})",
    ),
    Case(
        "the apiserver's names granted exactly",
        "adm-apiserver",
        _names("dnsNames", "kubernetes.default.svc", "*.default.svc.cluster.local"),
        None,
    ),
    Case(
        "an apiserver name granted is not another one",
        "adm-apiserver",
        _names("dnsNames", "kubernetes.default"),
        f"spec.dnsNames[0]: 'kubernetes.default' is not allowed in this namespace ({APISERVER})",
    ),
]
