"""X.509 name constraints (RFC 5280 4.2.1.10) of a subordinate CertificateAuthority.

A CA certificate carrying them limits every certificate below it: verifiers (OpenSSL, Go's
crypto/x509, rustls, browsers) refuse a chain whose leaf names a DNS name, IP address, URI
host or email address outside a permitted subtree, or inside an excluded one, whoever
signed the leaf. certsmith judges the same rules before it signs, so it never issues a leaf
the clients would refuse.

The spec shape is cert-manager's `spec.nameConstraints` (permitted / excluded, each with
dnsDomains, ipRanges, uriDomains, emailAddresses). Semantics, as RFC 5280 and verifiers
apply them:
- dnsDomains: `example.com` matches example.com and every name below it; `.example.com`
  only names below it. A wildcard `*.x.example.com` stands for every one-label name below
  x.example.com: it is permitted when they all are, and refused when any is excluded.
- ipRanges: CIDR blocks (`10.0.0.0/8`, `2001:db8::/32`).
- uriDomains: the URI's host; `example.com` matches that host exactly, `.example.com` hosts
  below it (RFC 5280: a URI constraint with a leading period). A URI whose host OpenSSL
  and Go would read differently (userinfo, IP literal) is refused under any uriDomains.
- An IPv4-mapped IPv6 address is refused under any ipRanges (Go clients accept it for the
  IPv4 address, OpenSSL judges it as IPv6).
- emailAddresses: `user@host` a mailbox, `host` every mailbox at that host, `.host` every
  mailbox at hosts below it.
Permitted subtrees of one type constrain only names of that type (a DNS-only constraint
leaves IP addresses free, as RFC 5280 says); excluded subtrees always win.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509

from certsmith.api.model import CertificateSpec, InvalidSpec, is_dns_name, leaf_dns_names

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
KINDS = ("dnsDomains", "ipRanges", "uriDomains", "emailAddresses")
MAX_SUBTREES = 64
"""Per list: enough for a partner's zones, small enough to judge every name against."""


@dataclass(frozen=True)
class Subtrees:
    """One side (permitted or excluded) of the constraints, normalised (lowercase, CIDR)."""

    dns_domains: tuple[str, ...] = ()
    ip_ranges: tuple[IPNetwork, ...] = ()
    uri_domains: tuple[str, ...] = ()
    email_addresses: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.dns_domains or self.ip_ranges or self.uri_domains or self.email_addresses)

    def general_names(self) -> list[x509.GeneralName]:
        """The GeneralSubtrees of the extension (IP ranges as address/mask, RFC 5280)."""
        return [
            *(x509.DNSName(d) for d in self.dns_domains),
            *(x509.IPAddress(n) for n in self.ip_ranges),
            *(x509.UniformResourceIdentifier(u) for u in self.uri_domains),
            *(x509.RFC822Name(e) for e in self.email_addresses),
        ]


@dataclass(frozen=True)
class NameConstraints:
    """What a CA may sign for; both sides empty means unconstrained (no extension)."""

    permitted: Subtrees = field(default_factory=Subtrees)
    excluded: Subtrees = field(default_factory=Subtrees)

    def __bool__(self) -> bool:
        return bool(self.permitted or self.excluded)

    def extension(self) -> x509.NameConstraints | None:
        """The extension for the CA certificate (always critical, RFC 5280 4.2.1.10), or
        None when unconstrained."""
        if not self:
            return None
        return x509.NameConstraints(
            permitted_subtrees=self.permitted.general_names() or None,
            excluded_subtrees=self.excluded.general_names() or None,
        )


def parse(spec: Mapping[str, Any] | None, path: str = "spec.nameConstraints") -> NameConstraints:
    """`spec.nameConstraints` parsed; InvalidSpec naming the entry at fault (a bad CIDR, a
    DNS subtree that is no domain, a URI domain with a scheme, an empty constraint)."""
    if spec is None:
        return NameConstraints()
    if not isinstance(spec, Mapping):
        raise InvalidSpec(path, "must be an object with permitted and/or excluded")
    unknown = sorted(set(spec) - {"permitted", "excluded"})
    if unknown:
        raise InvalidSpec(f"{path}.{unknown[0]}", "unknown field (use permitted or excluded)")
    parsed = NameConstraints(
        permitted=_subtrees(spec.get("permitted"), f"{path}.permitted"),
        excluded=_subtrees(spec.get("excluded"), f"{path}.excluded"),
    )
    _refuse_permitted_within_excluded(parsed, path)
    if not parsed:
        raise InvalidSpec(
            path,
            "is empty: list at least one subtree in permitted or excluded (dnsDomains, "
            "ipRanges, uriDomains, emailAddresses), or remove it",
        )
    return parsed


