"""Build the self-signed root CA and the intermediate CA that signs leaf certificates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certsmith.api import times
from certsmith.pki import inspect, keys, name_constraints
from certsmith.pki.keys import PrivateKey, signature_hash

# Certificates start this long before `now` so peers whose clocks lag a little accept them.
BACKDATE = timedelta(minutes=1)


def signed_at(certificate: x509.Certificate) -> datetime:
    """When certsmith signed `certificate` (UTC): everything it signs starts BACKDATE early."""
    return certificate.not_valid_before_utc + BACKDATE


_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


@dataclass(frozen=True)
class CAKeyPair:
    """A CA certificate and its private key (the key of the certificate's public key)."""

    certificate: x509.Certificate
    key: PrivateKey


def build_root(*, common_name: str, now: datetime, lifetime: timedelta) -> CAKeyPair:
    """A self-signed ECDSA P-256 root; path length 1 allows one level of intermediates."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _common_name(common_name)
    start = now.replace(microsecond=0)
    certificate = _sign_ca(
        subject=name,
        public_key=key.public_key(),
        issuer_name=name,
        issuer_key=key,
        path_length=1,
        not_before=start - BACKDATE,
        not_after=start + lifetime,
    )
    return CAKeyPair(certificate=certificate, key=key)


def build_intermediate(
    *,
    issuer: CAKeyPair,
    common_name: str,
    now: datetime,
    lifetime: timedelta,
    name_constraints: x509.NameConstraints | None = None,
) -> CAKeyPair:
    """An ECDSA P-256 CA that may sign only leaves; it never outlives its issuer.
    `name_constraints` go in as a critical extension (RFC 5280 4.2.1.10: conforming CAs
    MUST mark it critical), which verifiers apply to every leaf below it."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = now.replace(microsecond=0)
    certificate = _sign_ca(
        subject=_common_name(common_name),
        public_key=key.public_key(),
        issuer_name=issuer.certificate.subject,
        issuer_key=issuer.key,
        path_length=0,
        not_before=start - BACKDATE,
        # A chain is only as valid as its issuer, so never outlive it.
        not_after=min(start + lifetime, issuer.certificate.not_valid_after_utc),
        name_constraints=name_constraints,
    )
    return CAKeyPair(certificate=certificate, key=key)


def _common_name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _sign_ca(
    *,
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer_name: x509.Name,
    issuer_key: PrivateKey,
    path_length: int,
    not_before: datetime,
    not_after: datetime,
    name_constraints: x509.NameConstraints | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if name_constraints is not None:
        builder = builder.add_extension(name_constraints, critical=True)
    return builder.sign(issuer_key, signature_hash(issuer_key))


def ca_problems(certificate: x509.Certificate) -> list[str]:
    """Why `certificate` may not sign certificates; empty when it may.

    RFC 5280 4.2.1.9: only basicConstraints CA:TRUE makes a CA; 4.2.1.3: keyCertSign in
    keyUsage allows it to sign certificates (verifiers, ours included, require keyUsage).
    """
    problems = []
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        if not constraints.ca:
            problems.append("basicConstraints is CA:FALSE (not a CA certificate)")
    except x509.ExtensionNotFound:
        problems.append("basicConstraints is missing (a CA certificate needs CA:TRUE)")
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.key_cert_sign:
            problems.append("keyUsage lacks keyCertSign (the root signs certsmith's intermediate)")
    except x509.ExtensionNotFound:
        problems.append("keyUsage is missing (a CA certificate needs keyCertSign)")
    return problems


def root_problems(
    certificate: x509.Certificate, *, now: datetime, intermediate_lifetime: timedelta
) -> list[str]:
    """Why a root a user supplied cannot serve as certsmith's root; empty when it can.

    Checked: CA:TRUE and keyCertSign (`ca_problems`); an RSA key's public exponent
    (keys.rsa_exponent_problem); a pathLenConstraint (RFC 5280 4.2.1.9)
    of at least 1, or none, since certsmith signs leaves through an intermediate (pathlen:0
    makes every chain fail, openssl error 25); self-signed (issuer = subject, and the
    signature verifies with its own key, as a trust anchor is); valid at `now` and still
    valid when an intermediate of `intermediate_lifetime` issued now would expire. The key
    is matched against the certificate where the Secret is read.
    """
    problems = ca_problems(certificate)
    public_key = certificate.public_key()
    if isinstance(public_key, rsa.RSAPublicKey) and (
        exponent := keys.rsa_exponent_problem(public_key)
    ):
        problems.append(f"its key is {exponent}")
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        if constraints.ca and constraints.path_length is not None and constraints.path_length < 1:
            problems.append(
                f"basicConstraints pathlen:{constraints.path_length} allows no CA below the "
                "root, but certsmith signs through an intermediate (use pathlen of 1 or more, "
                "or none)"
            )
    except x509.ExtensionNotFound:
        pass  # already reported by ca_problems
    if certificate.issuer != certificate.subject:
        problems.append(
            f"not self-signed: issued by '{certificate.issuer.rfc4514_string()}' (supply a "
            "root, not an intermediate)"
        )
    elif weak := _weak_signature(certificate):
        # Checked before the signature: the verifier refuses these outright, which would
        # read as "does not verify with its own key".
        problems.append(
            f"signed with {weak}, a signature algorithm verifiers refuse as weak: re-sign the "
            "root with SHA-256 or stronger"
        )
    elif not inspect.issued_by(certificate, certificate):
        problems.append("not self-signed: its signature does not verify with its own key")
    not_before, not_after = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    if now < not_before:
        problems.append(f"not valid before {times.format_time(not_before)}")
    elif now >= not_after:
        problems.append(f"expired at {times.format_time(not_after)}")
    elif not_after < now + intermediate_lifetime:
        problems.append(
            f"expires at {times.format_time(not_after)}, before an intermediate issued now would "
            f"({times.format_time(now + intermediate_lifetime)}): supply a root valid longer, or "
            "lower spec.intermediateLifetime"
        )
    return problems


WEAK_SIGNATURE_HASHES = ("md5", "sha1")
"""RFC 6151 (MD5), RFC 9155 and the CA/Browser Forum (SHA-1): refused by current verifiers."""


def _weak_signature(certificate: x509.Certificate) -> str | None:
    """The name of the weak hash the certificate is signed with, or None."""
    try:
        algorithm = certificate.signature_hash_algorithm
    except Exception:  # an algorithm cryptography does not know: the verifier says so
        return None
    name = algorithm.name if algorithm is not None else None
    return name if name in WEAK_SIGNATURE_HASHES else None


def issuance_problem(root: x509.Certificate, intermediate: CAKeyPair, now: datetime) -> str | None:
    """Why a leaf signed by `intermediate` would fail the chain check certsmith applies to
    every issued Secret (`inspect.chain_error`), or None when it would pass.

    A catch-all after the explicit checks: whatever else a supplied root carries (a key
    our verifier refuses, name constraints, a critical extension) is found before any
    leaf is signed, instead of every leaf being judged invalid and re-issued.
    """
    start = now.replace(microsecond=0)
    public_key = intermediate.key.public_key()
    probe = (
        x509.CertificateBuilder()
        .subject_name(_common_name("certsmith issuance check"))
        .issuer_name(intermediate.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - BACKDATE)
        .not_valid_after(min(start + BACKDATE, intermediate.certificate.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(_probe_name(intermediate.certificate))]),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(intermediate.key.public_key()),
            critical=False,
        )
        .sign(intermediate.key, signature_hash(intermediate.key))
    )
    return inspect.chain_error(
        leaf=probe, intermediates=[intermediate.certificate], roots=[root], now=now
    )


def _probe_name(intermediate: x509.Certificate) -> str:
    """The DNS name of issuance_problem's probe leaf: inside the intermediate's permitted DNS
    subtree when it has one (a name outside would fail as a constraint violation, not as a
    chain that cannot work)."""
    permitted = name_constraints.from_certificate(intermediate).permitted.dns_domains
    if permitted:
        return f"issuance-check.{permitted[0].removeprefix('.')}"
    return "issuance-check.certsmith.invalid"
