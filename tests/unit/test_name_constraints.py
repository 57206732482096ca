"""Name constraints of subordinate authorities (RFC 5280 4.2.1.10): parsing spec.nameConstraints,
judging names, containment in a parent's, the critical extension and what verifiers make of it."""

from __future__ import annotations

import dataclasses
import ipaddress
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification
from cryptography.x509.oid import NameOID

from certsmith.api.model import InvalidSpec, parse_certificate_spec
from certsmith.authorities import authority
from certsmith.certificates import policies
from certsmith.pki import ca, inspect, issue, keys
from certsmith.pki import name_constraints as nc
from tests import builders
from tests.unit import certificate_builders as cb

NOW = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)


def parsed(spec: dict[str, Any]) -> nc.NameConstraints:
    return nc.parse(spec)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"permitted": {"dnsDomains": ["Partner.Example", ".zone.example"]}},
            nc.NameConstraints(
                permitted=nc.Subtrees(dns_domains=("partner.example", ".zone.example"))
            ),
        ),
        (
            {"permitted": {"ipRanges": ["10.20.0.0/16", "2001:db8::/32"]}},
            nc.NameConstraints(
                permitted=nc.Subtrees(
                    ip_ranges=(
                        ipaddress.ip_network("10.20.0.0/16"),
                        ipaddress.ip_network("2001:db8::/32"),
                    )
                )
            ),
        ),
        (
            {
                "permitted": {"uriDomains": ["partner.example"]},
                "excluded": {"dnsDomains": ["secret.partner.example"]},
            },
            nc.NameConstraints(
                permitted=nc.Subtrees(uri_domains=("partner.example",)),
                excluded=nc.Subtrees(dns_domains=("secret.partner.example",)),
            ),
        ),
        (
            {"permitted": {"emailAddresses": ["ops@Partner.Example", ".partner.example"]}},
            nc.NameConstraints(
                permitted=nc.Subtrees(email_addresses=("ops@partner.example", ".partner.example"))
            ),
        ),
        (
            {"permitted": {"dnsDomains": ["a.example", "A.example"]}},
            nc.NameConstraints(permitted=nc.Subtrees(dns_domains=("a.example",))),
        ),
    ],
)
def test_parse_normalises_valid_constraints(spec: dict[str, Any], expected: nc.NameConstraints):
    assert parsed(spec) == expected


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ({}, "spec.nameConstraints", "is empty"),
        ({"permitted": {}, "excluded": {"dnsDomains": []}}, "spec.nameConstraints", "is empty"),
        (
            {"permitted": {"ipRanges": ["10.0.0.1/8"]}},
            "spec.nameConstraints.permitted.ipRanges[0]",
            "not a CIDR block",
        ),
        (
            {"permitted": {"ipRanges": ["10.0.0.0/33"]}},
            "spec.nameConstraints.permitted.ipRanges[0]",
            "not a CIDR block",
        ),
        (
            {"excluded": {"ipRanges": ["10.0.0.0/8", "banana"]}},
            "spec.nameConstraints.excluded.ipRanges[1]",
            "not a CIDR block",
        ),
        (
            {"permitted": {"dnsDomains": ["*.partner.example"]}},
            "spec.nameConstraints.permitted.dnsDomains[0]",
            "not a DNS domain",
        ),
        (
            {"permitted": {"dnsDomains": ["bad_name.example"]}},
            "spec.nameConstraints.permitted.dnsDomains[0]",
            "not a DNS domain",
        ),
        (
            {"permitted": {"dnsDomains": ["10.0.0.1"]}},
            "spec.nameConstraints.permitted.dnsDomains[0]",
            "not a DNS domain",
        ),
        (
            {"permitted": {"dnsDomains": ["."]}},
            "spec.nameConstraints.permitted.dnsDomains[0]",
            "not a DNS domain",
        ),
        (
            {"permitted": {"uriDomains": ["https://partner.example"]}},
            "spec.nameConstraints.permitted.uriDomains[0]",
            "without scheme or path",
        ),
        (
            {"permitted": {"emailAddresses": ["@partner.example"]}},
            "spec.nameConstraints.permitted.emailAddresses[0]",
            "'@partner.example' is not an email constraint",
        ),
        (
            {"permitted": {"emailAddresses": ["a@b.example", "@@@"]}},
            "spec.nameConstraints.permitted.emailAddresses[1]",
            "'@@@' is not an email constraint",
        ),
        (
            {"excluded": {"emailAddresses": ["a@bad_host"]}},
            "spec.nameConstraints.excluded.emailAddresses[0]",
            "'a@bad_host' has no valid host",
        ),
        (
            {
                "permitted": {"dnsDomains": ["zone.example"]},
                "excluded": {"dnsDomains": ["zone.example"]},
            },
            "spec.nameConstraints.permitted.dnsDomains[0]",
            "'zone.example' lies within excluded 'zone.example', so it permits nothing",
        ),
        (
            {"permitted": {"ipRanges": ["10.1.0.0/16"]}, "excluded": {"ipRanges": ["10.0.0.0/8"]}},
            "spec.nameConstraints.permitted.ipRanges[0]",
            "'10.1.0.0/16' lies within excluded '10.0.0.0/8'",
        ),
        (
            {"permitted": {"dnsNames": ["partner.example"]}},
            "spec.nameConstraints.permitted.dnsNames",
            "unknown field",
        ),
        (
            {"permitted": {"dnsDomains": [f"d{i}.example" for i in range(65)]}},
            "spec.nameConstraints.permitted.dnsDomains",
            "at most 64",
        ),
    ],
)
def test_parse_refuses_invalid_constraints_naming_the_field(
    spec: dict[str, Any], field: str, words: str
):
    with pytest.raises(InvalidSpec) as raised:
        nc.parse(spec)
    assert str(raised.value).startswith(f"{field}: ")
    assert words in str(raised.value)


