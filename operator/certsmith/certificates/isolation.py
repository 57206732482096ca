"""Namespace isolation: which names a Certificate in a namespace may carry.

By default a Certificate in namespace N may name only N's own identities:
SPIFFE URIs `spiffe://<trust domain>/ns/N/...` and cluster service names
`<svc>.N.svc`, `<svc>.N.svc.cluster.local` and the search-path short form `<svc>.N`
(and wildcards inside those zones). The short form is N's own only when N is no zone of
anyone else: not a top-level domain of the Public Suffix List (`com`, `shop`, `dev`, ...),
not a special-use name (`local`, `test`, ...) and not a label of the cluster's own zones.
The commonName is judged like a DNS name. Anything else needs a grant from the cluster
admin on the CertificateAuthority: `spec.policy.grants[]` maps a namespace selector to
allowed name patterns.

The names of the cluster's own apiserver, the Service `kubernetes` in namespace `default`
(`kubernetes`, `kubernetes.default`, `kubernetes.default.svc`,
`kubernetes.default.svc.cluster.local`, and the wildcards of those zones that cover them:
`apiserver_name`), are no namespace's own, `default`'s included: a certificate for them lets
its holder pose as the apiserver to every client that trusts the authority (in-cluster
clients reach it by those names). They need a grant that names them exactly, never one
whose wildcard happens to match.
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import publicsuffixlist

from certsmith.api import model

CLUSTER_DOMAIN = "cluster.local"
# Single-label names reserved for special use, that no namespace owns: RFC 6761 (test,
# localhost, invalid, example), RFC 6762 (local; appendix G: intranet, internal, private,
# corp, home, lan), RFC 7686 (onion), RFC 9476 (alt), RFC 3172 (arpa); localdomain, the
# zone of `localhost.localdomain` in /etc/hosts of many systems (resolving to loopback).
SPECIAL_USE_NAMES = frozenset(
    {"test", "localhost", "invalid", "example", "local", "onion", "alt", "arpa", "localdomain"}
    | {"intranet", "internal", "private", "corp", "home", "lan"}
)


APISERVER_SERVICE = ("default", "kubernetes")
"""(namespace, name) of the Service through which pods reach kube-apiserver."""


def _apiserver_names() -> frozenset[str]:
    namespace, service = APISERVER_SERVICE
    zones = (namespace, f"{namespace}.svc", f"{namespace}.svc.{CLUSTER_DOMAIN}")
    return frozenset({service, *(f"{service}.{zone}" for zone in zones)}) | frozenset(
        f"*.{zone}" for zone in zones
    )


APISERVER_NAMES = _apiserver_names()
"""The apiserver Service's names and the wildcards that cover them (lowercase)."""


def apiserver_name(name: str) -> bool:
    """Whether the DNS name (any case) is, or as a wildcard covers, a name of the cluster's
    apiserver Service (APISERVER_NAMES)."""
    return name.lower() in APISERVER_NAMES


@dataclass(frozen=True)
class Violation:
    """A name the namespace may not carry: `field` is its path in the spec (e.g.
    `spec.dnsNames[1]`), `rule` why not."""

    field: str
    value: str
    rule: str

    def __str__(self) -> str:
        return f"{self.field}: {self.value!r} is not allowed in this namespace ({self.rule})"


@dataclass(frozen=True)
class Grant:
    """Extra names for namespaces matching `selector`; patterns use * as a wildcard."""

    selector: Mapping[str, Any]
    dns_names: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()
    email_addresses: tuple[str, ...] = ()
    ip_ranges: tuple[str, ...] = ()


SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def check_label_selector(selector: Any, field: str) -> None:
    """A Kubernetes LabelSelector (matchLabels, matchExpressions), or model.InvalidSpec naming
    the bad part under `field`. The CRDs keep selectors schemaless, and a selector this code
    misread (an unknown operator, `in` for `In`) must not select every namespace."""
    if selector is None:
        return
    if not isinstance(selector, Mapping):
        raise model.InvalidSpec(field, "must be a label selector object")
    labels = selector.get("matchLabels") or {}
    if not isinstance(labels, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise model.InvalidSpec(f"{field}.matchLabels", "must map strings to strings")
    expressions = selector.get("matchExpressions") or []
    if not isinstance(expressions, list):
        raise model.InvalidSpec(f"{field}.matchExpressions", "must be a list")
    for index, expression in enumerate(expressions):
        where = f"{field}.matchExpressions[{index}]"
        if not isinstance(expression, Mapping) or not isinstance(expression.get("key"), str):
            raise model.InvalidSpec(where, "needs a key")
        operator, values = expression.get("operator"), expression.get("values") or []
        if operator not in SELECTOR_OPERATORS:
            raise model.InvalidSpec(
                f"{where}.operator",
                f"{operator!r} is not one of {', '.join(SELECTOR_OPERATORS)}",
            )
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise model.InvalidSpec(f"{where}.values", "must be a list of strings")
        if (operator in ("In", "NotIn")) != bool(values):
            needs = "needs values" if operator in ("In", "NotIn") else "takes no values"
            raise model.InvalidSpec(f"{where}.values", f"{operator} {needs}")


_DNS_PATTERN_LABEL = re.compile(r"[a-z0-9*]([a-z0-9*-]{0,61}[a-z0-9*])?", re.ASCII)


def _check_patterns(entry: Mapping[str, Any], where: str) -> None:
    """Each dnsNames, uris, emailAddresses and ipRanges entry of one grant is well-formed,
    or InvalidSpec naming it (`spec.policy.grants[i].ipRanges[j]`): a typo must be an error
    the user sees, not a grant that silently allows nothing. Email address patterns are
    fnmatch patterns, any string."""
    for key, problem in (
        ("dnsNames", _dns_pattern_problem),
        ("uris", _uri_pattern_problem),
        ("emailAddresses", lambda _: None),
        ("ipRanges", _ip_range_problem),
    ):
        values = entry.get(key) or []
        if not isinstance(values, list):
            raise model.InvalidSpec(f"{where}.{key}", "must be a list of strings")
        for index, value in enumerate(values):
            found = problem(value) if isinstance(value, str) else "must be a string"
            if found is not None:
                raise model.InvalidSpec(f"{where}.{key}[{index}]", f"{value!r}: {found}")


def _dns_pattern_problem(pattern: str) -> str | None:
    # ASCII before lowering: str.lower() maps the Kelvin sign to 'k'.
    labels = pattern.lower().split(".") if pattern.isascii() else [""]
    if len(pattern) > 253 or not all(_DNS_PATTERN_LABEL.fullmatch(label) for label in labels):
        return "not a DNS name pattern (labels of a-z, 0-9, '-' and '*', separated by dots)"
    return None


def _uri_pattern_problem(pattern: str) -> str | None:
    try:
        parts = urlsplit(pattern)
    except ValueError as error:
        return f"not a URI pattern ({error})"
    if not parts.scheme or not (parts.netloc or parts.path):
        return "not a URI pattern (a scheme and a host or path, e.g. spiffe://cluster.local/ns/*)"
    return None


def _ip_range_problem(text: str) -> str | None:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return "not an IP address or CIDR range (e.g. 10.0.0.0/8)"
    return None


def parse_grants(policy: Mapping[str, Any] | None) -> tuple[Grant, ...]:
    """spec.policy.grants of a CertificateAuthority; model.InvalidSpec naming the grant's
    field when a namespaceSelector is not a label selector (a grant is never widened by a
    selector read wrongly) or a dnsNames, uris, emailAddresses or ipRanges entry is
    malformed."""
    grants = []
    for index, entry in enumerate((policy or {}).get("grants") or []):
        selector = entry.get("namespaceSelector") or {}
        check_label_selector(selector, f"spec.policy.grants[{index}].namespaceSelector")
        _check_patterns(entry, f"spec.policy.grants[{index}]")
        grants.append(
            Grant(
                selector=selector,
                dns_names=tuple(entry.get("dnsNames") or ()),
                uris=tuple(entry.get("uris") or ()),
                email_addresses=tuple(entry.get("emailAddresses") or ()),
                ip_ranges=tuple(entry.get("ipRanges") or ()),
            )
        )
    return tuple(grants)


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics; an empty selector matches every namespace, and
    an expression with an operator Kubernetes does not define matches none (fail closed)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = set(expression.get("values") or ())
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
        if operator not in SELECTOR_OPERATORS:
            return False
    return True


@functools.cache
def public_suffix_tlds() -> frozenset[str]:
    """The top-level label of every rule of the Public Suffix List that publicsuffixlist
    ships (IDNs as xn-- A-labels): `za` counts although only `co.za` and others are listed."""
    tlds = set()
    with open(publicsuffixlist.PSLFILE, encoding="utf-8") as rules:
        for line in rules:
            # publicsuffix.org/list: a rule is a line's first word; `//` starts a comment.
            words = line.split()
            if words and not words[0].startswith("//"):
                tld = words[0].rsplit(".", 1)[-1].lstrip("!")
                tlds.add(tld.encode("idna").decode("ascii").lower())
    return frozenset(tlds)


def short_form_refusal(namespace: str) -> str | None:
    """Why `<svc>.<namespace>` is not the namespace's own zone, or None when it is.

    The short form resolves inside the cluster through the pods' DNS search path, but as a
    name it lies in the top-level zone `<namespace>`: a public or special-use zone (a
    certificate for `example.com` in namespace `com`), or one of the cluster's own zones.
    """
    if namespace in SPECIAL_USE_NAMES:
        return f"{namespace} is a special-use domain name"
    if namespace == "svc" or namespace in CLUSTER_DOMAIN.split("."):
        return f"{namespace} is a label of the cluster's own zones (svc.{CLUSTER_DOMAIN})"
    if namespace in public_suffix_tlds():
        return f"{namespace} is a top-level domain of the Public Suffix List"
    return None


def _own_zones(namespace: str) -> tuple[str, ...]:
    """The zones whose one-label names (services, or `*`) are the namespace's own."""
    zones = (f"{namespace}.svc", f"{namespace}.svc.{CLUSTER_DOMAIN}")
    return zones if short_form_refusal(namespace) else (namespace, *zones)


def _own_dns_name(name: str, namespace: str) -> bool:
    name = name.lower()
    for zone in _own_zones(namespace):
        host, dot, rest = name.partition(".")
        # One label: the service (or a wildcard for every service of the namespace).
        if dot and host and rest == zone:
            return True
    return False


def _own_uri(uri: str, namespace: str, trust_domain: str) -> bool:
    # Segments as parsed, not a string prefix: spec validation has refused dot segments,
    # percent-encoding and the like, so what is compared is what a consumer reads.
    if urlsplit(uri).scheme != "spiffe":
        return False
    spiffe = model.parse_spiffe_id(uri)
    return (
        spiffe.trust_domain == trust_domain
        and len(spiffe.segments) >= 3
        and spiffe.segments[:2] == ("ns", namespace)
    )


def _dns_pattern_matches(pattern: str, name: str) -> bool:
    # '*' stays inside one label, as in a certificate wildcard.
    regex = re.escape(pattern.lower()).replace(r"\*", "[^.]*")
    return re.fullmatch(regex, name.lower()) is not None


def _uri_pattern_matches(pattern: str, uri: str) -> bool:
    # Part by part, as a consumer parses them: a '*' cannot reach from the host into the
    # path, a fragment or userinfo ('https://*.example.com/*' must not match
    # 'https://evil.test#.example.com/'). In the host it stays inside one label.
    try:
        want, have = urlsplit(pattern), urlsplit(uri)
    except ValueError:
        return False  # a malformed grant grants nothing
    return (
        want.scheme == have.scheme
        and _dns_pattern_matches(want.netloc, have.netloc)
        and all(
            fnmatch.fnmatchcase(getattr(have, part), getattr(want, part))
            for part in ("path", "query", "fragment")
        )
    )


def _in_range(address: ipaddress.IPv4Address | ipaddress.IPv6Address, text: str) -> bool:
    try:
        return address in ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False  # a malformed grant grants nothing


def operator_namespace_refusal(namespace: str, operator_namespace: str) -> str | None:
    """Why no Certificate may live in `namespace`, or None: the operator's own namespace
    (CERTSMITH_NAMESPACE) holds CA keys and nothing else, so a leaf is never written there
    and no Secret name there is ever contested between a Certificate and an authority."""
    if namespace != operator_namespace:
        return None
    return (
        f"metadata.namespace: {namespace!r} is certsmith's own namespace, which holds only the "
        "keys of CertificateAuthorities; no Certificate is signed there: create it in another "
        "namespace"
    )


Named = tuple[str, str]
"""A name to judge and where it comes from, e.g. ("spec.dnsNames[1]", "web.shop.svc")."""


def evaluate(
    *,
    namespace: str,
    namespace_labels: Mapping[str, str],
    spec: model.CertificateSpec,
    grants: Sequence[Grant],
    trust_domain: str,
) -> list[Violation]:
    """Every name the spec carries that the namespace may not have; empty means allowed.

    `spec` comes from model.parse_certificate_spec, so a commonName that is not a DNS name
    is one of its other names, judged as that name. Violations come in the order of the
    spec's fields: DNS names (the commonName last), URIs, email addresses, IP addresses.
    """
    applicable = _applicable(grants, namespace_labels)
    dns_names = [(f"spec.dnsNames[{i}]", n) for i, n in enumerate(spec.dns_names)]
    leaf_names = model.leaf_dns_names(spec)
    if len(leaf_names) > len(spec.dns_names):
        # A DNS-name commonName goes into the SAN too; it is judged like spec.dnsNames.
        dns_names.append(("spec.commonName", leaf_names[0]))
    uris = [(f"spec.uris[{i}]", uri) for i, uri in enumerate(spec.uris)]
    return [
        *_dns_violations(namespace, dns_names, applicable),
        *_uri_violations(namespace, uris, applicable, trust_domain),
        *_email_violations(spec, applicable),
        *_ip_violations(spec, applicable),
    ]


def evaluate_names(
    *,
    namespace: str,
    namespace_labels: Mapping[str, str],
    dns_names: Sequence[Named],
    uris: Sequence[Named],
    grants: Sequence[Grant],
    trust_domain: str,
) -> list[Violation]:
    """`evaluate` for names that come from elsewhere than a Certificate's spec (a pod
    certificate's): DNS names (valid host names, `*.` allowed) and URIs (a SPIFFE ID
    parsed as `model.parse_spiffe_id` accepts) with the field each comes from, judged by
    the same rules and grants, in that order."""
    applicable = _applicable(grants, namespace_labels)
    return [
        *_dns_violations(namespace, dns_names, applicable),
        *_uri_violations(namespace, uris, applicable, trust_domain),
    ]


def uri_granted(uri: str, *, grants: Sequence[Grant], namespace_labels: Mapping[str, str]) -> bool:
    """Whether a grant of a namespace with `namespace_labels` allows `uri` (its `uris`
    patterns only; the namespace's own SPIFFE IDs are not counted)."""
    applicable = _applicable(grants, namespace_labels)
    return any(_uri_pattern_matches(p, uri) for g in applicable for p in g.uris)


def _applicable(grants: Sequence[Grant], namespace_labels: Mapping[str, str]) -> list[Grant]:
    return [g for g in grants if selector_matches(g.selector, namespace_labels)]


_APISERVER_RULE = (
    f"a name of the cluster's apiserver, Service {APISERVER_SERVICE[0]}/{APISERVER_SERVICE[1]}, "
    "is no namespace's own: it needs a grant naming it exactly"
)


def _own_rule(namespace: str) -> str:
    return f"namespace {namespace} may name its own services and SPIFFE IDs only"


def _dns_violations(
    namespace: str, candidates: Sequence[Named], applicable: Sequence[Grant]
) -> list[Violation]:
    refusal = short_form_refusal(namespace)
    violations = []
    for field, name in candidates:
        patterns = [p for g in applicable for p in g.dns_names]
        if apiserver_name(name):
            if any(p.lower() == name.lower() for p in patterns):
                continue
            violations.append(Violation(field, name, _APISERVER_RULE))
            continue
        if _own_dns_name(name, namespace):
            continue
        if any(_dns_pattern_matches(p, name) for p in patterns):
            continue
        rule = _own_rule(namespace)
        if refusal and name.lower().endswith(f".{namespace}"):
            rule += f"; {namespace} is no zone of its own: {refusal}"
        violations.append(Violation(field, name, rule))
    return violations


def _uri_violations(
    namespace: str,
    candidates: Sequence[Named],
    applicable: Sequence[Grant],
    trust_domain: str,
) -> list[Violation]:
    return [
        Violation(field, uri, _own_rule(namespace))
        for field, uri in candidates
        if not _own_uri(uri, namespace, trust_domain)
        and not any(_uri_pattern_matches(p, uri) for g in applicable for p in g.uris)
    ]


def _email_violations(spec: model.CertificateSpec, applicable: Sequence[Grant]) -> list[Violation]:
    return [
        Violation(f"spec.emailAddresses[{index}]", email, "email addresses need a grant")
        for index, email in enumerate(spec.email_addresses)
        if not any(
            fnmatch.fnmatchcase(email.lower(), p.lower())
            for g in applicable
            for p in g.email_addresses
        )
    ]


def _ip_violations(spec: model.CertificateSpec, applicable: Sequence[Grant]) -> list[Violation]:
    violations = []
    for index, text in enumerate(spec.ip_addresses):
        address = ipaddress.ip_address(text)
        if not any(_in_range(address, r) for g in applicable for r in g.ip_ranges):
            violations.append(
                Violation(f"spec.ipAddresses[{index}]", text, "IP addresses need a grant")
            )
    return violations
