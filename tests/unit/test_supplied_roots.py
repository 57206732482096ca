"""The checks a root supplied through spec.rootSecretRef passes before certsmith uses it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from certsmith.authorities import authority
from certsmith.pki import ca
from tests import csrs

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
YEAR = timedelta(days=365)


def make_root(
    *,
    ca_flag: bool | None = True,
    path_length: int | None = None,
    key_cert_sign: bool | None = True,
    not_before: datetime = NOW - timedelta(days=1),
    not_after: datetime = NOW + 10 * YEAR,
    signer: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
    issuer: str = "supplied root",
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
) -> ca.CAKeyPair:
    """A root as `openssl req -x509` makes it, with the one flaw asked for."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "supplied root")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if ca_flag is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca_flag, path_length=path_length if ca_flag else None),
            critical=True,
        )
    if key_cert_sign is not None:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=not key_cert_sign,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=key_cert_sign,
                crl_sign=key_cert_sign,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    certificate = builder.sign(signer or key, hashes.SHA256())
    return ca.CAKeyPair(certificate=certificate, key=key)


def problems(pair: ca.CAKeyPair, lifetime: timedelta = YEAR) -> list[str]:
    return ca.root_problems(pair.certificate, now=NOW, intermediate_lifetime=lifetime)


def test_a_good_root_passes_and_its_leaves_would_verify() -> None:
    for path_length in (None, 1, 5):
        root = make_root(path_length=path_length)
        assert problems(root) == []
        intermediate = ca.build_intermediate(issuer=root, common_name="i", now=NOW, lifetime=YEAR)
        assert ca.issuance_problem(root.certificate, intermediate, NOW) is None


@pytest.mark.parametrize(
    ("flaw", "expected"),
    [
        ({"path_length": 0}, "basicConstraints pathlen:0 allows no CA below the root"),
        ({"ca_flag": False}, "basicConstraints is CA:FALSE (not a CA certificate)"),
        ({"ca_flag": None}, "basicConstraints is missing"),
        ({"key_cert_sign": False}, "keyUsage lacks keyCertSign"),
        ({"key_cert_sign": None}, "keyUsage is missing"),
        ({"issuer": "corporate root"}, "not self-signed: issued by 'CN=corporate root'"),
        (
            {"signer": ec.generate_private_key(ec.SECP256R1())},
            "not self-signed: its signature does not verify with its own key",
        ),
        (
            {"key": csrs.rsa_exponent_3_key()},
            "its key is an RSA key with public exponent 3 (publicExponent must be 65537",
        ),
        ({"not_after": NOW - timedelta(seconds=1)}, "expired at 2026-06-01T11:59:59Z"),
        ({"not_before": NOW + timedelta(hours=1)}, "not valid before 2026-06-01T13:00:00Z"),
        (
            {"not_after": NOW + YEAR - timedelta(days=1)},
            "expires at 2027-05-31T12:00:00Z, before an intermediate issued now would "
            "(2027-06-01T12:00:00Z): supply a root valid longer, or lower "
            "spec.intermediateLifetime",
        ),
    ],
)
def test_each_flaw_is_named(flaw: dict, expected: str) -> None:
    found = problems(make_root(**flaw))
    assert len(found) == 1, found
    assert found[0].startswith(expected)


def test_a_shorter_intermediate_lifetime_fits_a_root_near_its_end() -> None:
    root = make_root(not_after=NOW + timedelta(days=100))
    assert problems(root, lifetime=timedelta(days=90)) == []
    assert len(problems(root, lifetime=YEAR)) == 1


def test_issuance_check_names_what_the_verifier_refuses() -> None:
    # Nothing in the explicit checks is wrong with it, yet no verifier accepts its chains.
    weak = make_root(key=rsa.generate_private_key(public_exponent=65537, key_size=1024))
    assert problems(weak) == []
    intermediate = ca.build_intermediate(issuer=weak, common_name="i", now=NOW, lifetime=YEAR)
    assert ca.issuance_problem(weak.certificate, intermediate, NOW) == (
        "validation failed: candidates exhausted: RSA key is too weak"
    )
    stranger = ca.build_intermediate(issuer=make_root(), common_name="i", now=NOW, lifetime=YEAR)
    assert ca.issuance_problem(make_root().certificate, stranger, NOW) is not None


def test_an_intermediate_that_is_not_a_ca_is_replaced() -> None:
    root = make_root()
    good = ca.build_intermediate(issuer=root, common_name="i", now=NOW, lifetime=YEAR)
    assert authority.intermediate_is_current(good, root, now=NOW)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(good.certificate.subject)
        .issuer_name(root.certificate.subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - timedelta(minutes=1))
        .not_valid_after(NOW + YEAR)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(root.key, hashes.SHA256())
    )
    assert not authority.intermediate_is_current(
        ca.CAKeyPair(certificate=leaf, key=key), root, now=NOW
    )


# `openssl req -x509 -sha1 -newkey ec ...` (cryptography refuses to sign with SHA-1).
SHA1_ROOT = b"""\
-----BEGIN CERTIFICATE-----
MIIBjDCCATSgAwIBAgIUfqIeVRB6wFQqNkkKu4Vke0wkLcIwCQYHKoZIzj0EATAU
MRIwEAYDVQQDDAlzaGExLXJvb3QwIBcNMjYxMTMwMDIwNTM0WhgPMjEyNjExMDYw
MjA1MzRaMBQxEjAQBgNVBAMMCXNoYTEtcm9vdDBZMBMGByqGSM49AgEGCCqGSM49
AwEHA0IABM2Me7lmaRJq08ZHpnaJVsNK/KBxoOY4ZK2Dtg3VHBBXWAkVI/nZzjTS
ZM2M7Gg3Rl7uvVBSLOF8/Qpmn+fBwTejYzBhMB0GA1UdDgQWBBSTCbotQtPo+mu1
L5yTQtgQGIuISjAfBgNVHSMEGDAWgBSTCbotQtPo+mu1L5yTQtgQGIuISjAPBgNV
HRMBAf8EBTADAQH/MA4GA1UdDwEB/wQEAwICBDAJBgcqhkjOPQQBA0cAMEQCIGgp
JvvtR5g6LFFnCB9S3sD/YxIYvlEbX0HjcEdVShbYAiAwjBnkv7Bzvf8lal/I4/wF
eoeTXzStXGzs/xe98ym3+w==
-----END CERTIFICATE-----
"""


def test_a_sha1_signed_root_is_refused_for_its_algorithm_not_as_not_self_signed() -> None:
    certificate = x509.load_pem_x509_certificate(SHA1_ROOT)
    now = certificate.not_valid_before_utc + YEAR
    found = ca.root_problems(certificate, now=now, intermediate_lifetime=YEAR)
    assert found == [
        "signed with sha1, a signature algorithm verifiers refuse as weak: re-sign the root "
        "with SHA-256 or stronger"
    ]