@pytest.mark.parametrize(
    ("name", "subtree", "inside"),
    [
        ("partner.example", "partner.example", True),
        ("api.partner.example", "partner.example", True),
        ("*.api.partner.example", "partner.example", True),
        ("API.Partner.Example", "partner.example", True),
        ("evilpartner.example", "partner.example", False),
        ("partner.example.com", "partner.example", False),
        ("partner.example", ".partner.example", False),
        ("api.partner.example", ".partner.example", True),
    ],
)
def test_dns_in(name: str, subtree: str, inside: bool):
    assert nc.dns_in(name, subtree) is inside


PARTNER = nc.parse(
    {
        "permitted": {
            "dnsDomains": ["partner.example"],
            "ipRanges": ["10.20.0.0/16"],
            "uriDomains": [".partner.example"],
        },
        "excluded": {"dnsDomains": ["internal.partner.example"]},
    }
)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"dnsNames": ["api.partner.example"], "ipAddresses": ["10.20.3.4"]}, []),
        (
            {"dnsNames": ["api.partner.example", "api.other.example"]},
            [
                "spec.dnsNames[1]: 'api.other.example' is outside CertificateAuthority partner's "
                "spec.nameConstraints (permitted: partner.example)"
            ],
        ),
        (
            {"dnsNames": ["db.internal.partner.example"]},
            [
                "spec.dnsNames[0]: 'db.internal.partner.example' is in an excluded subtree of "
                "CertificateAuthority partner's spec.nameConstraints"
            ],
        ),
        (
            {"ipAddresses": ["10.21.0.1"], "dnsNames": None},
            [
                "spec.ipAddresses[0]: '10.21.0.1' is outside CertificateAuthority partner's "
                "spec.nameConstraints (permitted: 10.20.0.0/16)"
            ],
        ),
        (
            {"uris": ["spiffe://partner.example/device/7"], "dnsNames": None},
            [
                "spec.uris[0]: 'spiffe://partner.example/device/7' is outside CertificateAuthority "
                "partner's spec.nameConstraints (permitted: .partner.example)"
            ],
        ),
        ({"uris": ["https://gw.partner.example/x"], "dnsNames": None}, []),
        (
            {"commonName": "gw.other.example", "dnsNames": None},
            [
                "spec.commonName: 'gw.other.example' is outside CertificateAuthority partner's "
                "spec.nameConstraints (permitted: partner.example)"
            ],
        ),
        # No email subtree: email addresses are not constrained (RFC 5280).
        ({"dnsNames": ["partner.example"], "emailAddresses": ["a@b.example"]}, []),
    ],
)
def test_violations_of_a_certificate_spec(fields: dict[str, Any], expected: list[str]):
    spec = parse_certificate_spec(builders.spec(**fields))
    assert nc.violations(PARTNER, nc.spec_names(spec), authority="partner") == expected


