"""A CertificateRequest's spec read into what signing needs, pure.

`spec.request` is a PEM PKCS#10 request (RFC 2986), base64-encoded as cert-manager's
CertificateRequest carries it (the CRD declares it `format: byte`). Only two things of the
CSR reach a certificate: its public key (after its signature verified, so the requester
holds the private key) and its names (the subject's commonName and the subjectAltName's
DNS names, IP addresses, URIs and email addresses). Every other subject attribute and
every other extension asked for (basicConstraints CA:TRUE, keyUsage, name constraints, …)
is ignored: certsmith decides them, as for a Certificate (spec.usages, CA:FALSE).

The names, spec.duration, spec.usages and spec.issuerRef are judged by the very rules of a
Certificate's spec (model.parse_certificate_spec) and the key by those of a Certificate's
private key (pki.keys.public_key_problem): the same names, bounds and usages are accepted.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID, PublicKeyAlgorithmOID

from certsmith.api import model
from certsmith.pki import keys

REQUEST = "spec.request"
PEM_LABEL = b"-----BEGIN CERTIFICATE REQUEST-----"
PEM_END = b"-----END CERTIFICATE REQUEST-----"
ACCEPTED_HASHES = ("sha256", "sha384", "sha512")
"""The hashes a CSR's signature may use (an Ed25519 signature has none of its own)."""
ACCEPTED_HASHES_TEXT = "SHA-256, SHA-384 or SHA-512"
_PLACEHOLDER_SECRET = "certificaterequest"
"""parse_certificate_spec wants a secretName; a CertificateRequest writes no Secret."""
# Where a Certificate spec's field comes from in a CSR, for messages.
_FROM_CSR = {
    "spec.commonName": "the subject's commonName",
    "spec.dnsNames": "subjectAltName DNS name",
    "spec.ipAddresses": "subjectAltName IP address",
    "spec.uris": "subjectAltName URI",
    "spec.emailAddresses": "subjectAltName email address",
    "spec.privateKey": "the key",
}
SUPPORTED_KEYS = "RSA (2048, 3072 or 4096 bits), ECDSA (P-256, P-384, P-521) or Ed25519"


@dataclass(frozen=True)
class ParsedRequest:
    """A CertificateRequest's spec, judged: the key to certify and what to certify it for
    (`certificate`: its names, usages, duration and issuer as a Certificate's spec)."""

    public_key: keys.PublicKey
    certificate: model.CertificateSpec


def parse_request(spec: Mapping[str, Any]) -> ParsedRequest:
    """The request's key and Certificate-equivalent spec; model.InvalidSpec naming the field
    (`spec.request: …` for anything of the CSR, `spec.duration`, `spec.usages[i]`,
    `spec.issuerRef.name`) for the first thing wrong, in this order: base64, PEM, the CSR's
    structure, its signature's hash, its signature, its key, its names, then the other
    fields. The CSR is untrusted bytes: whatever cryptography raises while reading it
    (DuplicateExtension, InvalidVersion, UnsupportedGeneralNameType, ValueError, …) is an
    InvalidSpec naming spec.request, never an exception of its own."""
    try:
        csr = load_csr(spec.get("request"))
        public_key = _public_key(csr)
        names = _names(csr)
    except model.InvalidSpec:
        raise
    except Exception as error:  # untrusted bytes: whatever fails reading them is the CSR's
        raise model.InvalidSpec(
            REQUEST, f"is not a readable PKCS#10 request: {_describe(error)}"
        ) from None
    algorithm, size = _key_shape(public_key)
    certificate_spec: dict[str, Any] = {
        "secretName": _PLACEHOLDER_SECRET,
        **names,
        "privateKey": {"algorithm": algorithm, **({"size": size} if size else {})},
    }
    for key in ("duration", "usages", "issuerRef"):
        if key in spec:
            certificate_spec[key] = spec[key]
    try:
        parsed = model.parse_certificate_spec(certificate_spec)
    except model.InvalidSpec as invalid:
        raise _as_request_field(invalid) from None
    return ParsedRequest(public_key=public_key, certificate=parsed)


def load_csr(value: object) -> x509.CertificateSigningRequest:
    """The CSR of `spec.request` (base64 of exactly one PEM `CERTIFICATE REQUEST` block and
    nothing else: a private key pasted beside it is refused), signed with an accepted hash
    (ACCEPTED_HASHES, checked before the signature) and its signature verified;
    model.InvalidSpec naming spec.request and what is wrong. Exceptions of cryptography
    reading a malformed CSR pass through (parse_request turns them into InvalidSpec)."""
    if not isinstance(value, str) or not value:
        raise model.InvalidSpec(REQUEST, "is required: a PEM certificate request, base64-encoded")
    try:
        pem = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise model.InvalidSpec(
            REQUEST, "is not base64: encode the PEM CSR, e.g. `base64 -w0 device.csr`"
        ) from None
    csr = x509.load_pem_x509_csr(_only_csr_block(pem))
    _check_signature_hash(csr)
    try:
        valid = csr.is_signature_valid
    except UnsupportedAlgorithm as error:
        raise model.InvalidSpec(
            REQUEST,
            f"the CSR's signature cannot be checked ({error}); certsmith signs {SUPPORTED_KEYS}",
        ) from None
    if not valid:
        raise model.InvalidSpec(
            REQUEST,
            "the CSR's signature does not verify: it was not signed by the private key of the "
            "public key it carries (or was altered since)",
        )
    return csr