def _refuse_permitted_within_excluded(constraints: NameConstraints, path: str) -> None:
    """InvalidSpec naming a permitted subtree that an excluded one covers whole: it permits
    nothing (excluded always wins), surely not what was meant."""
    for kind, attribute, within in _SIDES:
        excluded = getattr(constraints.excluded, attribute)
        for index, subtree in enumerate(getattr(constraints.permitted, attribute)):
            cover = next((e for e in excluded if within(subtree, e)), None)
            if cover is not None:
                raise InvalidSpec(
                    f"{path}.permitted.{kind}[{index}]",
                    f"{str(subtree)!r} lies within excluded {str(cover)!r}, so it permits "
                    "nothing (excluded always wins)",
                )


def _subtrees(spec: Any, path: str) -> Subtrees:
    if spec is None:
        return Subtrees()
    if not isinstance(spec, Mapping):
        raise InvalidSpec(path, "must be an object")
    unknown = sorted(set(spec) - set(KINDS))
    if unknown:
        raise InvalidSpec(f"{path}.{unknown[0]}", f"unknown field (use {', '.join(KINDS)})")
    lists: dict[str, list[Any]] = {}
    for kind in KINDS:
        values = spec.get(kind) or []
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise InvalidSpec(f"{path}.{kind}", "must be a list of strings")
        if len(values) > MAX_SUBTREES:
            raise InvalidSpec(f"{path}.{kind}", f"at most {MAX_SUBTREES} entries")
        lists[kind] = [
            _PARSERS[kind](value, f"{path}.{kind}[{index}]") for index, value in enumerate(values)
        ]
    return Subtrees(
        dns_domains=_unique(lists["dnsDomains"]),
        ip_ranges=_unique(lists["ipRanges"]),
        uri_domains=_unique(lists["uriDomains"]),
        email_addresses=_unique(lists["emailAddresses"]),
    )


