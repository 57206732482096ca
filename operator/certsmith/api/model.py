"""Parse and validate a Certificate spec (certsmith.dev/v1alpha1) into frozen, typed values."""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from fractions import Fraction
from types import MappingProxyType
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from certsmith.api import names

_T = TypeVar("_T")

MIN_IN_USE = timedelta(seconds=30)
"""The least time a certificate is in use between its issuance and its renewal.

Half the shortest `spec.duration` (1m), so every duration keeps the default renewal at
2/3 (40 s for 1m). It is an order of magnitude above one issuance (an RSA-4096 key took
0.1-1 s on 2 shared cores, then a signature and three API writes) and above the clock
skew between replicas, and it bounds the re-issues of one Certificate to two a minute
whatever its spec or its authority.
"""

DEFAULT_DURATION = timedelta(days=90)
MIN_DURATION = timedelta(minutes=1)
DEFAULT_USAGES = ("digital signature", "server auth", "client auth")
# cert-manager's default for RSA: a static RSA key exchange (TLS 1.2 TLS_RSA_*) encrypts the
# premaster secret to the key, which RFC 5280 4.2.1.3 / RFC 5246 7.4.2 tie to keyEncipherment.
DEFAULT_RSA_USAGES = ("digital signature", "key encipherment", "server auth", "client auth")
ALLOWED_USAGES = frozenset(
    {
        *("digital signature", "key encipherment", "key agreement", "content commitment"),
        *("data encipherment", "cert sign", "crl sign", "encipher only", "decipher only"),
        *("server auth", "client auth", "code signing", "email protection", "timestamping"),
        "ocsp signing",
    }
)
CA_USAGES = {
    # RFC 5280 4.2.1.3 allows keyCertSign only with cA=TRUE, and certsmith never issues CAs.
    "cert sign": "'cert sign' needs a CA certificate (isCA); certsmith issues none",
    # RFC 6960 4.2.2.2: a certificate with id-kp-OCSPSigning issued by a CA is trusted for
    # OCSP answers about every certificate that CA issued: any namespace could vouch "good"
    # for another's revoked certificate.
    "ocsp signing": "'ocsp signing' would make this certificate an OCSP responder trusted for "
    "every certificate its authority issued (RFC 6960 4.2.2.2); certsmith issues none",
    # RFC 5280 5 / 6.3.3: a CRL signer other than the CA (an indirect CRL issuer) would let
    # a namespace publish revocations of others' certificates.
    "crl sign": "'crl sign' would let this certificate sign CRLs in its authority's place "
    "(RFC 5280 6.3.3); certsmith signs its CRLs with the authority's own key",
}
"""Usages of cert-manager's vocabulary that speak for the authority, refused for every
leaf (safe by default: they are CA powers, not a workload's), each with why."""
DEFAULT_ISSUER = "cluster-root"

# The metadata keys by which a Secret says whose it is (tls_secret.foreign_claim and
# authority.check_role read them, and take their names from here). spec.secretTemplate may
# set none of them: certsmith would then refuse to write its own Secret, or hand it to another.
_OWNERSHIP_MARKS = {  # (is a label) → ((key or prefix ending in "/", why), ...)
    True: (
        (names.CERTSMITH_PREFIX, "keys under certsmith.dev/ are certsmith's own"),
        (names.MANAGED_BY_LABEL, "it says which tool owns the Secret, and certsmith sets it"),
    ),
    False: (
        (names.CERTSMITH_PREFIX, "keys under certsmith.dev/ are certsmith's own"),
        (names.CERT_MANAGER_PREFIX, "keys under cert-manager.io/ mark a Secret as cert-manager's"),
    ),
}

# usage → (the key algorithm that can honour it, why). RFC 8813 section 3 forbids
# keyEncipherment and dataEncipherment for ECDSA keys, RFC 8410 section 5 every
# encryption and agreement bit for Ed25519; RSA keys cannot agree on keys.
_USAGE_ALGORITHM = {
    "key encipherment": ("RSA", "RFC 8813 and RFC 8410 forbid it for ECDSA and Ed25519 keys"),
    "data encipherment": ("RSA", "RFC 8813 and RFC 8410 forbid it for ECDSA and Ed25519 keys"),
    "key agreement": ("ECDSA", "RSA and Ed25519 keys cannot agree on keys"),
}