def _only_csr_block(pem: bytes) -> bytes:
    """`pem` when it is exactly one PEM CERTIFICATE REQUEST block (whitespace around it
    allowed); InvalidSpec otherwise, telling never to send a private key when one is there."""
    labels = _pem_labels(pem)
    keys_sent = [label for label in labels if "PRIVATE KEY" in label]
    if keys_sent:
        raise model.InvalidSpec(
            REQUEST,
            f"holds a PEM {keys_sent[0]}: never send the private key, it must stay on the "
            "device; delete this request and send only the CSR "
            f"({PEM_LABEL.decode()}), e.g. `base64 -w0 device.csr`",
        )
    if PEM_LABEL not in pem:
        what = f"a PEM {labels[0]}" if labels else "no PEM certificate request"
        raise model.InvalidSpec(
            REQUEST, f"holds {what}; it must be a PEM PKCS#10 request ({PEM_LABEL.decode()})"
        )
    start = pem.index(PEM_LABEL)
    end = pem.find(PEM_END, start)
    if end < 0:
        raise model.InvalidSpec(
            REQUEST, f"is not a readable PKCS#10 request: no {PEM_END.decode()} line"
        )
    if len(labels) != 1 or pem[:start].strip() or pem[end + len(PEM_END) :].strip():
        raise model.InvalidSpec(
            REQUEST,
            f"must hold exactly one PEM block ({PEM_LABEL.decode()}) and nothing else; "
            + (
                f"it holds {len(labels)} ({', '.join(labels)})"
                if len(labels) != 1
                else "it holds text around it"
            ),
        )
    return pem


def _pem_labels(pem: bytes) -> list[str]:
    """The labels of the PEM blocks in `pem` ("CERTIFICATE REQUEST", "EC PRIVATE KEY"), in
    order, each cut to 40 characters."""
    found = []
    for match in re.finditer(rb"-----BEGIN ([^-\r\n]{0,80})-----", pem):
        found.append(match.group(1).decode("ascii", "replace")[:40])
    return found


def _check_signature_hash(csr: x509.CertificateSigningRequest) -> None:
    """InvalidSpec naming the hash of the CSR's signature unless it is one of
    ACCEPTED_HASHES (none for Ed25519): a SHA-1 or MD5 signature proves little (RFC 6194,
    RFC 6151), so it is refused before its signature is even checked."""
    try:
        algorithm = csr.signature_hash_algorithm
    except UnsupportedAlgorithm:
        oid = csr.signature_algorithm_oid
        algorithm_name = getattr(oid, "_name", None) or oid.dotted_string
        raise model.InvalidSpec(
            REQUEST,
            f"the CSR is signed with {algorithm_name}, which certsmith does not accept; sign "
            f"it with {ACCEPTED_HASHES_TEXT} (or an Ed25519 key)",
        ) from None
    if algorithm is None or algorithm.name in ACCEPTED_HASHES:
        return
    raise model.InvalidSpec(
        REQUEST,
        f"the CSR's signature algorithm {algorithm.name.upper()} is not accepted: sign it with "
        f"{ACCEPTED_HASHES_TEXT}, e.g. `openssl req -new -sha256 ...`",
    )


def _describe(error: Exception) -> str:
    """What cryptography said of a malformed CSR, for people: its ASN.1 parser's debug text
    (`ParseError { kind: InvalidValue, location: [...] }`) said as what and where."""
    if isinstance(error, x509.DuplicateExtension):
        return f"it has the extension {getattr(error.oid, '_name', error.oid.dotted_string)} twice"
    text = str(error)
    debug = re.search(r"ParseError \{ kind: (\w+).*?location: \[([^\]]*)\]", text)
    if debug:
        where = " / ".join(part.strip(' "') for part in debug.group(2).split(","))
        return f"malformed DER ({_words(debug.group(1))} at {where})"
    if "ParseError" in text:
        return "malformed DER"
    return text or type(error).__name__


def _words(camel: str) -> str:
    """`InvalidValue` → `invalid value`."""
    return re.sub(r"(?<!^)(?=[A-Z])", " ", camel).lower()