def _unique(values: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(dict.fromkeys(values))


def _domain(text: str, path: str) -> str:
    """A DNS subtree: a domain, optionally with a leading period (only names below it)."""
    bare = text.removeprefix(".")
    if not bare or "*" in text or not is_dns_name(bare) or _is_ip(bare):
        raise InvalidSpec(
            path,
            f"{text!r} is not a DNS domain (e.g. partner.example, or .partner.example for the "
            "names below it only; no wildcards, no IP addresses)",
        )
    return text.lower()


def _ip_range(text: str, path: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as error:
        raise InvalidSpec(
            path,
            f"{text!r} is not a CIDR block such as 10.20.0.0/16 or 2001:db8::/32 ({error})",
        ) from None


def _uri_domain(text: str, path: str) -> str:
    if "://" in text or "/" in text:
        raise InvalidSpec(
            path, f"{text!r} must be a host such as partner.example, without scheme or path"
        )
    return _domain(text, path)


def _email(text: str, path: str) -> str:
    mailbox, at, host = text.rpartition("@")
    bare = host.removeprefix(".")
    if (at and (not mailbox or host.startswith("."))) or not bare or "@" in mailbox:
        raise InvalidSpec(path, f"{text!r} is not an email constraint{_EMAIL_FORMS}")
    if "*" in host or not is_dns_name(bare) or _is_ip(bare):
        raise InvalidSpec(path, f"{text!r} has no valid host{_EMAIL_FORMS}")
    return f"{mailbox}{at}{host.lower()}"


_EMAIL_FORMS = (
    " (user@partner.example one mailbox, partner.example every mailbox at that host, "
    ".partner.example every mailbox at hosts below it)"
)


_PARSERS = {
    "dnsDomains": _domain,
    "ipRanges": _ip_range,
    "uriDomains": _uri_domain,
    "emailAddresses": _email,
}


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# Matching, as RFC 5280 4.2.1.10 and the verifiers read it.


def dns_in(name: str, subtree: str) -> bool:
    """Whether DNS name `name` (a wildcard judged as its parent domain) is in `subtree`."""
    name = name.lower().removeprefix("*.").rstrip(".")
    if subtree.startswith("."):
        return name.endswith(subtree)
    return name == subtree or name.endswith(f".{subtree}")


def _dns_permitted_by(name: str, subtree: str) -> bool:
    """Whether every name `name` stands for is in `subtree`: a wildcard `*.P` stands for
    each one-label name below P (RFC 6125 6.4.3), so `P` or `.P` contain it whole."""
    if name.startswith("*."):
        return _dns_subtree_within(f".{name[2:].lower().rstrip('.')}", subtree)
    return dns_in(name, subtree)


def _dns_excluded_by(name: str, subtree: str) -> bool:
    """Whether some name `name` stands for is in excluded `subtree`: a wildcard `*.P` meets
    subtree `E` when P is in E, or E is one label below P (`*.acme.example` covers
    internal.acme.example). Go and cryptography refuse such a chain outright, while OpenSSL
    accepts it for the excluded host too, so certsmith never signs one."""
    if not name.startswith("*."):
        return dns_in(name, subtree)
    parent = name[2:].lower().rstrip(".")
    if dns_in(parent, subtree) or subtree == f".{parent}":
        return True
    return not subtree.startswith(".") and subtree.partition(".")[2] == parent


def uri_host(uri: str) -> str | None:
    """The host a URI constraint is matched against, or None when verifiers read it
    differently: OpenSSL takes what follows `://` up to the first `:` or `/`, so a URI
    with userinfo (`https://user@host/`), a query or fragment right after the host, or
    an IP literal is judged by OpenSSL on another string than Go's URL host."""
    _, separator, rest = uri.partition("://")
    if not separator:
        return None
    openssl_host = re.split("[:/]", rest, maxsplit=1)[0].lower()
    try:
        host = urlsplit(uri).hostname
    except ValueError:
        return None
    if not host or host != openssl_host:
        return None
    return host


def _uri_host_in(host: str, subtree: str) -> bool:
    host = host.lower()
    if subtree.startswith("."):
        return host.endswith(subtree)
    return host == subtree


def _email_in(email: str, subtree: str) -> bool:
    mailbox, _, host = email.rpartition("@")
    if "@" in subtree:
        return f"{mailbox}@{host.lower()}" == subtree
    return _uri_host_in(host, subtree)


Named = tuple[str, str]
"""A name and the field it comes from, e.g. ("spec.dnsNames[0]", "api.partner.example")."""


@dataclass(frozen=True)
class Names:
    """The names of a leaf to judge, each with the field it comes from."""

    dns_names: Sequence[Named] = ()
    ip_addresses: Sequence[Named] = ()
    uris: Sequence[Named] = ()
    email_addresses: Sequence[Named] = ()


def spec_names(spec: CertificateSpec, *, where: str | None = None) -> Names:
    """Every name a leaf built from `spec` carries (pki.issue.build_leaf), with its field: a
    DNS-name commonName goes into the SAN, and verifiers judge it like spec.dnsNames.
    `where`: one field for every name (a CSR's `spec.request`, whose names the spec holds)."""

    def field_(path: str) -> str:
        return path if where is None else where

    dns = [(field_(f"spec.dnsNames[{i}]"), n) for i, n in enumerate(spec.dns_names)]
    if len(leaf_dns_names(spec)) > len(spec.dns_names):
        dns.append((field_("spec.commonName"), leaf_dns_names(spec)[0]))
    return Names(
        dns_names=dns,
        ip_addresses=[
            (field_(f"spec.ipAddresses[{i}]"), a) for i, a in enumerate(spec.ip_addresses)
        ],
        uris=[(field_(f"spec.uris[{i}]"), u) for i, u in enumerate(spec.uris)],
        email_addresses=[
            (field_(f"spec.emailAddresses[{i}]"), e) for i, e in enumerate(spec.email_addresses)
        ],
    )


def violations(constraints: NameConstraints, names: Names, *, authority: str) -> list[str]:
    """Why each name outside `constraints` may not be signed, as `field: 'name' is ...`,
    in the order of `names`; empty when every name is inside (or there are none)."""
    permitted, excluded = constraints.permitted, constraints.excluded
    found: list[str] = []

    def judge(
        field_: str,
        value: str,
        allowed: bool,
        denied: bool,
        permitted_: Sequence[str],
        unjudgeable: str | None = None,
    ) -> None:
        if unjudgeable is not None:
            found.append(unjudgeable)
        elif denied:
            found.append(
                f"{field_}: {value!r} is in an excluded subtree of CertificateAuthority "
                f"{authority}'s spec.nameConstraints"
            )
        elif not allowed:
            found.append(
                f"{field_}: {value!r} is outside CertificateAuthority {authority}'s "
                f"spec.nameConstraints (permitted: {', '.join(permitted_)})"
            )

    for where, name in names.dns_names:
        judge(
            where,
            name,
            not permitted.dns_domains
            or any(_dns_permitted_by(name, s) for s in permitted.dns_domains),
            any(_dns_excluded_by(name, s) for s in excluded.dns_domains),
            permitted.dns_domains,
        )
    for where, text in names.ip_addresses:
        address = ipaddress.ip_address(text)
        mapped = _mapped_problem(constraints, where, text, authority)
        judge(
            where,
            text,
            not permitted.ip_ranges or any(address in n for n in permitted.ip_ranges),
            any(address in n for n in excluded.ip_ranges),
            [str(n) for n in permitted.ip_ranges],
            mapped,
        )
    for where, uri in names.uris:
        host = uri_host(uri) or ""
        judge(
            where,
            uri,
            not permitted.uri_domains or any(_uri_host_in(host, s) for s in permitted.uri_domains),
            any(_uri_host_in(host, s) for s in excluded.uri_domains),
            permitted.uri_domains,
            _hostless_problem(constraints, where, uri, authority),
        )
    for where, email in names.email_addresses:
        judge(
            where,
            email,
            not permitted.email_addresses
            or any(_email_in(email, s) for s in permitted.email_addresses),
            any(_email_in(email, s) for s in excluded.email_addresses),
            permitted.email_addresses,
        )
    return found


def _mapped_problem(
    constraints: NameConstraints, where: str, text: str, authority: str
) -> str | None:
    """Why IPv4-mapped IPv6 address `text` may not be signed under IP constraints: OpenSSL
    judges it as IPv6, while Go's clients accept it for the IPv4 address."""
    address = ipaddress.ip_address(text)
    if not (constraints.permitted.ip_ranges or constraints.excluded.ip_ranges):
        return None
    if not isinstance(address, ipaddress.IPv6Address) or address.ipv4_mapped is None:
        return None
    return (
        f"{where}: {text!r} is an IPv4-mapped IPv6 address, which clients do not judge alike "
        f"against CertificateAuthority {authority}'s spec.nameConstraints ipRanges; use the "
        f"IPv4 address {address.ipv4_mapped}"
    )


def _hostless_problem(
    constraints: NameConstraints, where: str, uri: str, authority: str
) -> str | None:
    """Why `uri` may not be signed under URI constraints when it has no host that OpenSSL
    and Go read alike (`uri_host`)."""
    if not (constraints.permitted.uri_domains or constraints.excluded.uri_domains):
        return None
    if uri_host(uri) is not None:
        return None
    return (
        f"{where}: {uri!r} has no host that clients agree on, so it cannot be judged against "
        f"CertificateAuthority {authority}'s spec.nameConstraints uriDomains (write "
        "scheme://host/path: no userinfo, no IP literal)"
    )


# Containment of a subordinate's constraints in its parent's.


def _dns_subtree_within(inner: str, outer: str) -> bool:
    """Every name in subtree `inner` is in subtree `outer`."""
    return inner == outer or dns_in(inner.removeprefix("."), outer)


def _uri_subtree_within(inner: str, outer: str) -> bool:
    if inner == outer:
        return True
    if outer.startswith("."):
        return inner.removeprefix(".").endswith(outer)
    return False


def _email_subtree_within(inner: str, outer: str) -> bool:
    if inner == outer:
        return True
    if "@" in inner:
        return _email_in(inner, outer)
    if "@" in outer:
        return False
    return _uri_subtree_within(inner, outer)


def _ip_within(inner: IPNetwork, outer: IPNetwork) -> bool:
    if isinstance(inner, ipaddress.IPv4Network) and isinstance(outer, ipaddress.IPv4Network):
        return inner.subnet_of(outer)
    if isinstance(inner, ipaddress.IPv6Network) and isinstance(outer, ipaddress.IPv6Network):
        return inner.subnet_of(outer)
    return False


def _overlap(a: Any, b: Any, within: Any) -> bool:
    return bool(within(a, b) or within(b, a))


_SIDES: tuple[tuple[str, str, Any], ...] = (
    ("dnsDomains", "dns_domains", _dns_subtree_within),
    ("ipRanges", "ip_ranges", _ip_within),
    ("uriDomains", "uri_domains", _uri_subtree_within),
    ("emailAddresses", "email_addresses", _email_subtree_within),
)


def outside_parent(
    child: NameConstraints, parent: NameConstraints, *, parent_name: str
) -> list[str]:
    """Why `child` (a subordinate's spec.nameConstraints) lets its CA sign a name `parent`
    forbids; empty when every name the child permits the parent permits too.

    For each kind the parent constrains: each child permitted subtree must lie within a
    parent permitted one (and the child must permit some, or it would permit all), and
    every parent excluded subtree that meets a child permitted one (or any, when the child
    permits all of that kind) must lie within a child excluded one.
    """
    problems: list[str] = []
    for kind, attribute, within in _SIDES:
        parent_permitted = getattr(parent.permitted, attribute)
        parent_excluded = getattr(parent.excluded, attribute)
        child_permitted = getattr(child.permitted, attribute)
        child_excluded = getattr(child.excluded, attribute)
        if parent_permitted:
            if not child_permitted:
                problems.append(
                    f"spec.nameConstraints.permitted.{kind}: required, as the parent "
                    f"CertificateAuthority {parent_name} permits only "
                    f"{', '.join(str(s) for s in parent_permitted)}"
                )
            for index, subtree in enumerate(child_permitted):
                if not any(within(subtree, outer) for outer in parent_permitted):
                    problems.append(
                        f"spec.nameConstraints.permitted.{kind}[{index}]: {str(subtree)!r} is "
                        f"not within the parent CertificateAuthority {parent_name}'s permitted "
                        f"{', '.join(str(s) for s in parent_permitted)}"
                    )
        for subtree in parent_excluded:
            meets = not child_permitted or any(
                _overlap(subtree, p, within) for p in child_permitted
            )
            if meets and not any(within(subtree, e) for e in child_excluded):
                problems.append(
                    f"spec.nameConstraints.excluded.{kind}: must exclude {str(subtree)!r}, "
                    f"which the parent CertificateAuthority {parent_name} excludes"
                )
    return problems


def from_certificate(certificate: x509.Certificate) -> NameConstraints:
    """The name constraints a CA certificate carries, as `parse` makes them (other kinds
    of subtree, such as directory names, are not judged here)."""
    extension = of_certificate(certificate)
    if extension is None:
        return NameConstraints()

    def side(names: Sequence[x509.GeneralName] | None) -> Subtrees:
        names = names or ()
        return Subtrees(
            dns_domains=tuple(n.value.lower() for n in names if isinstance(n, x509.DNSName)),
            ip_ranges=tuple(
                n.value
                for n in names
                if isinstance(n, x509.IPAddress)
                and isinstance(n.value, ipaddress.IPv4Network | ipaddress.IPv6Network)
            ),
            uri_domains=tuple(
                n.value.lower() for n in names if isinstance(n, x509.UniformResourceIdentifier)
            ),
            email_addresses=tuple(n.value for n in names if isinstance(n, x509.RFC822Name)),
        )

    return NameConstraints(
        permitted=side(extension.permitted_subtrees), excluded=side(extension.excluded_subtrees)
    )


def leaf_violations(issuer: x509.Certificate, names: Sequence[x509.GeneralName]) -> list[str]:
    """`violations` of the SAN `names` of a leaf about to be signed by CA `issuer`, against
    the constraints `issuer` itself carries: the last guard before any signature, whatever
    path (Certificate, CertificateRequest, pod certificate) asked for the leaf."""
    constraints = from_certificate(issuer)
    if not constraints:
        return []
    where = "subjectAltName"
    return violations(
        constraints,
        Names(
            dns_names=[(where, n.value) for n in names if isinstance(n, x509.DNSName)],
            ip_addresses=[(where, str(n.value)) for n in names if isinstance(n, x509.IPAddress)],
            uris=[(where, n.value) for n in names if isinstance(n, x509.UniformResourceIdentifier)],
            email_addresses=[(where, n.value) for n in names if isinstance(n, x509.RFC822Name)],
        ),
        authority=issuer.subject.rfc4514_string(),
    )


def of_certificate(certificate: x509.Certificate) -> x509.NameConstraints | None:
    """The NameConstraints extension a CA certificate carries, or None."""
    try:
        return certificate.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return None