_MAX_DURATION = timedelta(hours=876000)  # 100 years, as the CRD's CEL rule says
MAX_SANS = 1000  # bounds the certificate a hostile spec can make us build and sign
_MAX_SUBJECT_VALUES = 64
_KEY_SIZES = {"ECDSA": (256, 384, 521), "RSA": (2048, 3072, 4096), "Ed25519": ()}
_KEY_ENUMS = {  # the first value of each is the default
    "algorithm": ("ECDSA", "RSA", "Ed25519"),
    "encoding": ("PKCS8", "PKCS1"),
    "rotationPolicy": ("Always", "Never"),
}

# Go accepts both micro signs, U+00B5 and U+03BC.
_UNIT_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9}
_UNIT_NS.update(m=60 * 10**9, h=3600 * 10**9)
_DURATION_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?(ns|us|µs|μs|ms|s|m|h)")
# Explicit ASCII classes, no IGNORECASE: under it `k` and `s` also match the Kelvin sign
# and the long s (U+212A, U+017F), which cryptography then refuses to sign (no A-label).
_DNS_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]")
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_PRINTABLE_STRING = re.compile(r"[A-Za-z0-9 '()+,\-./:=?]+")  # X.520 serialNumber's charset
SPIFFE_PREFIX = "spiffe://"
# SPIFFE ID spec 2.1 and 2.2: the characters of a trust domain and of each path segment.
_SPIFFE_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]{1,255}")
_SPIFFE_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")
# (spec key, Subject attribute, RFC 5280 upper bound) so every value fits its ASN.1 type.
_SUBJECT_FIELDS = (
    ("organizations", "organizations", 64),
    ("organizationalUnits", "organizational_units", 64),
    ("countries", "countries", 2),
    ("localities", "localities", 128),
    ("provinces", "provinces", 128),
    ("streetAddresses", "street_addresses", 128),
    ("postalCodes", "postal_codes", 40),
)
_JSON_TYPES = {  # bool before int, because bool is an int subclass
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    Mapping: "an object",
    type(None): "null",
}


class InvalidSpec(ValueError):
    """A spec value is unusable; `field` is its path, such as "spec.dnsNames[2]"."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Subject:
    """spec.subject: X.520 attributes of the distinguished name besides the commonName."""

    organizations: tuple[str, ...] = ()
    organizational_units: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    localities: tuple[str, ...] = ()
    provinces: tuple[str, ...] = ()
    street_addresses: tuple[str, ...] = ()
    postal_codes: tuple[str, ...] = ()
    serial_number: str | None = None


@dataclass(frozen=True)
class SpiffeId:
    """A SPIFFE ID split as its consumers read it: `spiffe://<trust_domain>/<segments...>`."""

    trust_domain: str
    segments: tuple[str, ...]


@dataclass(frozen=True)
class PrivateKeySpec:
    """`size=None` resolves to the algorithm's default (ECDSA 256, RSA 2048) on construction."""

    algorithm: str = "ECDSA"
    size: int | None = None
    encoding: str = "PKCS8"
    rotation_policy: str = "Always"

    def __post_init__(self) -> None:
        if self.size is None and _KEY_SIZES.get(self.algorithm):
            object.__setattr__(self, "size", _KEY_SIZES[self.algorithm][0])


@dataclass(frozen=True)
class CertificateSpec:
    """A validated spec, defaults resolved (`parse_certificate_spec`).

    Names keep the spec's order (IP addresses in their canonical text form); `duration` and
    `renew_before` are timedeltas; secret_labels/secret_annotations (spec.secretTemplate)
    are read-only MappingProxyType views, left out of hash().
    """

    secret_name: str
    common_name: str | None
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    uris: tuple[str, ...]
    email_addresses: tuple[str, ...]
    subject: Subject
    duration: timedelta
    renew_before: timedelta | None
    renew_before_percentage: int | None
    usages: tuple[str, ...]
    private_key: PrivateKeySpec
    secret_labels: Mapping[str, str] = field(hash=False)
    secret_annotations: Mapping[str, str] = field(hash=False)
    issuer_name: str


