"""Build and sign an RFC 5280 leaf certificate from a CertificateSpec, a public key and a CA."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certsmith.api.model import (
    DEFAULT_RSA_USAGES,
    DEFAULT_USAGES,
    CertificateSpec,
    leaf_dns_names,
)
from certsmith.pki.ca import BACKDATE, CAKeyPair
from certsmith.pki.keys import signature_hash

_Extension = TypeVar("_Extension", bound=x509.ExtensionType)

# In canonical order, so the EKU extension does not depend on the order of spec.usages.
_EXTENDED_USAGES = {
    "server auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "code signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "email protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "timestamping": ExtendedKeyUsageOID.TIME_STAMPING,
}


def build_leaf(
    *,
    spec: CertificateSpec,
    public_key: CertificatePublicKeyTypes,
    issuer: CAKeyPair,
    now: datetime,
) -> x509.Certificate:
    """Sign a CA:FALSE certificate for `public_key`; notAfter never exceeds the issuer's."""
    start = now.replace(microsecond=0)
    subject = _subject(spec)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - BACKDATE)
        .not_valid_after(min(start + spec.duration, issuer.certificate.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(spec.usages, public_key), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    names = _alternative_names(spec)
    if names:
        # RFC 5280 4.2.1.6: with an empty subject the SAN carries the identity and is critical.
        san = x509.SubjectAlternativeName(names)
        builder = builder.add_extension(san, critical=not subject)
    extended = [oid for usage, oid in _EXTENDED_USAGES.items() if usage in spec.usages]
    if extended:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
    return builder.sign(issuer.key, signature_hash(issuer.key))


def build_identity_leaf(
    *,
    public_key: CertificatePublicKeyTypes,
    issuer: CAKeyPair,
    dns_names: Sequence[str],
    uris: Sequence[str],
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    """Sign a CA:FALSE TLS server and client certificate for `public_key` from `not_before`
    to `not_after` exactly (as given: whole seconds if they are), naming only `dns_names`
    and `uris` in a critical SAN with an empty subject (RFC 5280 4.2.1.6; an X.509-SVID
    when the URI is a SPIFFE ID). Key usages: digital signature, and key encipherment for an
    RSA key (as Certificates' defaults); extended: server auth, client auth."""
    usages = DEFAULT_RSA_USAGES if isinstance(public_key, rsa.RSAPublicKey) else DEFAULT_USAGES
    names: list[x509.GeneralName] = [
        *(x509.DNSName(name) for name in dns_names),
        *(x509.UniformResourceIdentifier(uri) for uri in uris),
    ]
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(issuer.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(usages, public_key), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(names), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(issuer.key, signature_hash(issuer.key))
    )


def leaf_mismatch(leaf: x509.Certificate, spec: CertificateSpec) -> str | None:
    """What of `leaf` differs from what build_leaf makes of `spec`, or None: its subject, its
    SAN (DNS, IP, URI, email), its keyUsage bits and its extended key usages.

    Read from the certificate itself, whatever a Secret's annotations say (a leaf copied in
    by hand, or restored from a backup of another Certificate). Names and attributes compare
    as sets, so a leaf that differs only in their order is not re-issued. A few parsed
    extensions per reconcile: no signature is checked, nothing is built.
    """
    issued_subject = sorted((a.oid.dotted_string, str(a.value)) for a in leaf.subject)
    wanted_subject = sorted((a.oid.dotted_string, str(a.value)) for a in _subject(spec))
    if issued_subject != wanted_subject:
        return (
            f"its subject is {leaf.subject.rfc4514_string() or 'empty'}, the spec asks for "
            f"{_subject(spec).rfc4514_string() or 'an empty one'}"
        )
    issued_names = _general_names(_extension(leaf, x509.SubjectAlternativeName) or [])
    wanted_names = _general_names(_alternative_names(spec))
    if issued_names != wanted_names:
        return (
            f"its names are {_describe(issued_names)}, the spec asks for {_describe(wanted_names)}"
        )
    if _extension(leaf, x509.KeyUsage) != _key_usage(spec.usages, leaf.public_key()):
        return "its key usages differ from spec.usages"
    issued_extended = set(_extension(leaf, x509.ExtendedKeyUsage) or [])
    if issued_extended != {oid for usage, oid in _EXTENDED_USAGES.items() if usage in spec.usages}:
        return "its extended key usages differ from spec.usages"
    return None


def _extension(leaf: x509.Certificate, kind: type[_Extension]) -> _Extension | None:
    """The leaf's extension of type `kind`, or None when it has none."""
    try:
        return leaf.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _general_names(names: Iterable[x509.GeneralName]) -> frozenset[tuple[str, str]]:
    return frozenset((type(name).__name__, str(name.value)) for name in names)


def _describe(names: frozenset[tuple[str, str]]) -> str:
    return ", ".join(f"{kind.removesuffix('Name')} {value}" for kind, value in sorted(names)) or (
        "none"
    )


def _subject(spec: CertificateSpec) -> x509.Name:
    s = spec.subject
    # Go's pkix.Name order (as cert-manager emits it), most significant attribute first.
    values = (
        (NameOID.COUNTRY_NAME, s.countries),
        (NameOID.ORGANIZATION_NAME, s.organizations),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, s.organizational_units),
        (NameOID.LOCALITY_NAME, s.localities),
        (NameOID.STATE_OR_PROVINCE_NAME, s.provinces),
        (NameOID.STREET_ADDRESS, s.street_addresses),
        (NameOID.POSTAL_CODE, s.postal_codes),
        (NameOID.SERIAL_NUMBER, (s.serial_number,) if s.serial_number else ()),
        (NameOID.COMMON_NAME, (spec.common_name,) if spec.common_name else ()),
    )
    return x509.Name([x509.NameAttribute(oid, v) for oid, vs in values for v in vs])


def _alternative_names(spec: CertificateSpec) -> list[x509.GeneralName]:
    # A DNS-name commonName is in the SAN too: Go, browsers and rustls read only the SAN.
    return [
        *(x509.DNSName(name) for name in leaf_dns_names(spec)),
        *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in spec.ip_addresses),
        *(x509.UniformResourceIdentifier(uri) for uri in spec.uris),
        *(x509.RFC822Name(email) for email in spec.email_addresses),
    ]


def _key_usage(usages: tuple[str, ...], public_key: CertificatePublicKeyTypes) -> x509.KeyUsage:
    # Encipherment exists only for RSA and key agreement only for EC keys; Ed25519 only signs.
    rsa_key = isinstance(public_key, rsa.RSAPublicKey)
    agreement = isinstance(public_key, ec.EllipticCurvePublicKey) and "key agreement" in usages
    bits = {
        "digital_signature": "digital signature" in usages,
        "content_commitment": "content commitment" in usages,
        "key_encipherment": rsa_key and "key encipherment" in usages,
        "data_encipherment": rsa_key and "data encipherment" in usages,
        "key_agreement": agreement,
        # Powers of the authority, never a leaf's (model.CA_USAGES).
        "key_cert_sign": False,
        "crl_sign": False,
        # RFC 5280 defines these two only together with keyAgreement.
        "encipher_only": agreement and "encipher only" in usages,
        "decipher_only": agreement and "decipher only" in usages,
    }
    # A KeyUsage with no bit set is invalid; every key we issue for can at least sign.
    bits["digital_signature"] = bits["digital_signature"] or not any(bits.values())
    return x509.KeyUsage(**bits)