def test_a_csr_names_its_one_field():
    spec = parse_certificate_spec(builders.spec(dnsNames=["x.other.example"]))
    found = nc.violations(PARTNER, nc.spec_names(spec, where="spec.request"), authority="p")
    assert found == [
        "spec.request: 'x.other.example' is outside CertificateAuthority p's "
        "spec.nameConstraints (permitted: partner.example)"
    ]


@pytest.mark.parametrize(
    ("child", "parent", "expected"),
    [
        (
            {"permitted": {"dnsDomains": ["eu.partner.example"]}},
            {"permitted": {"dnsDomains": ["partner.example"]}},
            [],
        ),
        (
            {"permitted": {"dnsDomains": [".partner.example"]}},
            {"permitted": {"dnsDomains": ["partner.example"]}},
            [],
        ),
        (
            {"permitted": {"dnsDomains": ["partner.example"]}},
            {"permitted": {"dnsDomains": [".partner.example"]}},
            [
                "spec.nameConstraints.permitted.dnsDomains[0]: 'partner.example' is not within "
                "the parent CertificateAuthority root's permitted .partner.example"
            ],
        ),
        (
            {"permitted": {"dnsDomains": ["other.example"]}},
            {"permitted": {"dnsDomains": ["partner.example"]}},
            [
                "spec.nameConstraints.permitted.dnsDomains[0]: 'other.example' is not within "
                "the parent CertificateAuthority root's permitted partner.example"
            ],
        ),
        (
            {"permitted": {"dnsDomains": ["partner.example"]}},
            {"permitted": {"ipRanges": ["10.0.0.0/8"]}},
            [
                "spec.nameConstraints.permitted.ipRanges: required, as the parent "
                "CertificateAuthority root permits only 10.0.0.0/8"
            ],
        ),
        (
            {"permitted": {"ipRanges": ["10.1.0.0/16"]}},
            {"permitted": {"ipRanges": ["10.0.0.0/8"]}},
            [],
        ),
        (
            {"permitted": {"ipRanges": ["2001:db8::/32"]}},
            {"permitted": {"ipRanges": ["10.0.0.0/8"]}},
            [
                "spec.nameConstraints.permitted.ipRanges[0]: '2001:db8::/32' is not within "
                "the parent CertificateAuthority root's permitted 10.0.0.0/8"
            ],
        ),
        (
            {"permitted": {"dnsDomains": ["partner.example"]}},
            {"excluded": {"dnsDomains": ["secret.partner.example"]}},
            [
                "spec.nameConstraints.excluded.dnsDomains: must exclude "
                "'secret.partner.example', which the parent CertificateAuthority root excludes"
            ],
        ),
        (
            {
                "permitted": {"dnsDomains": ["partner.example"]},
                "excluded": {"dnsDomains": ["secret.partner.example"]},
            },
            {"excluded": {"dnsDomains": ["secret.partner.example"]}},
            [],
        ),
        (
            {"permitted": {"dnsDomains": ["partner.example"]}},
            {"excluded": {"dnsDomains": ["other.example"]}},
            [],
        ),
    ],
)
def test_outside_parent(child: dict[str, Any], parent: dict[str, Any], expected: list[str]):
    assert nc.outside_parent(nc.parse(child), nc.parse(parent), parent_name="root") == expected


def test_unconstrained_parent_contains_every_child():
    assert nc.outside_parent(PARTNER, nc.NameConstraints(), parent_name="root") == []