def parse_duration(text: str, field: str) -> timedelta:
    """Parse Go's time.ParseDuration syntax ("2160h", "1h30m", "1.5h", "300ms"); must be > 0."""
    invalid = InvalidSpec(field, f"{text!r} is not a duration like '2160h', '1h30m' or '90s'")
    body = text[1:] if text[:1] in ("+", "-") else text
    if not body or len(text) > 64:  # the cap keeps huge digit strings from reaching int()
        raise invalid
    total, pos = Fraction(0), 0
    while pos < len(body) and body != "0":  # Go accepts a bare "0" without a unit
        part = _DURATION_PART.match(body, pos)
        if not part or not (part[1] or part[2]):
            raise invalid
        total += Fraction(f"{part[1] or 0}.{part[2] or 0}") * _UNIT_NS[part[3]]
        pos = part.end()
    if text[0] == "-" or total == 0:
        raise InvalidSpec(field, f"{text!r} must be positive")
    if total >= 2**63:
        raise InvalidSpec(field, f"{text!r} overflows a Go duration (about 292 years)")
    if total < 1000:
        raise InvalidSpec(field, f"{text!r} is shorter than the 1µs resolution")
    return timedelta(microseconds=int(total // 1000))


def parse_certificate_spec(spec: Mapping[str, Any]) -> CertificateSpec:
    """Validate a Certificate's `spec` (the JSON object, as the apiserver stores it) and
    resolve its defaults; raise InvalidSpec naming the first bad field (checked in this
    order: secretName, issuerRef, commonName and the SANs, subject, duration and renewal,
    privateKey, usages, secretTemplate)."""
    _expect_object(spec, "spec")
    _check(spec.get("secretName") is not None, "spec.secretName", "is required")
    secret_name = _expect(spec["secretName"], str, "spec.secretName")
    _check_dns1123(secret_name, "spec.secretName")
    issuer_ref = _expect_object(spec.get("issuerRef", {}), "spec.issuerRef")
    issuer_name = _expect(issuer_ref.get("name", DEFAULT_ISSUER), str, "spec.issuerRef.name")
    _check_dns1123(issuer_name, "spec.issuerRef.name")
    common_name = _common_name(spec)
    sans = _sans(spec)
    needs_name = "needs a commonName, dnsNames, ipAddresses, uris or emailAddresses"
    _check(common_name or any(sans.values()), "spec", needs_name)
    _check_single_svid_uri(sans["uris"])
    if common_name is not None:
        _check_common_name(common_name, sans)
    subject = _subject(spec)
    # A distinguished name without a CN would be the same in every namespace, and servers
    # that map the whole DN to a user (Kafka, MongoDB, PostgreSQL clientname=DN) would let
    # any namespace claim it.
    _check(
        common_name or subject == Subject(),
        "spec.subject",
        "needs spec.commonName too: a subject without a commonName names no one in particular",
    )
    duration = _optional_duration(spec, "duration") or DEFAULT_DURATION
    in_range = MIN_DURATION <= duration <= _MAX_DURATION
    _check(in_range, "spec.duration", "must be from 1m to 100 years (876000h)")
    renew_before = _renew_before(spec, duration)
    percentage = _renew_before_percentage(spec, duration, renew_before)
    private_key = _private_key(spec)
    return CertificateSpec(
        secret_name=secret_name,
        common_name=common_name,
        dns_names=sans["dnsNames"],
        ip_addresses=sans["ipAddresses"],
        uris=sans["uris"],
        email_addresses=sans["emailAddresses"],
        subject=subject,
        duration=duration,
        renew_before=renew_before,
        renew_before_percentage=percentage,
        usages=_usages(spec, private_key.algorithm),
        private_key=private_key,
        secret_labels=_string_map(spec, "labels", label=True),
        secret_annotations=_string_map(spec, "annotations", label=False),
        issuer_name=issuer_name,
    )


def _common_name(spec: Mapping[str, Any]) -> str | None:
    common_name: str | None = spec.get("commonName")
    if common_name is not None:
        _expect(common_name, str, "spec.commonName")
        _check(0 < len(common_name) <= 64, "spec.commonName", "must be 1 to 64 characters long")
    return common_name


def _sans(spec: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """spec.dnsNames, ipAddresses, uris and emailAddresses by key, each name checked, the
    first duplicate or the name beyond MAX_SANS in all refused."""
    sans: dict[str, tuple[str, ...]] = {}
    for key, check in (
        ("dnsNames", _dns_name),
        ("ipAddresses", _ip_address),
        ("uris", _uri),
        ("emailAddresses", _email),
    ):
        values = tuple(map(check, *_strings(spec, key, MAX_SANS)))
        sans[key] = _unique(f"spec.{key}", values, fold_case=key == "dnsNames")
        total = sum(map(len, sans.values()))
        _check(total <= MAX_SANS, f"spec.{key}", f"brings the SANs to {total} (max {MAX_SANS})")
    return sans


def _renew_before(spec: Mapping[str, Any], duration: timedelta) -> timedelta | None:
    renew_before = _optional_duration(spec, "renewBefore")
    if renew_before is not None:
        shorter = f"must be shorter than spec.duration ({format_duration(duration)})"
        _check(renew_before < duration, "spec.renewBefore", shorter)
        _check_in_use(duration, duration - renew_before, "spec.renewBefore", spec["renewBefore"])
    return renew_before


def _renew_before_percentage(
    spec: Mapping[str, Any], duration: timedelta, renew_before: timedelta | None
) -> int | None:
    percentage: int | None = spec.get("renewBeforePercentage")
    if percentage is not None:
        _expect(percentage, int, "spec.renewBeforePercentage")
        _check(1 <= percentage <= 99, "spec.renewBeforePercentage", "must be from 1 to 99")
        both = "cannot be combined with spec.renewBefore"
        _check(renew_before is None, "spec.renewBeforePercentage", both)
        # In whole milliseconds, as the CRD's CEL rule computes it, so both judge alike.
        millisecond = timedelta(milliseconds=1)
        in_use = duration // millisecond * (100 - percentage) * millisecond / 100
        _check_in_use(duration, in_use, "spec.renewBeforePercentage", str(percentage))
    return percentage


def is_dns_name(text: str) -> bool:
    """An RFC 1123 host name of at most 253 characters, with one optional leading `*.`."""
    return len(text) <= 253 and _is_hostname(text.removeprefix("*."))


def ownership_mark(key: str, *, label: bool) -> str | None:
    """Why a Secret label (`label` True) or annotation `key` says whose the Secret is, or
    None when it does not (and spec.secretTemplate may set it)."""
    for mark, why in _OWNERSHIP_MARKS[label]:
        if key == mark or (mark.endswith("/") and key.startswith(mark)):
            return why
    return None


def leaf_dns_names(spec: CertificateSpec) -> tuple[str, ...]:
    """The DNS names of the leaf's SAN: a commonName that is a DNS name comes first, unless
    spec.dnsNames has it already (RFC 9525 dropped the commonName fallback: Go, browsers and
    rustls match names in the SAN only)."""
    common_name = spec.common_name
    listed = {name.lower() for name in spec.dns_names}
    if common_name is not None and is_dns_name(common_name) and common_name.lower() not in listed:
        return (common_name, *spec.dns_names)
    return spec.dns_names


def parse_spiffe_id(text: str) -> SpiffeId:
    """Split a SPIFFE ID that an X.509-SVID leaf may carry; raise ValueError saying what is wrong.

    SPIFFE ID spec 2: lowercase `spiffe` scheme, no query or fragment; 2.1: a trust domain
    of [a-z0-9._-] (at most 255), no userinfo or port; 2.2: no percent-encoding, segments of
    [A-Za-z0-9._-], none empty, `.` or `..`, no trailing `/`; X.509-SVID 3.1: a leaf's
    path is not empty.
    """
    if not text.startswith(SPIFFE_PREFIX):
        raise ValueError("it must start with 'spiffe://', in lowercase")
    if "?" in text or "#" in text:
        raise ValueError("a query or fragment is not allowed")
    if "%" in text:
        raise ValueError("percent-encoding is not allowed")
    authority, slash, path = text.removeprefix(SPIFFE_PREFIX).partition("/")
    if "@" in authority or ":" in authority:
        raise ValueError("userinfo or a port is not allowed in the trust domain")
    if not _SPIFFE_TRUST_DOMAIN.fullmatch(authority):
        raise ValueError("the trust domain must be 1 to 255 of a-z 0-9 . - _")
    if not slash or not path:
        raise ValueError("a workload's SPIFFE ID needs a path, as in /ns/<namespace>/sa/<name>")
    segments = tuple(path.split("/"))
    for segment in segments:
        if segment in ("", ".", ".."):
            raise ValueError("empty, '.' and '..' segments (and a trailing '/') are not allowed")
        if not _SPIFFE_SEGMENT.fullmatch(segment):
            raise ValueError(f"path segment {segment!r} may contain only A-Z a-z 0-9 . - _")
    return SpiffeId(authority, segments)


def format_duration(value: timedelta) -> str:
    """`value` as Go's time.Duration prints it ("1h0m0s", "9m50s", "600ms"), to the µs."""
    micro = value // timedelta(microseconds=1)
    if 0 < micro < 1_000_000:
        unit, scale = ("µs", 1) if micro < 1000 else ("ms", 1000)
        return f"{micro / scale:.3f}".rstrip("0").rstrip(".") + unit
    hours, micro = divmod(micro, 3_600_000_000)
    minutes, micro = divmod(micro, 60_000_000)
    seconds, micro = divmod(micro, 1_000_000)
    text = f"{seconds}.{micro:06d}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    return f"{minutes}m{text}" if minutes else text


def _check_in_use(duration: timedelta, in_use: timedelta, path: str, value: str) -> None:
    """Refuse a renewal setting that leaves the certificate in use less than MIN_IN_USE."""
    if in_use >= MIN_IN_USE:
        return
    if path == "spec.renewBeforePercentage":
        # The largest percentage that still leaves MIN_IN_USE, in the same milliseconds.
        floor_ms, duration_ms = (t // timedelta(milliseconds=1) for t in (MIN_IN_USE, duration))
        advice = f"at most {100 + -floor_ms * 100 // duration_ms}"  # 100 - ceil(share)
    else:
        advice = f"at most {format_duration(duration - MIN_IN_USE)}"
    raise InvalidSpec(
        path,
        f"{value} leaves the certificate in use only {format_duration(in_use)} before renewal; "
        f"certsmith renews no sooner than {format_duration(MIN_IN_USE)} after issuance: "
        f"use {advice} with a spec.duration of {format_duration(duration)}",
    )


def issuance_fingerprint(spec: CertificateSpec) -> str:
    """Hash what shapes the issued certificate; SAN and usage order do not change it."""
    key = spec.private_key
    material = {
        "commonName": spec.common_name,
        "dnsNames": sorted(leaf_dns_names(spec)),
        "ipAddresses": sorted(spec.ip_addresses),
        "uris": sorted(spec.uris),
        "emailAddresses": sorted(spec.email_addresses),
        "usages": sorted(spec.usages),
        "subject": dataclasses.asdict(spec.subject),
        "durationMicroseconds": spec.duration // timedelta(microseconds=1),
        "privateKey": [key.algorithm, key.size, key.encoding],
        "issuer": spec.issuer_name,
    }
    canonical = json.dumps(material, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _optional_duration(spec: Mapping[str, Any], key: str) -> timedelta | None:
    text = spec.get(key)
    path = f"spec.{key}"
    return None if text is None else parse_duration(_expect(text, str, path), path)


def _subject(spec: Mapping[str, Any]) -> Subject:
    raw = _expect_object(spec.get("subject", {}), "spec.subject")
    values: dict[str, tuple[str, ...]] = {}
    for key, attribute, limit in _SUBJECT_FIELDS:
        items, fields = _strings(raw, key, _MAX_SUBJECT_VALUES, prefix="spec.subject")
        for item, path in zip(items, fields, strict=True):
            _check(0 < len(item) <= limit, path, f"must be 1 to {limit} characters long")
            iso = key != "countries" or re.fullmatch("[A-Z]{2}", item)
            _check(iso, path, "must be an ISO 3166 country code such as 'DE'")
        values[attribute] = items
    serial = raw.get("serialNumber")
    if serial is not None:
        path = "spec.subject.serialNumber"
        _expect(serial, str, path)
        printable = _PRINTABLE_STRING.fullmatch(serial) and len(serial) <= 64
        _check(printable, path, "must be 1 to 64 letters, digits, spaces or '()+,-./:=?")
    return Subject(**values, serial_number=serial)


def _usages(spec: Mapping[str, Any], algorithm: str) -> tuple[str, ...]:
    """The usages asked for, each one the key can honour, or the key type's default."""
    usages, fields = _strings(spec, "usages", len(ALLOWED_USAGES))
    for usage, path in zip(usages, fields, strict=True):
        _check(usage in ALLOWED_USAGES, path, f"{usage!r} is not one of {sorted(ALLOWED_USAGES)}")
        _check(usage not in CA_USAGES, path, CA_USAGES.get(usage, ""))
        needed, why = _USAGE_ALGORITHM.get(usage, (algorithm, ""))
        algorithm_is = f"spec.privateKey.algorithm is {algorithm}"
        _check(
            needed == algorithm, path, f"{usage!r} needs an {needed} key ({algorithm_is}): {why}"
        )
        # RFC 5280 4.2.1.3 defines encipherOnly and decipherOnly only together with keyAgreement.
        alone = usage in ("encipher only", "decipher only") and "key agreement" not in usages
        _check(not alone, path, f"{usage!r} needs 'key agreement' in spec.usages (RFC 5280)")
    default = DEFAULT_RSA_USAGES if algorithm == "RSA" else DEFAULT_USAGES
    return _unique("spec.usages", usages, fold_case=False) or default


def _private_key(spec: Mapping[str, Any]) -> PrivateKeySpec:
    raw = _expect_object(spec.get("privateKey", {}), "spec.privateKey")
    chosen = {}
    for key, allowed in _KEY_ENUMS.items():
        value = raw.get(key, allowed[0])
        _check(value in allowed, f"spec.privateKey.{key}", f"{value!r} is not one of {allowed}")
        chosen[key] = value
    algorithm, size = chosen["algorithm"], raw.get("size")
    if size is not None:
        _expect(size, int, "spec.privateKey.size")
        sizes = _KEY_SIZES[algorithm]
        wrong = f"must be one of {sizes} for {algorithm}" if sizes else "must be unset for Ed25519"
        _check(size in sizes, "spec.privateKey.size", wrong)
    pkcs8 = algorithm != "Ed25519" or chosen["encoding"] == "PKCS8"
    _check(pkcs8, "spec.privateKey.encoding", "Ed25519 keys can only be encoded as PKCS8")
    return PrivateKeySpec(algorithm, size, chosen["encoding"], chosen["rotationPolicy"])


def _string_map(spec: Mapping[str, Any], key: str, *, label: bool) -> Mapping[str, str]:
    template = _expect_object(spec.get("secretTemplate", {}), "spec.secretTemplate")
    path = f"spec.secretTemplate.{key}"
    raw = _expect_object(template.get(key, {}), path)
    for name, value in raw.items():
        _expect(name, str, path)
        entry = f"{path}[{name}]"
        _expect(value, str, entry)
        # Checked here so a bad key fails validation, not the later Secret write.
        prefix, slash, short = name.rpartition("/")
        key_ok = _QUALIFIED_NAME.fullmatch(short) and (not slash or _is_dns1123(prefix))
        _check(key_ok, entry, "key must be [dns-prefix/]name with a name of at most 63 characters")
        mark = ownership_mark(name, label=label)
        _check(
            mark is None,
            entry,
            f"says whose the Secret is ({mark}): certsmith would no longer write it as its own",
        )
        if label:
            value_ok = value == "" or _QUALIFIED_NAME.fullmatch(value)
            _check(value_ok, entry, "value must be at most 63 letters, digits, '-', '_' or '.'")
    return MappingProxyType(dict(raw))


def _dns_name(text: str, path: str) -> str:
    _check(not _is_ip(text), path, f"{text!r} is an IP address; list it in spec.ipAddresses")
    _check(is_dns_name(text), path, f"{text!r} is not a valid DNS name")
    return text


def _ip_address(text: str, path: str) -> str:
    _check(_is_ip(text) and "%" not in text, path, f"{text!r} is not a valid IP address")
    return str(ipaddress.ip_address(text))


def _uri(text: str, path: str) -> str:
    printable = text.isascii() and text.isprintable() and " " not in text and len(text) <= 2048
    _check(printable, path, f"{text!r} must be at most 2048 printable ASCII characters, no spaces")
    try:
        parts = urlsplit(text)
    except ValueError:
        raise InvalidSpec(path, f"{text!r} is not a valid URI") from None
    _check(parts.scheme, path, f"{text!r} has no scheme such as 'spiffe://' or 'https://'")
    if parts.scheme == "spiffe":
        try:
            parse_spiffe_id(text)
        except ValueError as error:
            raise InvalidSpec(path, f"{text!r} is not a valid SPIFFE ID: {error}") from None
    # RFC 3986 5.2.4: a consumer that normalises the URI reads another path than the one
    # isolation and grants judged.
    dots = any(unquote(segment) in (".", "..") for segment in parts.path.split("/"))
    _check(not dots, path, f"{text!r} has a '.' or '..' path segment")
    return text


def _check_single_svid_uri(uris: tuple[str, ...]) -> None:
    """X.509-SVID 2: a leaf with a SPIFFE ID carries exactly one URI SAN."""
    spiffe = [i for i, uri in enumerate(uris) if urlsplit(uri).scheme == "spiffe"]
    if spiffe and len(uris) > 1:
        first = spiffe[0]
        other = next(i for i in range(len(uris)) if i != first)
        raise InvalidSpec(
            f"spec.uris[{other}]",
            f"{uris[other]!r} cannot join the SPIFFE ID in spec.uris[{first}]: "
            "an X.509-SVID carries exactly one URI",
        )


def _check_common_name(common_name: str, sans: Mapping[str, tuple[str, ...]]) -> None:
    """A commonName is an identity too: a DNS name (judged and put into the SAN like
    spec.dnsNames) or one of the certificate's other names, never free text."""
    if is_dns_name(common_name):
        return
    ips = {str(ipaddress.ip_address(ip)) for ip in sans["ipAddresses"]}
    emails = {email.lower() for email in sans["emailAddresses"]}
    listed = (
        common_name in sans["uris"]
        or common_name.lower() in emails
        or (_is_ip(common_name) and str(ipaddress.ip_address(common_name)) in ips)
    )
    _check(
        listed,
        "spec.commonName",
        f"{common_name!r} is neither a DNS name nor one of spec.ipAddresses, spec.uris or "
        "spec.emailAddresses; a commonName must be one of the certificate's names",
    )


def _email(text: str, path: str) -> str:
    local, _, domain = text.rpartition("@")
    valid = len(text) <= 254 and len(local) <= 64 and bool(_EMAIL_LOCAL.fullmatch(local))
    _check(valid and _is_hostname(domain), path, f"{text!r} is not a valid email address")
    return text


def _strings(
    raw: Mapping[str, Any], key: str, limit: int, *, prefix: str = "spec"
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The string list at raw[key] (absent means empty) and each item's field path."""
    path = f"{prefix}.{key}"
    items = _expect(raw.get(key, []), list, path)
    _check(len(items) <= limit, path, f"has {len(items)} entries (max {limit})")
    fields = tuple(f"{path}[{i}]" for i in range(len(items)))
    return tuple(_expect(v, str, p) for v, p in zip(items, fields, strict=True)), fields


def _unique(path: str, values: tuple[str, ...], *, fold_case: bool = True) -> tuple[str, ...]:
    seen: dict[str, int] = {}
    for i, value in enumerate(values):
        first = seen.setdefault(value.lower() if fold_case else value, i)
        _check(first == i, f"{path}[{i}]", f"{value!r} duplicates {path}[{first}]")
    return values


def _check_dns1123(value: str, path: str) -> None:
    _check(_is_dns1123(value), path, f"{value!r} must be a lowercase DNS-1123 subdomain")


def _is_dns1123(value: str) -> bool:
    return len(value) <= 253 and bool(_DNS1123_SUBDOMAIN.fullmatch(value))


def _is_hostname(text: str) -> bool:
    labels = text.split(".")
    return all(_DNS_LABEL.fullmatch(label) for label in labels) and not _is_ip(text)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _expect(value: object, kind: type[_T], path: str) -> _T:
    """`value` if it is a `kind` (str, int, list), else InvalidSpec naming its JSON type."""
    # bool is an int subclass in Python, but `true` is never a valid integer in a spec.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise _wrong_type(value, _JSON_TYPES[kind], path)
    return value


def _expect_object(value: object, path: str) -> Mapping[str, Any]:
    """`value` if it is a JSON object, else InvalidSpec naming its JSON type."""
    if not isinstance(value, Mapping):
        raise _wrong_type(value, _JSON_TYPES[Mapping], path)
    return value


def _wrong_type(value: object, expected: str, path: str) -> InvalidSpec:
    found = (name for t, name in _JSON_TYPES.items() if isinstance(value, t))
    actual = next(found, type(value).__name__)
    return InvalidSpec(path, f"must be {expected}, not {actual}")


def _check(ok: object, path: str, message: str) -> None:
    if not ok:
        raise InvalidSpec(path, message)
