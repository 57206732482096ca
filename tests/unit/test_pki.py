"""Keys, the CA pair and leaf issuance, checked with our verifier, openssl and pkilint."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID

from certsmith.api.model import CertificateSpec, PrivateKeySpec, parse_certificate_spec
from certsmith.pki import ca, inspect, issue, keys
from tests import builders

NOW = datetime(2026, 3, 1, 12, 0, 30, 250_000, tzinfo=UTC)
START = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)  # NOW without its microseconds
ROOT_LIFETIME = timedelta(days=3650)
INTERMEDIATE_LIFETIME = timedelta(days=365)
LINT_PKIX_CERT = Path(sys.executable).parent / "lint_pkix_cert"


@pytest.fixture(scope="module")
def root() -> ca.CAKeyPair:
    return ca.build_root(common_name="certsmith test root", now=NOW, lifetime=ROOT_LIFETIME)


@pytest.fixture(scope="module")
def intermediate(root: ca.CAKeyPair) -> ca.CAKeyPair:
    return ca.build_intermediate(
        issuer=root,
        common_name="certsmith test intermediate",
        now=NOW,
        lifetime=INTERMEDIATE_LIFETIME,
    )


@pytest.fixture(scope="module")
def rsa_key() -> keys.PrivateKey:
    return keys.generate_private_key(PrivateKeySpec("RSA"))  # RSA generation is the slow part


def make_spec(**fields: Any) -> CertificateSpec:
    return parse_certificate_spec(builders.spec(**fields))


def issue_leaf(
    issuer: ca.CAKeyPair, key: keys.PrivateKey | None = None, **fields: Any
) -> x509.Certificate:
    spec = make_spec(**fields)
    key = key or keys.generate_private_key(spec.private_key)
    return issue.build_leaf(spec=spec, public_key=key.public_key(), issuer=issuer, now=NOW)


def extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.Extension[Any]:
    return cert.extensions.get_extension_for_class(kind)


def key_usage_bits(cert: x509.Certificate) -> set[str]:
    usage = extension(cert, x509.KeyUsage).value
    names = ["digital_signature", "content_commitment", "key_encipherment", "data_encipherment"]
    names += ["key_agreement", "key_cert_sign", "crl_sign"]
    bits = {name for name in names if getattr(usage, name)}
    if usage.key_agreement:
        bits |= {name for name in ("encipher_only", "decipher_only") if getattr(usage, name)}
    return bits


def write_pem(path: Path, *certs: x509.Certificate) -> Path:
    path.write_bytes(inspect.certificates_to_pem(certs))
    return path


def openssl_verify(
    tmp_path: Path, leaf: x509.Certificate, intermediate: ca.CAKeyPair, root: ca.CAKeyPair
) -> subprocess.CompletedProcess[str]:
    command = ["openssl", "verify", "-x509_strict", "-attime", str(int(NOW.timestamp()))]
    command += ["-CAfile", str(write_pem(tmp_path / "root.pem", root.certificate))]
    command += [
        "-untrusted",
        str(write_pem(tmp_path / "intermediate.pem", intermediate.certificate)),
    ]
    command.append(str(write_pem(tmp_path / "leaf.pem", leaf)))
    return subprocess.run(command, capture_output=True, text=True, check=False)


# --- CA pair ---


def test_root_is_a_self_signed_ca(root: ca.CAKeyPair) -> None:
    cert = root.certificate
    assert cert.subject == cert.issuer
    assert (
        cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "certsmith test root"
    )
    cert.verify_directly_issued_by(cert)
    constraints = extension(cert, x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 1
    assert extension(cert, x509.KeyUsage).critical
    assert key_usage_bits(cert) == {"key_cert_sign", "crl_sign"}
    ski = extension(cert, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(root.key.public_key())
    assert extension(cert, x509.AuthorityKeyIdentifier).value.key_identifier == ski.digest
    assert isinstance(root.key, ec.EllipticCurvePrivateKey) and root.key.curve.name == "secp256r1"
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert cert.not_valid_before_utc == START - timedelta(minutes=1)
    assert cert.not_valid_after_utc == START + ROOT_LIFETIME


def test_intermediate_may_sign_only_leaves(root: ca.CAKeyPair, intermediate: ca.CAKeyPair) -> None:
    cert = intermediate.certificate
    assert cert.issuer == root.certificate.subject
    cert.verify_directly_issued_by(root.certificate)
    constraints = extension(cert, x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    assert extension(cert, x509.KeyUsage).critical
    assert key_usage_bits(cert) == {"key_cert_sign", "crl_sign"}
    root_ski = extension(root.certificate, x509.SubjectKeyIdentifier).value.digest
    assert extension(cert, x509.AuthorityKeyIdentifier).value.key_identifier == root_ski
    assert keys.key_matches_certificate(intermediate.key, cert)
    assert cert.not_valid_after_utc == START + INTERMEDIATE_LIFETIME


def test_intermediate_never_outlives_its_root(root: ca.CAKeyPair) -> None:
    long = ca.build_intermediate(issuer=root, common_name="i", now=NOW, lifetime=ROOT_LIFETIME * 2)
    assert long.certificate.not_valid_after_utc == root.certificate.not_valid_after_utc


# --- leaves ---


@pytest.mark.parametrize("algorithm", ["ECDSA", "RSA", "Ed25519"])
def test_leaf_verifies_with_openssl_and_our_verifier(
    algorithm: str,
    root: ca.CAKeyPair,
    intermediate: ca.CAKeyPair,
    rsa_key: keys.PrivateKey,
    tmp_path: Path,
) -> None:
    leaf = issue_leaf(
        intermediate,
        rsa_key if algorithm == "RSA" else None,
        commonName="web.default.svc",
        dnsNames=["web.default.svc", "*.web.example.com"],
        ipAddresses=["10.0.0.1", "2001:db8::1"],
        uris=["spiffe://cluster.local/ns/default/sa/web"],
        emailAddresses=["ops@example.com"],
        privateKey={"algorithm": algorithm},
    )
    result = openssl_verify(tmp_path, leaf, intermediate, root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert inspect.chain_is_valid(
        leaf=leaf, intermediates=[intermediate.certificate], roots=[root.certificate], now=NOW
    )
    constraints = extension(leaf, x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    san = extension(leaf, x509.SubjectAlternativeName)
    assert not san.critical  # the subject is not empty
    assert san.value.get_values_for_type(x509.DNSName) == ["web.default.svc", "*.web.example.com"]
    assert [str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)] == [
        "10.0.0.1",
        "2001:db8::1",
    ]
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://cluster.local/ns/default/sa/web"
    ]
    assert san.value.get_values_for_type(x509.RFC822Name) == ["ops@example.com"]
    eku = extension(leaf, x509.ExtendedKeyUsage)
    assert not eku.critical
    assert list(eku.value) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    assert extension(leaf, x509.KeyUsage).critical
    # By default RSA leaves can also carry a static RSA key exchange (TLS_RSA_*); never others.
    expected = (
        {"digital_signature", "key_encipherment"} if algorithm == "RSA" else {"digital_signature"}
    )
    assert key_usage_bits(leaf) == expected
    assert extension(leaf, x509.SubjectKeyIdentifier).value == (
        x509.SubjectKeyIdentifier.from_public_key(leaf.public_key())  # type: ignore[arg-type]
    )
    intermediate_ski = extension(intermediate.certificate, x509.SubjectKeyIdentifier).value.digest
    assert extension(leaf, x509.AuthorityKeyIdentifier).value.key_identifier == intermediate_ski
    assert isinstance(leaf.signature_hash_algorithm, hashes.SHA256)


@pytest.mark.parametrize(
    ("algorithm", "usages", "bits"),
    [
        ("RSA", None, {"digital_signature", "key_encipherment"}),
        ("ECDSA", None, {"digital_signature"}),
        ("Ed25519", None, {"digital_signature"}),
        # Usages listed replace the default, for RSA too.
        ("RSA", ["digital signature", "server auth"], {"digital_signature"}),
        (
            "RSA",
            ["key encipherment", "data encipherment"],
            {"key_encipherment", "data_encipherment"},
        ),
        ("ECDSA", ["key agreement", "encipher only"], {"key_agreement", "encipher_only"}),
        ("ECDSA", ["key agreement"], {"key_agreement"}),
        ("Ed25519", ["content commitment"], {"content_commitment"}),
        ("ECDSA", ["server auth"], {"digital_signature"}),
    ],
)
def test_key_usage_fits_the_key_type(
    algorithm: str,
    usages: list[str] | None,
    bits: set[str],
    intermediate: ca.CAKeyPair,
    rsa_key: keys.PrivateKey,
) -> None:
    key = rsa_key if algorithm == "RSA" else None
    leaf = issue_leaf(intermediate, key, privateKey={"algorithm": algorithm}, usages=usages)
    assert key_usage_bits(leaf) == bits


def test_key_usage_bits_follow_the_key_certified_not_the_spec(intermediate: ca.CAKeyPair) -> None:
    # RSA-only bits asked for by an RSA spec are left out of a leaf for an ECDSA key.
    spec = make_spec(privateKey={"algorithm": "RSA"}, usages=["key encipherment", "client auth"])
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = issue.build_leaf(spec=spec, public_key=key.public_key(), issuer=intermediate, now=NOW)
    assert key_usage_bits(leaf) == {"digital_signature"}


def test_extended_key_usage_is_canonical_and_omitted_when_not_asked(
    intermediate: ca.CAKeyPair,
) -> None:
    leaf = issue_leaf(
        intermediate, usages=["timestamping", "client auth", "code signing", "server auth"]
    )
    assert list(extension(leaf, x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
        ExtendedKeyUsageOID.CODE_SIGNING,
        ExtendedKeyUsageOID.TIME_STAMPING,
    ]
    plain = issue_leaf(intermediate, usages=["digital signature"])
    with pytest.raises(x509.ExtensionNotFound):
        plain.extensions.get_extension_for_class(x509.ExtendedKeyUsage)


def test_empty_subject_makes_the_san_critical(intermediate: ca.CAKeyPair) -> None:
    leaf = issue_leaf(intermediate, ipAddresses=["10.1.2.3"])
    assert len(leaf.subject) == 0
    assert extension(leaf, x509.SubjectAlternativeName).critical


def verify_as_server(
    leaf: x509.Certificate, intermediate: ca.CAKeyPair, root: ca.CAKeyPair, name: str
) -> None:
    """cryptography's WebPKI verifier reads names from the SAN only, as Go, browsers and
    rustls do (RFC 6125 6.4.4); raises VerificationError."""
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store([root.certificate]))
        .time(NOW)
        .build_server_verifier(x509.DNSName(name))
    )
    verifier.verify(leaf, [intermediate.certificate])


def test_common_name_only_leaf_carries_its_name_in_the_san(
    root: ca.CAKeyPair, intermediate: ca.CAKeyPair, tmp_path: Path
) -> None:
    leaf = issue_leaf(intermediate, dnsNames=None, commonName="web.t1.svc")
    assert leaf.subject.rfc4514_string() == "CN=web.t1.svc"
    san = extension(leaf, x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["web.t1.svc"]
    assert not san.critical  # the subject is not empty
    assert openssl_verify(tmp_path, leaf, intermediate, root).returncode == 0
    verify_as_server(leaf, intermediate, root, "web.t1.svc")
    with pytest.raises(verification.VerificationError):
        verify_as_server(leaf, intermediate, root, "other.t1.svc")


def test_common_name_joins_the_san_dns_names_once(intermediate: ca.CAKeyPair) -> None:
    leaf = issue_leaf(intermediate, commonName="API.example.com", dnsNames=["b.example.com"])
    names = extension(leaf, x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["API.example.com", "b.example.com"]
    listed = issue_leaf(intermediate, commonName="B.example.com", dnsNames=["b.example.com"])
    names = extension(listed, x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["b.example.com"]
    # A commonName that is another of the certificate's names is not made a DNS name.
    uri = "spiffe://cluster.local/ns/t1/sa/web"
    svid = issue_leaf(intermediate, dnsNames=None, commonName=uri, uris=[uri])
    names = extension(svid, x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == []
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == [uri]


def test_subject_attributes_in_go_order(intermediate: ca.CAKeyPair) -> None:
    subject = {
        "organizations": ["Acme"],
        "organizationalUnits": ["Platform", "SRE"],
        "countries": ["DE"],
        "localities": ["Berlin"],
        "provinces": ["BE"],
        "streetAddresses": ["Main St 1"],
        "postalCodes": ["10115"],
        "serialNumber": "42",
    }
    leaf = issue_leaf(intermediate, commonName="web.example.com", subject=subject)
    assert [(a.oid, a.value) for a in leaf.subject] == [
        (NameOID.COUNTRY_NAME, "DE"),
        (NameOID.ORGANIZATION_NAME, "Acme"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "Platform"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "SRE"),
        (NameOID.LOCALITY_NAME, "Berlin"),
        (NameOID.STATE_OR_PROVINCE_NAME, "BE"),
        (NameOID.STREET_ADDRESS, "Main St 1"),
        (NameOID.POSTAL_CODE, "10115"),
        (NameOID.SERIAL_NUMBER, "42"),
        (NameOID.COMMON_NAME, "web.example.com"),
    ]


def test_leaf_validity_is_backdated_and_capped_at_the_issuer(intermediate: ca.CAKeyPair) -> None:
    leaf = issue_leaf(intermediate, duration="24h")
    assert leaf.not_valid_before_utc == START - timedelta(minutes=1)
    assert leaf.not_valid_after_utc == START + timedelta(hours=24)
    capped = issue_leaf(intermediate, duration=f"{24 * 400}h")
    assert capped.not_valid_after_utc == intermediate.certificate.not_valid_after_utc


def test_serials_are_random_positive_and_long(intermediate: ca.CAKeyPair) -> None:
    serials = {issue_leaf(intermediate).serial_number for _ in range(8)}
    assert len(serials) == 8
    assert all(0 < s < 2**159 and s.bit_length() > 64 for s in serials)


def test_ed25519_issuer_signs_without_a_separate_hash(root: ca.CAKeyPair) -> None:
    issuer = ca.CAKeyPair(certificate=root.certificate, key=ed25519.Ed25519PrivateKey.generate())
    leaf = issue_leaf(issuer)
    assert leaf.signature_algorithm_oid == SignatureAlgorithmOID.ED25519
    assert leaf.signature_hash_algorithm is None
    assert keys.signature_hash(issuer.key) is None
    assert isinstance(keys.signature_hash(root.key), hashes.SHA256)


# --- chain verification ---


def test_chain_from_another_root_is_refused(
    root: ca.CAKeyPair, intermediate: ca.CAKeyPair, tmp_path: Path
) -> None:
    other_root = ca.build_root(common_name="certsmith test root", now=NOW, lifetime=ROOT_LIFETIME)
    other_intermediate = ca.build_intermediate(
        issuer=other_root,
        common_name="certsmith test intermediate",
        now=NOW,
        lifetime=INTERMEDIATE_LIFETIME,
    )
    leaf = issue_leaf(other_intermediate)
    # Same names, different keys: only the signatures tell them apart.
    assert not inspect.chain_is_valid(
        leaf=leaf, intermediates=[other_intermediate.certificate], roots=[root.certificate], now=NOW
    )
    assert not inspect.chain_is_valid(
        leaf=leaf, intermediates=[intermediate.certificate], roots=[root.certificate], now=NOW
    )
    assert openssl_verify(tmp_path, leaf, other_intermediate, root).returncode != 0
    assert inspect.chain_is_valid(
        leaf=leaf,
        intermediates=[other_intermediate.certificate],
        roots=[root.certificate, other_root.certificate],
        now=NOW,
    )


@pytest.mark.parametrize(
    ("when", "with_intermediate", "valid"),
    [
        (NOW, True, True),
        (NOW, False, False),  # the intermediate is missing
        (START - timedelta(minutes=2), True, False),  # not yet valid
        (START + timedelta(hours=1, seconds=1), True, False),  # the leaf has expired
        (START + timedelta(minutes=59), True, True),
    ],
)
def test_chain_validity_depends_on_time_and_intermediates(
    when: datetime,
    with_intermediate: bool,
    valid: bool,
    root: ca.CAKeyPair,
    intermediate: ca.CAKeyPair,
) -> None:
    leaf = issue_leaf(intermediate, duration="1h")
    intermediates = [intermediate.certificate] if with_intermediate else []
    assert (
        inspect.chain_is_valid(
            leaf=leaf, intermediates=intermediates, roots=[root.certificate], now=when
        )
        is valid
    )


@pytest.mark.parametrize("usages", [["server auth"], ["code signing"], ["digital signature"]])
def test_any_extended_key_usage_chains(
    usages: list[str], root: ca.CAKeyPair, intermediate: ca.CAKeyPair
) -> None:
    leaf = issue_leaf(intermediate, usages=usages)
    assert inspect.chain_is_valid(
        leaf=leaf, intermediates=[intermediate.certificate], roots=[root.certificate], now=NOW
    )


def test_leaf_directly_under_the_root_and_empty_roots(root: ca.CAKeyPair) -> None:
    leaf = issue_leaf(root)
    assert inspect.chain_is_valid(leaf=leaf, intermediates=[], roots=[root.certificate], now=NOW)
    assert not inspect.chain_is_valid(leaf=leaf, intermediates=[], roots=[], now=NOW)


def test_a_leaf_cannot_act_as_an_intermediate(
    root: ca.CAKeyPair, intermediate: ca.CAKeyPair
) -> None:
    leaf_key = keys.generate_private_key(PrivateKeySpec())
    leaf = issue_leaf(intermediate, leaf_key)
    impostor = ca.CAKeyPair(certificate=leaf, key=leaf_key)
    grandchild = issue_leaf(impostor)
    assert not inspect.chain_is_valid(
        leaf=grandchild,
        intermediates=[leaf, intermediate.certificate],
        roots=[root.certificate],
        now=NOW,
    )


# --- keys ---


@pytest.mark.parametrize(
    ("spec", "kind", "size"),
    [
        (PrivateKeySpec("ECDSA"), ec.EllipticCurvePrivateKey, 256),
        (PrivateKeySpec("ECDSA", 384), ec.EllipticCurvePrivateKey, 384),
        (PrivateKeySpec("ECDSA", 521), ec.EllipticCurvePrivateKey, 521),
        (PrivateKeySpec("RSA", 3072), rsa.RSAPrivateKey, 3072),
        (PrivateKeySpec("Ed25519"), ed25519.Ed25519PrivateKey, None),
    ],
)
def test_generated_keys_match_their_spec(
    spec: PrivateKeySpec, kind: type, size: int | None
) -> None:
    key = keys.generate_private_key(spec)
    assert isinstance(key, kind)
    if size is not None:
        assert (
            key.curve.key_size if isinstance(key, ec.EllipticCurvePrivateKey) else key.key_size
        ) == size
    assert keys.key_matches_spec(key, spec)


def test_key_matches_spec_detects_algorithm_and_size(rsa_key: keys.PrivateKey) -> None:
    p256 = keys.generate_private_key(PrivateKeySpec("ECDSA", 256))
    assert not keys.key_matches_spec(p256, PrivateKeySpec("ECDSA", 384))
    assert not keys.key_matches_spec(p256, PrivateKeySpec("RSA"))
    assert not keys.key_matches_spec(rsa_key, PrivateKeySpec("RSA", 4096))
    assert keys.key_matches_spec(rsa_key, PrivateKeySpec("RSA", 2048))
    assert not keys.key_matches_spec(ed25519.Ed25519PrivateKey.generate(), PrivateKeySpec())


def test_unsupported_key_spec_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        keys.generate_private_key(PrivateKeySpec("ECDSA", 224))


@pytest.mark.parametrize(
    ("algorithm", "encoding", "header"),
    [
        ("ECDSA", "PKCS8", b"-----BEGIN PRIVATE KEY-----"),
        ("ECDSA", "PKCS1", b"-----BEGIN EC PRIVATE KEY-----"),
        ("RSA", "PKCS8", b"-----BEGIN PRIVATE KEY-----"),
        ("RSA", "PKCS1", b"-----BEGIN RSA PRIVATE KEY-----"),
        ("Ed25519", "PKCS8", b"-----BEGIN PRIVATE KEY-----"),
    ],
)
def test_encoded_keys_load_back(
    algorithm: str, encoding: str, header: bytes, rsa_key: keys.PrivateKey
) -> None:
    key = rsa_key if algorithm == "RSA" else keys.generate_private_key(PrivateKeySpec(algorithm))
    pem = keys.encode_private_key(key, encoding)
    assert pem.startswith(header)
    loaded = keys.load_private_key(pem)
    assert type(loaded) is type(key)
    assert keys.encode_private_key(loaded, "PKCS8") == keys.encode_private_key(key, "PKCS8")


@pytest.mark.parametrize("encoding", ["PKCS1", "DER", "pkcs8"])
def test_impossible_encodings_are_refused(encoding: str) -> None:
    key = (
        ed25519.Ed25519PrivateKey.generate()
        if encoding == "PKCS1"
        else ec.generate_private_key(ec.SECP256R1())
    )
    with pytest.raises(ValueError, match="cannot encode"):
        keys.encode_private_key(key, encoding)


def test_unusable_keys_raise_value_error() -> None:
    encrypted = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    x25519_pem = x25519.X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    for pem in (b"", b"garbage", encrypted, x25519_pem):
        with pytest.raises(ValueError):
            keys.load_private_key(pem)


def test_key_certificate_mismatch_is_detected(intermediate: ca.CAKeyPair) -> None:
    key = keys.generate_private_key(PrivateKeySpec())
    leaf = issue_leaf(intermediate, key)
    assert keys.key_matches_certificate(key, leaf)
    assert not keys.key_matches_certificate(keys.generate_private_key(PrivateKeySpec()), leaf)
    assert not keys.key_matches_certificate(ed25519.Ed25519PrivateKey.generate(), leaf)


# --- inspection ---


def test_pem_bundles_round_trip(root: ca.CAKeyPair, intermediate: ca.CAKeyPair) -> None:
    leaf = issue_leaf(intermediate)
    bundle = inspect.certificates_to_pem([leaf, intermediate.certificate, root.certificate])
    assert bundle.count(b"-----BEGIN CERTIFICATE-----") == 3
    assert inspect.load_pem_certificates(bundle) == [
        leaf,
        intermediate.certificate,
        root.certificate,
    ]
    for garbage in (b"", b"not pem", bundle.replace(b"M", b"!")):
        with pytest.raises(ValueError):
            inspect.load_pem_certificates(garbage)


def test_fingerprint_and_serial_match_openssl(intermediate: ca.CAKeyPair, tmp_path: Path) -> None:
    leaf = issue_leaf(intermediate)
    path = write_pem(tmp_path / "leaf.pem", leaf)
    command = ["openssl", "x509", "-in", str(path), "-noout", "-fingerprint", "-sha256", "-serial"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    fields = dict(line.split("=", 1) for line in output.splitlines())
    fingerprint = inspect.fingerprint_sha256(leaf)
    assert fingerprint == fields["sha256 Fingerprint"].replace(":", "").lower()
    assert len(fingerprint) == 64
    serial = inspect.serial_hex(leaf)
    assert serial == serial.lower() and not serial.startswith("0x")
    assert int(serial, 16) == int(fields["serial"], 16) == leaf.serial_number


# --- RFC 5280 lint ---


@pytest.mark.skipif(not LINT_PKIX_CERT.exists(), reason="pkilint is not installed (dev extra)")
@pytest.mark.parametrize("which", ["root", "intermediate", "ECDSA", "RSA", "Ed25519"])
def test_pkilint_reports_no_errors(
    which: str,
    root: ca.CAKeyPair,
    intermediate: ca.CAKeyPair,
    rsa_key: keys.PrivateKey,
    tmp_path: Path,
) -> None:
    # pkilint's PKIX profile rejects wildcard DNS names and spiffe:// URIs (both false
    # positives for our use), so this leaf carries plain DNS names, IPs and an https URI.
    if which in ("root", "intermediate"):
        cert = root.certificate if which == "root" else intermediate.certificate
    else:
        cert = issue_leaf(
            intermediate,
            rsa_key if which == "RSA" else None,
            commonName="web.example.com",
            dnsNames=["web.default.svc", "web.example.com"],
            ipAddresses=["10.0.0.1", "2001:db8::1"],
            uris=["https://web.example.com/id"],
            emailAddresses=["ops@example.com"],
            subject={"organizations": ["Acme"], "countries": ["DE"], "serialNumber": "42"},
            privateKey={"algorithm": which},
            usages=[
                "digital signature",
                *{"RSA": ["key encipherment"], "ECDSA": ["key agreement"]}.get(which, []),
                "server auth",
                "client auth",
            ],
        )
    path = write_pem(tmp_path / "cert.pem", cert)
    command = [str(LINT_PKIX_CERT), "lint", "-s", "ERROR", str(path)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@pytest.mark.skipif(not LINT_PKIX_CERT.exists(), reason="pkilint is not installed (dev extra)")
def test_pkilint_accepts_a_leaf_with_an_empty_subject(
    intermediate: ca.CAKeyPair, tmp_path: Path
) -> None:
    leaf = issue_leaf(intermediate, dnsNames=["web.example.com"], ipAddresses=["10.0.0.1"])
    path = write_pem(tmp_path / "leaf.pem", leaf)
    command = [str(LINT_PKIX_CERT), "lint", "-s", "ERROR", str(path)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_serials_print_whole_bytes_as_openssl_and_nginx_do(intermediate: ca.CAKeyPair) -> None:
    spec = make_spec(secretName="s", dnsNames=["a.example.com"])
    for _ in range(64):  # about one serial in 16 has a leading zero nibble
        key = keys.generate_private_key(spec.private_key)
        leaf = issue.build_leaf(
            spec=spec, public_key=key.public_key(), issuer=intermediate, now=NOW
        )
        text = inspect.serial_hex(leaf)
        assert len(text) % 2 == 0 and int(text, 16) == leaf.serial_number