@pytest.mark.parametrize(
    ("name", "parent", "parent_of_parent", "expected"),
    [
        ("partner", "cluster-root", None, None),
        (
            "partner",
            "partner",
            None,
            "spec.parentRef.name: CertificateAuthority partner cannot be its own parent",
        ),
        (
            "a",
            "b",
            "a",
            "spec.parentRef.name: CertificateAuthority b is itself a subordinate (of a); a "
            "parent must be an authority with its own root (one level of subordinates, so "
            "every chain is leaf, intermediate, root)",
        ),
    ],
)
def test_parent_problem(name: str, parent: str, parent_of_parent: str | None, expected: Any):
    assert authority.parent_problem(name, parent, parent_of_parent) == expected


# The extension in the CA certificate, and what verifiers make of it.


@pytest.fixture(scope="module")
def root() -> ca.CAKeyPair:
    return ca.build_root(common_name="test root", now=NOW, lifetime=timedelta(days=3650))


@pytest.fixture(scope="module")
def partner(root: ca.CAKeyPair) -> ca.CAKeyPair:
    return ca.build_intermediate(
        issuer=root,
        common_name="test partner intermediate",
        now=NOW,
        lifetime=timedelta(days=365),
        name_constraints=PARTNER.extension(),
    )


def test_the_intermediate_carries_the_constraints_critical(partner: ca.CAKeyPair):
    extension = partner.certificate.extensions.get_extension_for_class(x509.NameConstraints)
    assert extension.critical
    assert extension.value.permitted_subtrees == [
        x509.DNSName("partner.example"),
        x509.IPAddress(ipaddress.ip_network("10.20.0.0/16")),
        x509.UniformResourceIdentifier(".partner.example"),
    ]
    assert extension.value.excluded_subtrees == [x509.DNSName("internal.partner.example")]
    assert nc.from_certificate(partner.certificate) == PARTNER


def test_an_unconstrained_intermediate_has_no_extension(root: ca.CAKeyPair):
    plain = ca.build_intermediate(
        issuer=root, common_name="plain", now=NOW, lifetime=timedelta(days=1)
    )
    assert nc.of_certificate(plain.certificate) is None
    assert nc.NameConstraints().extension() is None


def _hand_made_leaf(issuer: ca.CAKeyPair, dns_name: str) -> x509.Certificate:
    """A leaf signed with the intermediate's key directly, bypassing certsmith's checks."""
    key = ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)]))
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(minutes=1))
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
        .sign(issuer.key, keys.signature_hash(issuer.key))
    )


@pytest.mark.parametrize(
    ("dns_name", "verifies"),
    [
        ("api.partner.example", True),
        ("api.other.example", False),
        ("db.internal.partner.example", False),
    ],
)
def test_pythons_verifier_enforces_the_constraints(
    root: ca.CAKeyPair, partner: ca.CAKeyPair, dns_name: str, verifies: bool
):
    leaf = _hand_made_leaf(partner, dns_name)
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store([root.certificate]))
        .time(NOW)
        .build_server_verifier(x509.DNSName(dns_name))
    )
    if verifies:
        verifier.verify(leaf, [partner.certificate])
    else:
        with pytest.raises(verification.VerificationError):
            verifier.verify(leaf, [partner.certificate])


def test_build_leaf_refuses_a_name_outside_the_issuers_constraints(partner: ca.CAKeyPair):
    spec = parse_certificate_spec(builders.spec(dnsNames=["api.partner.example", "x.other.test"]))
    key = keys.generate_private_key(spec.private_key)
    with pytest.raises(ValueError, match=r"'x\.other\.test' is outside CertificateAuthority"):
        issue.build_leaf(spec=spec, public_key=key.public_key(), issuer=partner, now=NOW)


def test_build_identity_leaf_refuses_a_uri_outside_the_issuers_constraints(
    partner: ca.CAKeyPair,
):
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ValueError, match=r"spiffe://cluster\.local/ns/a/sa/b"):
        issue.build_identity_leaf(
            public_key=key.public_key(),
            issuer=partner,
            dns_names=["api.partner.example"],
            uris=["spiffe://cluster.local/ns/a/sa/b"],
            not_before=NOW,
            not_after=NOW + timedelta(hours=1),
        )


