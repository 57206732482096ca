"""Parsing and validating Certificate specs: defaults, Go durations, field-named errors."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from certsmith.api import model
from certsmith.api.model import InvalidSpec, parse_certificate_spec, parse_duration
from tests.builders import spec


def test_minimal_spec_gets_documented_defaults() -> None:
    parsed = parse_certificate_spec(spec())
    assert parsed.secret_name == "web-tls"
    assert parsed.dns_names == ("web.example.com",)
    assert parsed.duration == model.DEFAULT_DURATION == timedelta(days=90)
    assert parsed.renew_before is None and parsed.renew_before_percentage is None
    assert parsed.usages == model.DEFAULT_USAGES
    assert parsed.private_key == model.PrivateKeySpec("ECDSA", 256, "PKCS8", "Always")
    assert parsed.issuer_name == model.DEFAULT_ISSUER == "cluster-root"
    assert parsed.subject == model.Subject()
    assert dict(parsed.secret_labels) == {} and dict(parsed.secret_annotations) == {}


def test_full_spec_is_parsed_and_normalised() -> None:
    parsed = parse_certificate_spec(
        spec(
            commonName="web.default.svc",
            dnsNames=["web.default.svc", "*.Web.Example.com"],
            ipAddresses=["10.0.0.1", "2001:DB8:0:0::1"],
            uris=["spiffe://cluster.local/ns/default/sa/web"],
            emailAddresses=["ops@example.com"],
            subject={
                "organizations": ["Acme"],
                "organizationalUnits": ["Platform"],
                "countries": ["DE"],
                "localities": ["Berlin"],
                "provinces": ["Berlin"],
                "streetAddresses": ["Main St 1"],
                "postalCodes": ["10115"],
                "serialNumber": "A-1234",
            },
            duration="24h",
            renewBefore="8h",
            usages=["digital signature", "key encipherment", "server auth"],
            privateKey={"algorithm": "RSA", "size": 3072, "encoding": "PKCS1"},
            secretTemplate={"labels": {"app": "web"}, "annotations": {"example.com/a": "any text"}},
            issuerRef={"name": "team-ca"},
        )
    )
    assert parsed.common_name == "web.default.svc"
    assert parsed.dns_names == ("web.default.svc", "*.Web.Example.com")
    assert parsed.ip_addresses == ("10.0.0.1", "2001:db8::1")
    assert parsed.uris[0] == "spiffe://cluster.local/ns/default/sa/web"
    assert parsed.subject.countries == ("DE",)
    assert parsed.subject.street_addresses == ("Main St 1",)
    assert parsed.subject.serial_number == "A-1234"
    assert parsed.duration == timedelta(hours=24) and parsed.renew_before == timedelta(hours=8)
    assert parsed.private_key == model.PrivateKeySpec("RSA", 3072, "PKCS1", "Always")
    assert parsed.secret_labels == {"app": "web"}
    assert parsed.secret_annotations["example.com/a"] == "any text"
    assert parsed.issuer_name == "team-ca"


def test_parsed_spec_is_frozen_and_hashable() -> None:
    parsed = parse_certificate_spec(spec(secretTemplate={"labels": {"a": "b"}}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.secret_name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        parsed.secret_labels["a"] = "c"  # type: ignore[index]
    assert hash(parsed) == hash(parse_certificate_spec(spec(secretTemplate={"labels": {"a": "b"}})))


def test_private_key_size_defaults_per_algorithm() -> None:
    assert model.PrivateKeySpec("RSA").size == 2048
    assert model.PrivateKeySpec("ECDSA").size == 256
    assert model.PrivateKeySpec("Ed25519").size is None
    key = parse_certificate_spec(spec(privateKey={"algorithm": "Ed25519"})).private_key
    assert key == model.PrivateKeySpec("Ed25519", None, "PKCS8", "Always")


def test_renew_before_percentage_and_empty_usages() -> None:
    parsed = parse_certificate_spec(spec(renewBeforePercentage=25, usages=[]))
    assert parsed.renew_before_percentage == 25
    assert parsed.usages == model.DEFAULT_USAGES


def test_default_usages_follow_the_key_type() -> None:
    # cert-manager's default: RSA leaves can also serve a static RSA key exchange.
    rsa = parse_certificate_spec(spec(privateKey={"algorithm": "RSA"}))
    assert rsa.usages == model.DEFAULT_RSA_USAGES
    assert "key encipherment" in rsa.usages
    for algorithm in ("ECDSA", "Ed25519"):
        parsed = parse_certificate_spec(spec(privateKey={"algorithm": algorithm}))
        assert parsed.usages == model.DEFAULT_USAGES
        assert "key encipherment" not in parsed.usages
    # Usages listed replace the default, exactly.
    listed = ["server auth", "digital signature"]
    assert parse_certificate_spec(
        spec(privateKey={"algorithm": "RSA"}, usages=listed)
    ).usages == tuple(listed)


@pytest.mark.parametrize(
    "fields",
    [
        {"duration": "1m"},
        {"duration": "1m", "renewBefore": "30s"},
        {"duration": "1m", "renewBeforePercentage": 50},
        {"duration": "61s", "renewBeforePercentage": 50},
        {"duration": "10m", "renewBefore": "9m30s"},
        {"duration": "10m", "renewBeforePercentage": 95},
        {"duration": "1h", "renewBeforePercentage": 99},
        {"duration": "876000h", "renewBeforePercentage": 99},
        {"renewBefore": "2159h59m30s"},
        {"duration": "1m", "renewBeforePercentage": 1},
    ],
)
def test_renewal_settings_that_leave_the_floor_are_admitted(fields: dict[str, Any]) -> None:
    parse_certificate_spec(spec(**fields))


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(hours=2160), "2160h0m0s"),
        (timedelta(hours=1, seconds=1), "1h0m1s"),
        (timedelta(minutes=9, seconds=50), "9m50s"),
        (timedelta(seconds=29.4), "29.4s"),
        (timedelta(milliseconds=600), "600ms"),
        (timedelta(microseconds=1500), "1.5ms"),
        (timedelta(microseconds=7), "7µs"),
        (timedelta(0), "0s"),
    ],
)
def test_durations_print_like_go(value: timedelta, text: str) -> None:
    assert model.format_duration(value) == text
    assert value == timedelta(0) or parse_duration(text, "spec.duration") == value


def test_common_name_alone_is_enough() -> None:
    parsed = parse_certificate_spec(spec(dnsNames=None, commonName="web.t1.svc"))
    assert parsed.dns_names == ()
    assert model.leaf_dns_names(parsed) == ("web.t1.svc",)


@pytest.mark.parametrize(
    ("fields", "leaf_names"),
    [
        # A DNS-name commonName goes first into the SAN, once, whatever its case.
        ({"commonName": "a.example", "dnsNames": ["b.example"]}, ("a.example", "b.example")),
        ({"commonName": "B.Example", "dnsNames": ["a.example", "b.example"]}, None),
        ({"commonName": "*.a.example", "dnsNames": []}, ("*.a.example",)),
        ({"commonName": "postgres", "dnsNames": []}, ("postgres",)),
        # Another name of the certificate is already in the SAN under its own type.
        ({"commonName": "ops@example.com", "emailAddresses": ["OPS@example.com"]}, None),
        ({"commonName": "2001:DB8::1", "ipAddresses": ["2001:db8::1"]}, None),
        (
            {
                "commonName": "spiffe://cluster.local/ns/a/sa/b",
                "uris": ["spiffe://cluster.local/ns/a/sa/b"],
            },
            None,
        ),
    ],
)
def test_common_name_in_the_leaf_dns_names(
    fields: dict[str, Any], leaf_names: tuple[str, ...] | None
) -> None:
    parsed = parse_certificate_spec(spec(**fields))
    assert model.leaf_dns_names(parsed) == (leaf_names or parsed.dns_names)


SPIFFE_TD_255 = "a" * 255
VALID_SPIFFE_IDS = [
    ("spiffe://cluster.local/ns/t1/sa/web", "cluster.local", ("ns", "t1", "sa", "web")),
    ("spiffe://td_1.a-b/A.b_c-9", "td_1.a-b", ("A.b_c-9",)),
    ("spiffe://td/.../x", "td", ("...", "x")),  # only '.' and '..' are dot segments
    (f"spiffe://{SPIFFE_TD_255}/x", SPIFFE_TD_255, ("x",)),
]


@pytest.mark.parametrize(("uri", "trust_domain", "segments"), VALID_SPIFFE_IDS)
def test_spiffe_ids_are_split_into_trust_domain_and_segments(
    uri: str, trust_domain: str, segments: tuple[str, ...]
) -> None:
    assert model.parse_spiffe_id(uri) == model.SpiffeId(trust_domain, segments)
    assert parse_certificate_spec(spec(uris=[uri])).uris == (uri,)


INVALID_SPIFFE_IDS = [
    # SPIFFE ID spec 2.2: no dot segments, which normalising consumers resolve (t1/../t2 is t2).
    ("spiffe://cluster.local/ns/t1/../t2/sa/admin", "'..' segments"),
    ("spiffe://cluster.local/ns/t1/./sa/web", "'.' and '..'"),
    ("spiffe://cluster.local/ns//sa/web", "empty"),
    ("spiffe://cluster.local/ns/t1/sa/web/", "trailing '/'"),
    ("spiffe://cluster.local/ns/t1/sa/%2e%2e", "percent-encoding"),
    ("spiffe://cluster.local/ns/t1/sa/w+b", "may contain only A-Z a-z 0-9 . - _"),
    ("spiffe://cluster.local/ns/t1/sa/web?x=1", "query or fragment"),
    ("spiffe://cluster.local/ns/t1/sa/web#f", "query or fragment"),
    # 2.1: the trust domain is a lowercase host, nothing more.
    ("spiffe://cluster.local:443/ns/t1/sa/web", "userinfo or a port"),
    ("spiffe://admin@cluster.local/ns/t1/sa/web", "userinfo or a port"),
    ("spiffe://Cluster.local/ns/t1/sa/web", "trust domain must be"),
    (f"spiffe://{SPIFFE_TD_255}a/x", "1 to 255"),
    ("spiffe:///ns/a", "trust domain must be"),
    ("SPIFFE://cluster.local/ns/t1/sa/web", "'spiffe://', in lowercase"),
    # X.509-SVID 3.1: a leaf's SPIFFE ID has a path.
    ("spiffe://cluster.local", "needs a path"),
    ("spiffe://cluster.local/", "needs a path"),
]


@pytest.mark.parametrize(("uri", "message"), INVALID_SPIFFE_IDS)
def test_invalid_spiffe_ids_are_refused_naming_the_index(uri: str, message: str) -> None:
    with pytest.raises(InvalidSpec) as caught:
        parse_certificate_spec(spec(uris=["urn:example:first", uri]))
    assert caught.value.field == "spec.uris[1]"
    assert "is not a valid SPIFFE ID" in caught.value.message
    assert message in caught.value.message


def test_invalid_spec_message_names_field() -> None:
    error = InvalidSpec("spec.dnsNames[1]", "'foo..bar' is not a valid DNS name")
    assert isinstance(error, ValueError)
    assert str(error) == "spec.dnsNames[1]: 'foo..bar' is not a valid DNS name"
    assert (error.field, error.message) == (
        "spec.dnsNames[1]",
        "'foo..bar' is not a valid DNS name",
    )


LONG_LABEL = "a" * 64
INVALID = [
    # (fields merged into a valid spec, the field the error must name, a piece of its message)
    ({"secretName": None}, "spec.secretName", "is required"),
    ({"secretName": "Web_TLS"}, "spec.secretName", "DNS-1123"),
    ({"secretName": 7}, "spec.secretName", "must be a string, not an integer"),
    ({"issuerRef": {"name": "Bad Name"}}, "spec.issuerRef.name", "DNS-1123"),
    ({"issuerRef": "cluster-root"}, "spec.issuerRef", "must be an object, not a string"),
    ({"dnsNames": None}, "spec", "needs a commonName"),
    ({"dnsNames": []}, "spec", "needs a commonName"),
    ({"commonName": "x" * 65}, "spec.commonName", "1 to 64"),
    ({"commonName": ""}, "spec.commonName", "1 to 64"),
    ({"dnsNames": ["ok.example", "foo..bar"]}, "spec.dnsNames[1]", "'foo..bar' is not a valid"),
    ({"dnsNames": [f"{LONG_LABEL}.example"]}, "spec.dnsNames[0]", "not a valid DNS name"),
    ({"dnsNames": [("a" * 60 + ".") * 5 + "example"]}, "spec.dnsNames[0]", "not a valid"),
    ({"dnsNames": ["-web.example"]}, "spec.dnsNames[0]", "not a valid DNS name"),
    ({"dnsNames": ["web_1.example"]}, "spec.dnsNames[0]", "not a valid DNS name"),
    ({"dnsNames": ["web.example."]}, "spec.dnsNames[0]", "not a valid DNS name"),
    ({"dnsNames": ["*"]}, "spec.dnsNames[0]", "not a valid DNS name"),
    ({"dnsNames": ["*.*.example"]}, "spec.dnsNames[0]", "not a valid DNS name"),
    ({"dnsNames": ["web.*.example"]}, "spec.dnsNames[0]", "not a valid DNS name"),
    ({"dnsNames": ["w*.example"]}, "spec.dnsNames[0]", "not a valid DNS name"),
    ({"dnsNames": ["a.example", "A.example"]}, "spec.dnsNames[1]", "duplicates spec.dnsNames[0]"),
    ({"dnsNames": ["10.0.0.1"]}, "spec.dnsNames[0]", "spec.ipAddresses"),
    ({"dnsNames": "web.example"}, "spec.dnsNames", "must be a list, not a string"),
    ({"dnsNames": 5}, "spec.dnsNames", "must be a list, not an integer"),
    ({"dnsNames": ["a.example", 5]}, "spec.dnsNames[1]", "must be a string, not an integer"),
    ({"dnsNames": ["a.example", None]}, "spec.dnsNames[1]", "must be a string, not null"),
    ({"ipAddresses": ["10.0.0.256"]}, "spec.ipAddresses[0]", "not a valid IP address"),
    ({"ipAddresses": ["fe80::1%eth0"]}, "spec.ipAddresses[0]", "not a valid IP address"),
    ({"ipAddresses": ["::1", "0::1"]}, "spec.ipAddresses[1]", "duplicates"),
    ({"ipAddresses": {"a": 1}}, "spec.ipAddresses", "must be a list, not an object"),
    ({"uris": ["no-scheme/path"]}, "spec.uris[0]", "has no scheme"),
    ({"uris": ["https://a.example/x/../admin"]}, "spec.uris[0]", "'.' or '..' path segment"),
    ({"uris": ["https://a.example/x/%2E%2e/admin"]}, "spec.uris[0]", "'.' or '..' path"),
    ({"uris": ["urn:a", "https://a.example/./x"]}, "spec.uris[1]", "'.' or '..' path"),
    # X.509-SVID 2: exactly one URI next to a SPIFFE ID, named by its index.
    (
        {"uris": ["spiffe://cluster.local/ns/t1/sa/web", "spiffe://cluster.local/ns/t1/sa/other"]},
        "spec.uris[1]",
        "cannot join the SPIFFE ID in spec.uris[0]: an X.509-SVID carries exactly one URI",
    ),
    (
        {"uris": ["https://a.example/", "spiffe://cluster.local/ns/t1/sa/web"]},
        "spec.uris[0]",
        "cannot join the SPIFFE ID in spec.uris[1]",
    ),
    # A commonName is one of the certificate's names, never free text.
    ({"commonName": "batch job"}, "spec.commonName", "neither a DNS name nor one of"),
    ({"commonName": "web.example."}, "spec.commonName", "neither a DNS name nor one of"),
    ({"commonName": "10.0.0.1"}, "spec.commonName", "neither a DNS name nor one of"),
    ({"commonName": "ops@example.com"}, "spec.commonName", "neither a DNS name nor one of"),
    (
        {
            "commonName": "spiffe://cluster.local/ns/a/sa/b",
            "uris": ["spiffe://cluster.local/ns/a/sa/c"],
        },
        "spec.commonName",
        "neither a DNS name nor one of",
    ),
    # The rest of the subject needs a commonName, or its DN would fit every namespace.
    ({"subject": {"organizations": ["Acme"]}}, "spec.subject", "needs spec.commonName"),
    ({"subject": {"serialNumber": "1"}}, "spec.subject", "needs spec.commonName"),
    ({"uris": ["https://exa mple.com/"]}, "spec.uris[0]", "printable ASCII"),
    ({"uris": ["https://[::1/"]}, "spec.uris[0]", "not a valid URI"),
    ({"emailAddresses": ["nobody"]}, "spec.emailAddresses[0]", "not a valid email"),
    ({"emailAddresses": ["a@b..c"]}, "spec.emailAddresses[0]", "not a valid email"),
    ({"emailAddresses": [".a@example.com"]}, "spec.emailAddresses[0]", "not a valid email"),
    ({"emailAddresses": ["a@*.example.com"]}, "spec.emailAddresses[0]", "not a valid email"),
    ({"dnsNames": [f"h{i}.example" for i in range(1001)]}, "spec.dnsNames", "max 1000"),
    (
        {
            "dnsNames": [f"h{i}.example" for i in range(600)],
            "uris": [f"https://u/{i}" for i in range(401)],
        },
        "spec.uris",
        "brings the SANs to 1001",
    ),
    ({"duration": "1d"}, "spec.duration", "not a duration"),
    ({"duration": 3600}, "spec.duration", "must be a string, not an integer"),
    ({"duration": "59s"}, "spec.duration", "from 1m to 100 years"),
    ({"duration": "876001h"}, "spec.duration", "from 1m to 100 years"),
    ({"duration": "-1h"}, "spec.duration", "must be positive"),
    ({"renewBefore": "2160h"}, "spec.renewBefore", "shorter than spec.duration"),
    ({"duration": "1h", "renewBefore": "2h"}, "spec.renewBefore", "shorter than spec.duration"),
    ({"renewBefore": "0s"}, "spec.renewBefore", "must be positive"),
    ({"renewBefore": "soon"}, "spec.renewBefore", "not a duration"),
    ({"renewBeforePercentage": 0}, "spec.renewBeforePercentage", "1 to 99"),
    ({"renewBeforePercentage": 100}, "spec.renewBeforePercentage", "1 to 99"),
    ({"renewBeforePercentage": 33.3}, "spec.renewBeforePercentage", "not a number"),
    ({"renewBeforePercentage": True}, "spec.renewBeforePercentage", "not a boolean"),
    (
        {"renewBefore": "1h", "renewBeforePercentage": 10},
        "spec.renewBeforePercentage",
        "cannot be combined",
    ),
    ({"usages": ["server auth", "fly"]}, "spec.usages[1]", "'fly' is not one of"),
    ({"usages": ["server auth", "server auth"]}, "spec.usages[1]", "duplicates spec.usages[0]"),
    ({"usages": ["cert sign"]}, "spec.usages[0]", "needs a CA certificate"),
    ({"usages": ["server auth", "ocsp signing"]}, "spec.usages[1]", "OCSP responder"),
    ({"usages": ["crl sign"]}, "spec.usages[0]", "sign CRLs in its authority's place"),
    # RFC 8813 section 3, RFC 8410 section 5: encipherment is for RSA keys only.
    (
        {"usages": ["key encipherment"]},
        "spec.usages[0]",
        "'key encipherment' needs an RSA key (spec.privateKey.algorithm is ECDSA)",
    ),
    (
        {"usages": ["server auth", "data encipherment"], "privateKey": {"algorithm": "Ed25519"}},
        "spec.usages[1]",
        "needs an RSA key (spec.privateKey.algorithm is Ed25519)",
    ),
    (
        {"usages": ["key agreement"], "privateKey": {"algorithm": "RSA"}},
        "spec.usages[0]",
        "'key agreement' needs an ECDSA key",
    ),
    (
        {"usages": ["key agreement"], "privateKey": {"algorithm": "Ed25519"}},
        "spec.usages[0]",
        "needs an ECDSA key",
    ),
    ({"usages": ["decipher only"]}, "spec.usages[0]", "needs 'key agreement'"),
    # Renewal settings that leave the certificate in use less than MIN_IN_USE (30 s).
    (
        {"duration": "10m", "renewBefore": "9m50s"},
        "spec.renewBefore",
        "9m50s leaves the certificate in use only 10s before renewal; certsmith renews no "
        "sooner than 30s after issuance: use at most 9m30s with a spec.duration of 10m0s",
    ),
    ({"duration": "1m", "renewBefore": "31s"}, "spec.renewBefore", "in use only 29s"),
    ({"renewBefore": "2159h59m31s"}, "spec.renewBefore", "at most 2159h59m30s"),
    (
        {"duration": "1m", "renewBeforePercentage": 51},
        "spec.renewBeforePercentage",
        "51 leaves the certificate in use only 29.4s before renewal; certsmith renews no "
        "sooner than 30s after issuance: use at most 50 with a spec.duration of 1m0s",
    ),
    ({"duration": "10m", "renewBeforePercentage": 96}, "spec.renewBeforePercentage", "most 95"),
    ({"duration": "61s", "renewBeforePercentage": 51}, "spec.renewBeforePercentage", "most 50"),
    ({"usages": "server auth"}, "spec.usages", "must be a list"),
    ({"usages": ["digital signature"] * 16}, "spec.usages", "max 15"),
    ({"privateKey": {"algorithm": "DSA"}}, "spec.privateKey.algorithm", "'DSA' is not one of"),
    ({"privateKey": {"algorithm": "ecdsa"}}, "spec.privateKey.algorithm", "is not one of"),
    ({"privateKey": {"size": 2048}}, "spec.privateKey.size", "(256, 384, 521) for ECDSA"),
    ({"privateKey": {"algorithm": "RSA", "size": 1024}}, "spec.privateKey.size", "for RSA"),
    ({"privateKey": {"algorithm": "RSA", "size": "2048"}}, "spec.privateKey.size", "an integer"),
    ({"privateKey": {"algorithm": "Ed25519", "size": 256}}, "spec.privateKey.size", "unset"),
    (
        {"privateKey": {"algorithm": "Ed25519", "encoding": "PKCS1"}},
        "spec.privateKey.encoding",
        "only be encoded as PKCS8",
    ),
    ({"privateKey": {"encoding": "DER"}}, "spec.privateKey.encoding", "is not one of"),
    ({"privateKey": {"rotationPolicy": "Sometimes"}}, "spec.privateKey.rotationPolicy", "one of"),
    ({"privateKey": "ECDSA"}, "spec.privateKey", "must be an object"),
    ({"subject": ["Acme"]}, "spec.subject", "must be an object, not a list"),
    ({"subject": {"organizations": "Acme"}}, "spec.subject.organizations", "must be a list"),
    ({"subject": {"organizations": [""]}}, "spec.subject.organizations[0]", "1 to 64"),
    ({"subject": {"organizations": ["x" * 65]}}, "spec.subject.organizations[0]", "1 to 64"),
    ({"subject": {"countries": ["DE", "de"]}}, "spec.subject.countries[1]", "ISO 3166"),
    ({"subject": {"countries": ["D1"]}}, "spec.subject.countries[0]", "ISO 3166"),
    ({"subject": {"countries": ["DEU"]}}, "spec.subject.countries[0]", "1 to 2"),
    ({"subject": {"postalCodes": ["1" * 41]}}, "spec.subject.postalCodes[0]", "1 to 40"),
    ({"subject": {"localities": [3]}}, "spec.subject.localities[0]", "must be a string"),
    ({"subject": {"serialNumber": "a_b"}}, "spec.subject.serialNumber", "letters, digits"),
    ({"subject": {"serialNumber": 12}}, "spec.subject.serialNumber", "must be a string"),
    ({"subject": {"provinces": ["p"] * 65}}, "spec.subject.provinces", "max 64"),
    ({"secretTemplate": []}, "spec.secretTemplate", "must be an object"),
    ({"secretTemplate": {"labels": ["a"]}}, "spec.secretTemplate.labels", "must be an object"),
    ({"secretTemplate": {"labels": {"a": 1}}}, "spec.secretTemplate.labels[a]", "a string"),
    ({"secretTemplate": {"labels": {"a": "x y"}}}, "spec.secretTemplate.labels[a]", "value"),
    ({"secretTemplate": {"labels": {"a": "v" * 64}}}, "spec.secretTemplate.labels[a]", "value"),
    ({"secretTemplate": {"labels": {"/a": "b"}}}, "spec.secretTemplate.labels[/a]", "key"),
    ({"secretTemplate": {"labels": {"A.B/c": "d"}}}, "spec.secretTemplate.labels[A.B/c]", "key"),
    (
        {"secretTemplate": {"annotations": {"a": None}}},
        "spec.secretTemplate.annotations[a]",
        "must be a string, not null",
    ),
    (
        {"secretTemplate": {"annotations": {"bad key": "v"}}},
        "spec.secretTemplate.annotations[bad key]",
        "key",
    ),
    # A template must not make a Certificate's Secret look like a CA's or another's.
    (
        {"secretTemplate": {"labels": {"certsmith.dev/role": "root"}}},
        "spec.secretTemplate.labels[certsmith.dev/role]",
        "certsmith's own",
    ),
    (
        {"secretTemplate": {"annotations": {"certsmith.dev/certificate-name": "x"}}},
        "spec.secretTemplate.annotations[certsmith.dev/certificate-name]",
        "certsmith's own",
    ),
    # Nor another tool's: certsmith would refuse its own Secret (SecretConflict) for ever.
    (
        {"secretTemplate": {"annotations": {"cert-manager.io/certificate-name": "x"}}},
        "spec.secretTemplate.annotations[cert-manager.io/certificate-name]",
        "mark a Secret as cert-manager's",
    ),
    (
        {"secretTemplate": {"annotations": {"cert-manager.io/issuer-name": "x"}}},
        "spec.secretTemplate.annotations[cert-manager.io/issuer-name]",
        "mark a Secret as cert-manager's",
    ),
    (
        {"secretTemplate": {"labels": {"app.kubernetes.io/managed-by": "Helm"}}},
        "spec.secretTemplate.labels[app.kubernetes.io/managed-by]",
        "says which tool owns the Secret",
    ),
]


@pytest.mark.parametrize(("fields", "field", "message"), INVALID)
def test_invalid_spec_names_the_field(fields: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(InvalidSpec) as caught:
        parse_certificate_spec(spec(**fields))
    assert caught.value.field == field
    assert message in caught.value.message
    assert str(caught.value).startswith(f"{field}: ")


@pytest.mark.parametrize("value", [None, [], "spec", 3])
def test_spec_that_is_not_an_object(value: Any) -> None:
    with pytest.raises(InvalidSpec) as caught:
        parse_certificate_spec(value)
    assert caught.value.field == "spec"


def test_valid_names_are_accepted() -> None:
    parsed = parse_certificate_spec(
        spec(
            dnsNames=["a", "*.svc.cluster.local", "x-1.example", f"{'a' * 63}.example"],
            uris=["urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66", "https://a.example/%20x"],
            emailAddresses=["first.last+tag@Example.COM"],
            secretTemplate={"labels": {"app.kubernetes.io/name": "web", "empty": ""}},
        )
    )
    assert len(parsed.dns_names) == 4 and len(parsed.uris) == 2


GO_DURATIONS = [
    ("2160h", timedelta(hours=2160)),
    ("1h30m", timedelta(hours=1, minutes=30)),
    ("90s", timedelta(seconds=90)),
    ("1.5h", timedelta(minutes=90)),
    ("300ms", timedelta(milliseconds=300)),
    ("1h0m0s", timedelta(hours=1)),
    ("+5m", timedelta(minutes=5)),
    (".5h", timedelta(minutes=30)),
    ("5.h", timedelta(hours=5)),
    ("1m30.25s", timedelta(seconds=90.25)),
    ("2h45m", timedelta(hours=2, minutes=45)),
    ("1500us", timedelta(microseconds=1500)),
    ("7µs", timedelta(microseconds=7)),
    ("7μs", timedelta(microseconds=7)),
    ("1500ns", timedelta(microseconds=1)),
    ("1s500ms", timedelta(milliseconds=1500)),
    ("0.1s", timedelta(milliseconds=100)),
]


@pytest.mark.parametrize(("text", "expected"), GO_DURATIONS)
def test_durations_parse_like_go(text: str, expected: timedelta) -> None:
    assert parse_duration(text, "spec.duration") == expected


BAD_DURATIONS = [
    ("", "not a duration"),
    ("h", "not a duration"),
    ("1", "not a duration"),
    ("1d", "not a duration"),
    ("1H", "not a duration"),
    ("1h 30m", "not a duration"),
    (" 1h", "not a duration"),
    (".h", "not a duration"),
    ("1.2.3s", "not a duration"),
    ("-", "not a duration"),
    ("1h-5m", "not a duration"),
    ("\u0661h", "not a duration"),  # an Arabic-Indic digit: Go takes only ASCII digits
    ("9" * 70 + "h", "not a duration"),
    ("0", "must be positive"),
    ("0s", "must be positive"),
    ("-1h", "must be positive"),
    ("3000000h", "overflows"),
    ("999ns", "1µs resolution"),
]


@pytest.mark.parametrize(("text", "message"), BAD_DURATIONS)
def test_bad_durations_name_the_field(text: str, message: str) -> None:
    with pytest.raises(InvalidSpec) as caught:
        parse_duration(text, "spec.renewBefore")
    assert caught.value.field == "spec.renewBefore"
    assert message in caught.value.message


def fingerprint(**fields: Any) -> str:
    return model.issuance_fingerprint(parse_certificate_spec(spec(**fields)))


def test_fingerprint_is_stable_hex_sha256() -> None:
    first = fingerprint(commonName="web", dnsNames=["a.example", "b.example"])
    assert first == fingerprint(commonName="web", dnsNames=["a.example", "b.example"])
    assert len(first) == 64 and int(first, 16) >= 0
    # Reordering names or usages asks for the same certificate.
    assert first == fingerprint(commonName="web", dnsNames=["b.example", "a.example"])
    assert fingerprint(usages=["client auth", "server auth"]) == fingerprint(
        usages=["server auth", "client auth"]
    )
    # An explicit default key size is the same request as none.
    assert fingerprint() == fingerprint(privateKey={"algorithm": "ECDSA", "size": 256})


@pytest.mark.parametrize(
    "changed",
    [
        {"commonName": "web"},
        {"dnsNames": ["other.example"]},
        {"ipAddresses": ["10.0.0.1"]},
        {"uris": ["https://web.example/"]},
        {"emailAddresses": ["a@example.com"]},
        {"duration": "24h"},
        {"usages": ["server auth"]},
        {"privateKey": {"algorithm": "RSA"}},
        {"privateKey": {"size": 384}},
        {"privateKey": {"encoding": "PKCS1"}},
        {"issuerRef": {"name": "other-ca"}},
    ],
)
def test_fingerprint_changes_with_what_shapes_the_certificate(changed: dict[str, Any]) -> None:
    assert fingerprint(**changed) != fingerprint()


@pytest.mark.parametrize("subject", [{"organizations": ["Acme"]}, {"serialNumber": "1"}])
def test_fingerprint_changes_with_the_subject(subject: dict[str, Any]) -> None:
    named = {"commonName": "web.example.com"}
    assert fingerprint(**named, subject=subject) != fingerprint(**named)


def test_fingerprint_counts_a_common_name_among_the_san_dns_names() -> None:
    # Listing the commonName in dnsNames too asks for the same leaf: no re-issue.
    assert fingerprint(commonName="a.example", dnsNames=[]) == fingerprint(
        commonName="a.example", dnsNames=["a.example"]
    )


@pytest.mark.parametrize(
    "unchanged",
    [
        {"secretTemplate": {"labels": {"a": "b"}, "annotations": {"c": "d"}}},
        {"renewBefore": "240h"},
        {"renewBeforePercentage": 10},
        {"privateKey": {"rotationPolicy": "Never"}},
        {"secretName": "other-secret"},
    ],
)
def test_fingerprint_ignores_what_does_not(unchanged: dict[str, Any]) -> None:
    assert fingerprint(**unchanged) == fingerprint()


def test_template_keys_that_say_nothing_about_ownership_are_accepted():
    parsed = parse_certificate_spec(
        spec(
            secretTemplate={
                "labels": {"cert-manager.io/x": "y", "app.kubernetes.io/name": "web"},
                "annotations": {"app.kubernetes.io/managed-by": "Helm", "example.com/a": "b"},
            }
        )
    )
    assert parsed.secret_labels["app.kubernetes.io/name"] == "web"
    assert parsed.secret_annotations["app.kubernetes.io/managed-by"] == "Helm"


ACCEPTED_USAGES = (
    *("digital signature", "content commitment", "key encipherment", "data encipherment"),
    *("key agreement", "encipher only", "decipher only", "server auth"),
    *("client auth", "code signing", "email protection", "timestamping"),
)


@pytest.mark.parametrize("usage", ACCEPTED_USAGES)
def test_each_usage_the_readme_lists_is_accepted(usage):
    algorithm = "RSA" if "encipherment" in usage else "ECDSA"
    usages = [usage, "key agreement"] if usage.endswith(" only") else [usage]
    parsed = parse_certificate_spec(spec(usages=usages, privateKey={"algorithm": algorithm}))
    assert usage in parsed.usages


@pytest.mark.parametrize(
    "usage",
    [
        "any",
        "signing",
        "cert sign",
        "crl sign",
        "ocsp signing",
        "s/mime",
        "ipsec end system",
        "ipsec tunnel",
        "ipsec user",
        "microsoft sgc",
        "netscape sgc",
    ],
)
def test_cert_manager_usages_the_readme_names_as_refused_are_refused(usage):
    with pytest.raises(InvalidSpec) as refused:
        parse_certificate_spec(spec(usages=[usage]))
    assert refused.value.field == "spec.usages[0]"


def test_the_readme_lists_exactly_the_accepted_usages():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `usages` |"))
    listed = row.split("| one of ", 1)[1].split(" (cert-manager's spelling", 1)[0]
    assert set(re.findall(r"`([^`]+)`", listed)) == set(ACCEPTED_USAGES)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dnsNames", "\u212aelvin.team-c.svc"),  # KELVIN SIGN, folds to k
        ("dnsNames", "ba\u017fe.team-c.svc"),  # LATIN SMALL LETTER LONG S, folds to s
        ("dnsNames", "\u0130nfo.example.com"),  # I WITH DOT ABOVE, folds to i
        ("emailAddresses", "ops@\u212aelvin.example"),
    ],
)
def test_names_are_ascii_only(field: str, value: str) -> None:
    """No case-folding look-alike passes as ASCII (cryptography would refuse to sign it)."""
    with pytest.raises(InvalidSpec) as raised:
        parse_certificate_spec({"secretName": "t", field: [value]})
    assert raised.value.field == f"spec.{field}[0]"
    assert str(raised.value).endswith(
        "is not a valid " + ("DNS name" if field == "dnsNames" else "email address")
    )