def _public_key(csr: x509.CertificateSigningRequest) -> keys.PublicKey:
    # The CSR's attribute exists at runtime (cryptography >= 45) but not in its stubs.
    algorithm = csr.public_key_algorithm_oid  # type: ignore[attr-defined]
    if algorithm == PublicKeyAlgorithmOID.RSASSA_PSS:
        # cryptography reads it as a plain RSA key: signed, it would become rsaEncryption.
        raise model.InvalidSpec(
            REQUEST,
            f"the CSR's key is an RSA-PSS key (id-RSASSA-PSS); certsmith signs "
            f"{SUPPORTED_KEYS}: make an rsaEncryption key (`openssl req -newkey rsa:2048`)",
        )
    try:
        found = csr.public_key()
    except (UnsupportedAlgorithm, ValueError) as error:
        raise model.InvalidSpec(
            REQUEST, f"the CSR's key cannot be read ({error}); certsmith signs {SUPPORTED_KEYS}"
        ) from None
    problem = keys.public_key_problem(found)
    supported = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
    if problem is None and isinstance(found, supported):
        return found
    raise model.InvalidSpec(
        REQUEST,
        f"the CSR's key is {problem or 'of no supported type'}; certsmith signs {SUPPORTED_KEYS}",
    )


def _key_shape(key: keys.PublicKey) -> tuple[str, int | None]:
    """(privateKey.algorithm, privateKey.size) of a Certificate whose key is `key`."""
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ECDSA", key.curve.key_size
    return "Ed25519", None


def _names(csr: x509.CertificateSigningRequest) -> dict[str, Any]:
    """commonName and the SAN's names as a Certificate's spec fields; InvalidSpec for a CSR
    with several commonNames, a malformed extension or a name of a kind certsmith does not
    sign (directory names, otherName, registered IDs)."""
    common_names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(common_names) > 1:
        raise model.InvalidSpec(REQUEST, "the CSR's subject has several commonNames; give one")
    found: dict[str, Any] = {}
    if common_names:
        found["commonName"] = str(common_names[0].value)
    try:
        extension = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return found
    except ValueError as error:  # a duplicate or unparsable extension
        raise model.InvalidSpec(
            REQUEST, f"the CSR's extensions cannot be read: {_describe(error)}"
        ) from None
    lists: dict[str, list[str]] = {
        "dnsNames": [],
        "ipAddresses": [],
        "uris": [],
        "emailAddresses": [],
    }
    for name in extension.value:
        if isinstance(name, x509.DNSName):
            lists["dnsNames"].append(name.value)
        elif isinstance(name, x509.IPAddress) and isinstance(
            name.value, ipaddress.IPv4Address | ipaddress.IPv6Address
        ):
            lists["ipAddresses"].append(str(name.value))
        elif isinstance(name, x509.UniformResourceIdentifier):
            lists["uris"].append(name.value)
        elif isinstance(name, x509.RFC822Name):
            lists["emailAddresses"].append(name.value)
        else:
            raise model.InvalidSpec(
                REQUEST,
                f"the CSR's subjectAltName holds {_general_name(name)}; certsmith signs DNS "
                "names, IP addresses, URIs and email addresses only",
            )
    found.update({key: values for key, values in lists.items() if values})
    return found


def _general_name(name: x509.GeneralName) -> str:
    """A SAN entry certsmith does not sign, for a message: `an IP range 10.0.0.0/8`,
    `a directory name CN=x`, `an otherName 1.2.3.4`, `a registered ID 1.2.3`."""
    if isinstance(name, x509.IPAddress):
        return f"an IP range {name.value} (only single addresses are signed)"
    if isinstance(name, x509.DirectoryName):
        return f"a directory name {name.value.rfc4514_string()}"
    if isinstance(name, x509.OtherName):
        return f"an otherName {name.type_id.dotted_string}"
    if isinstance(name, x509.RegisteredID):
        return f"a registered ID {name.value.dotted_string}"
    return f"a {type(name).__name__}"


def _as_request_field(invalid: model.InvalidSpec) -> model.InvalidSpec:
    """A Certificate spec's error on a field that came from the CSR, said of spec.request
    (`spec.dnsNames[3]` → `spec.request: subjectAltName DNS name 3: …`); spec.duration,
    spec.usages and spec.issuerRef stay as they are."""
    field = invalid.field
    message = invalid.message.replace("spec.privateKey.algorithm is", "the CSR's key is")
    if field == "spec":
        return model.InvalidSpec(
            REQUEST, "the CSR names nothing: give it a commonName or a subjectAltName"
        )
    for prefix, what in _FROM_CSR.items():
        if field == prefix or field.startswith((prefix + "[", prefix + ".")):
            index = field[len(prefix) :].strip("[]")
            plural = (
                what + ("es" if what.endswith("s") else "s") if what.startswith("subject") else what
            )
            where = f"{what} {index}" if index.isdigit() else plural
            return model.InvalidSpec(REQUEST, f"{where}: {_said_of_csr(message)}")
    return model.InvalidSpec(field, message)


def _said_of_csr(message: str) -> str:
    for prefix, what in _FROM_CSR.items():
        message = message.replace(prefix, what)
    return message