def test_intermediate_is_current_only_with_the_wanted_constraints(
    root: ca.CAKeyPair, partner: ca.CAKeyPair
):
    wanted = PARTNER.extension()
    assert authority.intermediate_is_current(partner, root, now=NOW, name_constraints=wanted)
    narrower = nc.parse({"permitted": {"dnsDomains": ["eu.partner.example"]}}).extension()
    assert not authority.intermediate_is_current(partner, root, now=NOW, name_constraints=narrower)
    assert not authority.intermediate_is_current(partner, root, now=NOW)


# A leaf under an intermediate with other constraints than the authority's now.

SHOP = nc.parse({"permitted": {"dnsDomains": ["shop.svc"]}})
SHOP_WIDER = nc.parse({"permitted": {"dnsDomains": ["svc"]}})


@pytest.mark.parametrize(
    ("issued_under", "authority_now", "reason"),
    [
        (None, None, None),
        (SHOP, SHOP, None),
        (SHOP_WIDER, SHOP, "NameConstraintsChanged"),
        (None, SHOP, "NameConstraintsChanged"),
        (SHOP, None, "NameConstraintsChanged"),
    ],
)
def test_a_leaf_moves_when_its_authoritys_constraints_change(
    root: ca.CAKeyPair,
    issued_under: nc.NameConstraints | None,
    authority_now: nc.NameConstraints | None,
    reason: str | None,
):
    intermediate = ca.build_intermediate(
        issuer=root,
        common_name="shop intermediate",
        now=cb.NOW - timedelta(days=1),
        lifetime=timedelta(days=365),
        name_constraints=None if issued_under is None else issued_under.extension(),
    )
    spec = cb.spec_of()
    secret = cb.contents_of(cb.secret_body(spec, root, intermediate))
    judged = cb.judged(spec, secret, root)
    view = policies.AuthorityView(
        name="shop",
        trusted_roots=(root.certificate,),
        name_constraints=None if authority_now is None else authority_now.extension(),
    )
    held = policies.readable(dataclasses.replace(judged, authority=view))
    assert isinstance(held, policies.Held)
    decision = policies.issuer_constraints_changed(held)
    assert (decision and decision.reason) == reason
    if decision is not None:
        assert decision.action is policies.Action.ISSUE


# certsmith's chain check, its judge and OpenSSL agree on every kind of constraint.


def _leaf_with(issuer: ca.CAKeyPair, names: list[x509.GeneralName]) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")]))
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(minutes=1))
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
        .sign(issuer.key, keys.signature_hash(issuer.key))
    )


