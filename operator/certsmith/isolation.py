"""Namespace isolation: which names a Certificate in a namespace may carry.

By default a Certificate in namespace N may name only N's own identities:
SPIFFE URIs `spiffe://<trust domain>/ns/N/...` and cluster service names
`<svc>.N`, `<svc>.N.svc`, `<svc>.N.svc.cluster.local` (and wildcards inside those zones).
Anything else needs a grant from the cluster admin on the CertificateAuthority:
`spec.policy.grants[]` maps a namespace selector to allowed name patterns.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from certsmith import model


@dataclass(frozen=True)
class Violation:
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


def parse_grants(policy: Mapping[str, Any] | None) -> tuple[Grant, ...]:
    grants = []
    for entry in (policy or {}).get("grants") or []:
        grants.append(
            Grant(
                selector=entry.get("namespaceSelector") or {},
                dns_names=tuple(entry.get("dnsNames") or ()),
                uris=tuple(entry.get("uris") or ()),
                email_addresses=tuple(entry.get("emailAddresses") or ()),
                ip_ranges=tuple(entry.get("ipRanges") or ()),
            )
        )
    return tuple(grants)


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics; an empty selector matches every namespace."""
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
    return True


def _own_dns_name(name: str, namespace: str) -> bool:
    name = name.lower().rstrip(".")
    for zone in (f"{namespace}", f"{namespace}.svc", f"{namespace}.svc.cluster.local"):
        suffix = f".{zone}"
        if name.endswith(suffix):
            host = name[: -len(suffix)]
            # One label: the service (or a wildcard for every service of the namespace).
            if host and "." not in host:
                return True
    return False


def _own_uri(uri: str, namespace: str, trust_domain: str) -> bool:
    return uri.startswith(f"spiffe://{trust_domain}/ns/{namespace}/")


def _dns_pattern_matches(pattern: str, name: str) -> bool:
    # '*' stays inside one label, as in a certificate wildcard.
    regex = "^" + re.escape(pattern.lower()).replace(r"\*", "[^.]*") + "$"
    return re.match(regex, name.lower()) is not None


def _in_range(address: ipaddress.IPv4Address | ipaddress.IPv6Address, text: str) -> bool:
    try:
        return address in ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False  # a malformed grant grants nothing


def evaluate(
    *,
    namespace: str,
    namespace_labels: Mapping[str, str],
    spec: model.CertificateSpec,
    grants: Sequence[Grant],
    trust_domain: str,
) -> list[Violation]:
    """Every name the spec carries that the namespace may not have; empty means allowed."""
    applicable = [g for g in grants if selector_matches(g.selector, namespace_labels)]
    violations: list[Violation] = []
    own_rule = f"namespace {namespace} may name its own services and SPIFFE IDs only"

    dns_candidates = [(f"spec.dnsNames[{i}]", n) for i, n in enumerate(spec.dns_names)]
    if spec.common_name and "." in spec.common_name:
        dns_candidates.append(("spec.commonName", spec.common_name))
    for field, name in dns_candidates:
        if _own_dns_name(name, namespace):
            continue
        if any(_dns_pattern_matches(p, name) for g in applicable for p in g.dns_names):
            continue
        violations.append(Violation(field, name, own_rule))

    for index, uri in enumerate(spec.uris):
        if _own_uri(uri, namespace, trust_domain):
            continue
        if any(fnmatch.fnmatchcase(uri, p) for g in applicable for p in g.uris):
            continue
        violations.append(Violation(f"spec.uris[{index}]", uri, own_rule))

    for index, email in enumerate(spec.email_addresses):
        if any(
            fnmatch.fnmatchcase(email.lower(), p.lower())
            for g in applicable
            for p in g.email_addresses
        ):
            continue
        violations.append(
            Violation(f"spec.emailAddresses[{index}]", email, "email addresses need a grant")
        )

    for index, text in enumerate(spec.ip_addresses):
        address = ipaddress.ip_address(text)
        if any(_in_range(address, r) for g in applicable for r in g.ip_ranges):
            continue
        violations.append(
            Violation(f"spec.ipAddresses[{index}]", text, "IP addresses need a grant")
        )
    return violations