def _openssl_accepts(tmp_path: Path, chain: list[x509.Certificate]) -> bool:
    (tmp_path / "root.pem").write_bytes(inspect.certificates_to_pem(chain[-1:]))
    (tmp_path / "chain.pem").write_bytes(inspect.certificates_to_pem(chain[1:-1]))
    (tmp_path / "leaf.pem").write_bytes(inspect.certificates_to_pem(chain[:1]))
    at = str(int(NOW.timestamp()))
    result = subprocess.run(
        [
            *("openssl", "verify", "-attime", at, "-CAfile", str(tmp_path / "root.pem")),
            *("-untrusted", str(tmp_path / "chain.pem"), str(tmp_path / "leaf.pem")),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0


DNS, URI, IP = x509.DNSName, x509.UniformResourceIdentifier, x509.IPAddress


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
@pytest.mark.parametrize(
    ("constraints", "san", "signed", "openssl"),
    [
        # URI domains: cryptography's verifier does not support them; certsmith judges them.
        (
            {"permitted": {"uriDomains": [".acme.example"]}},
            URI("https://x.acme.example/p"),
            True,
            True,
        ),
        (
            {"permitted": {"uriDomains": ["cluster.local"]}},
            URI("spiffe://cluster.local/ns/a/sa/w"),
            True,
            True,
        ),
        (
            {"permitted": {"uriDomains": [".acme.example"]}},
            URI("https://x.other.example/"),
            False,
            False,
        ),
        ({"excluded": {"uriDomains": ["bad.example"]}}, URI("https://bad.example/"), False, False),
        # Userinfo: OpenSSL matches `user@acme.example`, Go the host; certsmith refuses.
        (
            {"permitted": {"uriDomains": ["acme.example"]}},
            URI("https://user@acme.example/x"),
            False,
            False,
        ),
        # Leading-period DNS subtrees: below only.
        ({"permitted": {"dnsDomains": [".acme.example"]}}, DNS("api.acme.example"), True, True),
        ({"permitted": {"dnsDomains": [".acme.example"]}}, DNS("acme.example"), False, False),
        ({"permitted": {"dnsDomains": [".acme.example"]}}, DNS("*.acme.example"), True, True),
        (
            {
                "permitted": {"dnsDomains": ["acme.example"]},
                "excluded": {"dnsDomains": [".internal.acme.example"]},
            },
            DNS("a.internal.acme.example"),
            False,
            False,
        ),
        # A wildcard covering an excluded name: OpenSSL would accept it even for
        # internal.acme.example (Go and cryptography refuse the chain); certsmith refuses.
        (
            {
                "permitted": {"dnsDomains": ["acme.example"]},
                "excluded": {"dnsDomains": ["internal.acme.example"]},
            },
            DNS("*.acme.example"),
            False,
            True,
        ),
        (
            {
                "permitted": {"dnsDomains": ["acme.example"]},
                "excluded": {"dnsDomains": ["internal.acme.example"]},
            },
            DNS("*.web.acme.example"),
            True,
            True,
        ),
        ({"permitted": {"dnsDomains": ["x.acme.example"]}}, DNS("*.acme.example"), False, False),
        # IPv4-mapped IPv6 under IP constraints: Go clients take it as the IPv4 address.
        (
            {"excluded": {"ipRanges": ["0.0.0.0/0"]}},
            IP(ipaddress.ip_address("::ffff:10.0.0.1")),
            False,
            True,
        ),
        (
            {"permitted": {"ipRanges": ["10.0.0.0/8"]}},
            IP(ipaddress.ip_address("10.1.2.3")),
            True,
            True,
        ),
    ],
)
def test_chain_check_judge_and_openssl_agree(
    root: ca.CAKeyPair,
    tmp_path: Path,
    constraints: dict[str, Any],
    san: x509.GeneralName,
    signed: bool,
    openssl: bool,
):
    intermediate = ca.build_intermediate(
        issuer=root,
        common_name="constrained",
        now=NOW,
        lifetime=timedelta(days=30),
        name_constraints=nc.parse(constraints).extension(),
    )
    leaf = _leaf_with(intermediate, [san])
    error = inspect.chain_error(
        leaf=leaf, intermediates=[intermediate.certificate], roots=[root.certificate], now=NOW
    )
    assert (error is None) is signed, error
    assert (nc.leaf_violations(intermediate.certificate, [san]) == []) is signed
    assert _openssl_accepts(tmp_path, [leaf, intermediate.certificate, root.certificate]) is openssl
    # The intermediate itself passes certsmith's issuance self-check whatever its constraints.
    assert ca.issuance_problem(root.certificate, intermediate, NOW) is None


def test_chain_check_still_refuses_what_is_not_name_constraints(root: ca.CAKeyPair):
    intermediate = ca.build_intermediate(
        issuer=root,
        common_name="constrained",
        now=NOW,
        lifetime=timedelta(days=30),
        name_constraints=nc.parse({"permitted": {"uriDomains": [".acme.example"]}}).extension(),
    )
    other = ca.build_root(common_name="other", now=NOW, lifetime=timedelta(days=30))
    leaf = _leaf_with(intermediate, [URI("https://x.acme.example/")])
    chain = {"leaf": leaf, "intermediates": [intermediate.certificate]}
    assert inspect.chain_error(**chain, roots=[root.certificate], now=NOW) is None
    expired = NOW + timedelta(days=2)
    assert "not valid" in (
        inspect.chain_error(**chain, roots=[root.certificate], now=expired) or ""
    )
    assert inspect.chain_error(**chain, roots=[other.certificate], now=NOW) is not None
    forged = _leaf_with(other, [URI("https://x.acme.example/")])
    assert (
        inspect.chain_error(
            leaf=forged, intermediates=[intermediate.certificate], roots=[root.certificate], now=NOW
        )
        is not None
    )
