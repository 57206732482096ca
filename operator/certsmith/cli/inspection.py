"""`kubectl certsmith inspect`: a Certificate's Secret decoded, verified, and who mounts it.

Only the public parts of the Secret are read (tls.crt and ca.crt); tls.key is never
decoded, so it cannot end up on a terminal or in a CI log.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, TypedDict

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from certsmith.api import names, times
from certsmith.cli import output, status
from certsmith.cli.api import CliError, NotFound
from certsmith.pki import inspect

if TYPE_CHECKING:
    from certsmith.cli.api import Api

_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
# Named as the Certificate's spec.usages names them, so the output reads like the spec.
_KEY_USAGES = (
    ("digital_signature", "digital signature"),
    ("content_commitment", "content commitment"),
    ("key_encipherment", "key encipherment"),
    ("data_encipherment", "data encipherment"),
    ("key_agreement", "key agreement"),
    ("key_cert_sign", "cert sign"),
    ("crl_sign", "crl sign"),
)
_EXTENDED_USAGES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "server auth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "client auth",
    ExtendedKeyUsageOID.CODE_SIGNING: "code signing",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "email protection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timestamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "ocsp signing",
}


# --- the report's shape (what `-o json` prints) -------------------------------------------


class CertificateSummary(TypedDict):
    """The Certificate as `status` judges it (cli.status.certificate_state)."""

    namespace: str
    name: str
    secretName: str
    ready: str
    """"True", "False" or "Unknown" (cli.status.certificate_state)."""
    reason: str
    message: str


class SecretSummary(TypedDict):
    """The Secret named by spec.secretName."""

    name: str
    revision: str | None
    """The Secret's certsmith.dev/revision annotation: how many times it was issued."""
    problems: list[str]
    """Why tls.crt or ca.crt could not be read."""


class CertificateDescription(TypedDict):
    """One X.509 certificate of the chain or of ca.crt."""

    subject: str
    """RFC 4514, "<empty>" for an empty name; so is `issuer`."""
    issuer: str
    serialNumber: str
    """Lowercase hex, as openssl prints it."""
    notBefore: str
    """RFC 3339 UTC; so is `notAfter`."""
    notAfter: str
    sha256Fingerprint: str
    """Lowercase hex of the SHA-256 of the DER certificate."""


class ChainEntry(CertificateDescription):
    """A certificate of tls.crt, in order."""

    role: str
    """"leaf", "intermediate" or "root" (self-signed), by position in tls.crt."""


class TrustedRoot(CertificateDescription):
    """A root of ca.crt; `anchorsChain` when the chain leads to it."""

    anchorsChain: bool


class LeafDescription(TypedDict):
    """The leaf's SAN, key and usages."""

    dnsNames: list[str]
    ipAddresses: list[str]
    uris: list[str]
    emailAddresses: list[str]
    keyType: str
    """"ECDSA P-256", "RSA", "Ed25519", …"""
    keySize: int | None
    """In bits; None for a key type this plugin does not know."""
    keyUsage: list[str]
    """As spec.usages names them ("digital signature", …)."""
    extendedKeyUsage: list[str]
    """As spec.usages names them ("server auth", …), else the OID."""


class Verification(TypedDict):
    """The verdict on the chain (`verify`)."""

    verifies: bool
    anchor: str | None
    """The SHA-256 fingerprint of the ca.crt root the chain leads to, if any."""
    at: str
    """The RFC 3339 time it was checked at."""
    problem: str | None
    """Why it does not verify; None when it does."""


class Mount(TypedDict):
    """A pod volume holding the Secret (`pods_mounting`)."""

    pod: str | None
    phase: str
    volume: str | None
    via: str
    """"secret" (a secret volume) or "projected" (a projected volume's source)."""
    mounts: list[str]
    """`container:mountPath` for each container mounting the volume."""


class Report(TypedDict):
    """Everything `inspect` shows; `-o json` prints it as is."""

    certificate: CertificateSummary
    secret: SecretSummary
    chain: list[ChainEntry]
    leaf: LeafDescription | None
    """None when tls.crt holds no certificate."""
    trustedRoots: list[TrustedRoot]
    verification: Verification
    mountedBy: list[Mount] | None
    """None when the Pods could not be listed (`mountedByUnknownBecause` says why)."""
    mountedByUnknownBecause: str | None


class KeyDescription(NamedTuple):
    """A public key as `inspect` shows it (`key_description`)."""

    type: str
    """"ECDSA P-256", "RSA", "Ed25519", "Ed448", else the key class's name."""
    size_bits: int | None


# --- decoding ------------------------------------------------------------------------------


def _certificates(data: Mapping[str, str], key: str) -> tuple[list[x509.Certificate], str | None]:
    """The certificates under `key` of a Secret's data, or a problem saying why there are none."""
    raw = data.get(key)
    if not raw:
        return [], f"{key} is missing"
    try:
        return inspect.load_pem_certificates(base64.b64decode(raw, validate=True)), None
    except (ValueError, binascii.Error):
        return [], f"{key} does not hold PEM certificates"


def _name(name: x509.Name) -> str:
    return name.rfc4514_string() or "<empty>"


def _role(index: int, cert: x509.Certificate) -> str:
    if index == 0:
        return "leaf"
    return "root" if cert.subject == cert.issuer else "intermediate"


def describe_certificate(cert: x509.Certificate) -> CertificateDescription:
    """What `inspect` shows of every certificate in the chain and in ca.crt."""
    return {
        "subject": _name(cert.subject),
        "issuer": _name(cert.issuer),
        "serialNumber": inspect.serial_hex(cert),
        "notBefore": output.format_time(cert.not_valid_before_utc),
        "notAfter": output.format_time(cert.not_valid_after_utc),
        "sha256Fingerprint": inspect.fingerprint_sha256(cert),
    }


def key_description(cert: x509.Certificate) -> KeyDescription:
    """The public key's type ("ECDSA P-256", "RSA", "Ed25519") and size in bits."""
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        curve = _CURVES.get(key.curve.name, key.curve.name)
        return KeyDescription(f"ECDSA {curve}", key.curve.key_size)
    if isinstance(key, rsa.RSAPublicKey):
        return KeyDescription("RSA", key.key_size)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return KeyDescription("Ed25519", 256)
    if isinstance(key, ed448.Ed448PublicKey):
        return KeyDescription("Ed448", 456)
    return KeyDescription(type(key).__name__, None)


def key_usages(cert: x509.Certificate) -> list[str]:
    """The keyUsage bits set (RFC 5280 4.2.1.3), named as spec.usages names them."""
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return []
    names = [label for attribute, label in _KEY_USAGES if getattr(usage, attribute)]
    # encipher_only/decipher_only are only defined (and only readable) with key agreement.
    if usage.key_agreement:
        names += ["encipher only"] if usage.encipher_only else []
        names += ["decipher only"] if usage.decipher_only else []
    return names


def extended_key_usages(cert: x509.Certificate) -> list[str]:
    """The extendedKeyUsage purposes (RFC 5280 4.2.1.12), named as spec.usages names them."""
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return []
    return [_EXTENDED_USAGES.get(oid, oid.dotted_string) for oid in usage]


def describe_leaf(cert: x509.Certificate) -> LeafDescription:
    """The leaf's names (its SAN), key and usages."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = x509.SubjectAlternativeName([])
    key = key_description(cert)
    return {
        "dnsNames": san.get_values_for_type(x509.DNSName),
        "ipAddresses": [str(ip) for ip in san.get_values_for_type(x509.IPAddress)],
        "uris": san.get_values_for_type(x509.UniformResourceIdentifier),
        "emailAddresses": san.get_values_for_type(x509.RFC822Name),
        "keyType": key.type,
        "keySize": key.size_bits,
        "keyUsage": key_usages(cert),
        "extendedKeyUsage": extended_key_usages(cert),
    }


# --- verification --------------------------------------------------------------------------


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _validity_problem(role: str, cert: x509.Certificate, now: datetime) -> str | None:
    if now < cert.not_valid_before_utc:
        return f"the {role} is not valid before {output.format_time(cert.not_valid_before_utc)}"
    if now > cert.not_valid_after_utc:
        return f"the {role} expired at {output.format_time(cert.not_valid_after_utc)}"
    return None


def verify(
    chain: Sequence[x509.Certificate], roots: Sequence[x509.Certificate], now: datetime
) -> Verification:
    """Whether the chain verifies against `roots` now, which root anchors it, and if not, why.

    The check is certsmith's own (`pki.inspect.chain_is_valid`: RFC 5280 path validation
    with the WebPKI profile, any SAN and EKU allowed); the problem named is the first
    certificate out of its validity period, else a missing root or an invalid chain.
    """
    top = chain[-1] if chain else None
    anchor = next((r for r in roots if top is not None and (r == top or _issued_by(top, r))), None)
    result: Verification = {
        "verifies": False,
        "anchor": None if anchor is None else inspect.fingerprint_sha256(anchor),
        "at": output.format_time(now),
        "problem": None,
    }
    if not chain:
        result["problem"] = "tls.crt holds no certificate"
    elif not roots:
        result["problem"] = "ca.crt holds no certificate"
    elif inspect.chain_is_valid(leaf=chain[0], intermediates=chain[1:], roots=roots, now=now):
        result["verifies"] = True
    else:
        candidates = [(_role(i, c), c) for i, c in enumerate(chain)]
        if anchor is not None:
            candidates.append(("root in ca.crt", anchor))
        found = (_validity_problem(role, cert, now) for role, cert in candidates)
        result["problem"] = next((p for p in found if p), None) or (
            "the chain does not lead to a root in ca.crt"
            if anchor is None
            else "the chain is not valid for a leaf (signature, CA constraints or key usage)"
        )
    return result


# --- who mounts the Secret -----------------------------------------------------------------


def _mounts(pod_spec: Mapping[str, Any], volume: str) -> list[str]:
    """`container:mountPath` of every container (init and ephemeral too) mounting `volume`."""
    containers = [
        *(pod_spec.get("initContainers") or []),
        *(pod_spec.get("containers") or []),
        *(pod_spec.get("ephemeralContainers") or []),
    ]
    return [
        f"{container.get('name')}:{mount.get('mountPath')}"
        for container in containers
        for mount in container.get("volumeMounts") or []
        if mount.get("name") == volume
    ]


def pods_mounting(pods: Sequence[Mapping[str, Any]], secret_name: str) -> list[Mount]:
    """Each (pod, volume) whose volume is the Secret or projects it, by pod and volume name."""
    found: list[Mount] = []
    for pod in pods:
        spec = pod.get("spec") or {}
        for volume in spec.get("volumes") or []:
            via = None
            if (volume.get("secret") or {}).get("secretName") == secret_name:
                via = "secret"
            sources = (volume.get("projected") or {}).get("sources") or []
            if any((s.get("secret") or {}).get("name") == secret_name for s in sources):
                via = "projected"
            if via is None:
                continue
            found.append(
                {
                    "pod": (pod.get("metadata") or {}).get("name"),
                    "phase": (pod.get("status") or {}).get("phase") or "Unknown",
                    "volume": volume.get("name"),
                    "via": via,
                    "mounts": _mounts(spec, str(volume.get("name"))),
                }
            )
    return sorted(found, key=lambda m: (m["pod"] or "", m["volume"] or ""))


# --- the report ----------------------------------------------------------------------------


def build_report(
    certificate: Mapping[str, Any],
    secret: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]] | str,
    now: datetime,
) -> Report:
    """Everything `inspect` shows, as JSON-ready data; the text view is rendered from it.

    `pods` is the namespace's Pods, or why they could not be listed (mountedBy is then None).
    """
    state = status.certificate_state(certificate, now)
    secret_name = (secret.get("metadata") or {}).get("name", "")
    data = secret.get("data") or {}
    chain, chain_problem = _certificates(data, "tls.crt")
    roots, roots_problem = _certificates(data, "ca.crt")
    verification = verify(chain, roots, now)
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    return {
        "certificate": {
            "namespace": state.namespace,
            "name": state.name,
            "secretName": secret_name,
            "ready": state.ready,
            "reason": state.reason,
            "message": state.message,
        },
        "secret": {
            "name": secret_name,
            "revision": annotations.get(names.REVISION_ANNOTATION),
            "problems": [p for p in (chain_problem, roots_problem) if p],
        },
        "chain": [
            {"role": _role(i, cert), **describe_certificate(cert)} for i, cert in enumerate(chain)
        ],
        "leaf": describe_leaf(chain[0]) if chain else None,
        "trustedRoots": [
            {
                **describe_certificate(root),
                "anchorsChain": inspect.fingerprint_sha256(root) == verification["anchor"],
            }
            for root in roots
        ],
        "verification": verification,
        "mountedBy": None if isinstance(pods, str) else pods_mounting(pods, secret_name),
        "mountedByUnknownBecause": pods if isinstance(pods, str) else None,
    }


def _list(values: Sequence[str]) -> str:
    return ", ".join(values) if values else output.NONE


def _fields(pairs: Sequence[tuple[str, str]], indent: str) -> list[str]:
    """`label: value` lines, the values aligned."""
    width = max(len(label) for label, _ in pairs) + 2
    return [f"{indent}{label + ':':<{width}}{value}" for label, value in pairs]


def _certificate_lines(entry: CertificateDescription, now: datetime, indent: str) -> list[str]:
    expires = output.until(times.parse_time(entry["notAfter"]), now)
    return _fields(
        (
            ("Subject", entry["subject"]),
            ("Issuer", entry["issuer"]),
            ("Serial", entry["serialNumber"]),
            ("Not before", entry["notBefore"]),
            ("Not after", f"{entry['notAfter']} ({expires})"),
            ("SHA-256", entry["sha256Fingerprint"]),
        ),
        indent,
    )


def _header_lines(report: Report) -> list[str]:
    cert, secret = report["certificate"], report["secret"]
    ready = cert["ready"] + (f" ({cert['reason']}: {cert['message']})" if cert["reason"] else "")
    revision = f" (revision {secret['revision']})" if secret["revision"] else ""
    lines = _fields(
        (
            ("Certificate", f"{cert['namespace']}/{cert['name']}"),
            ("Ready", ready),
            ("Secret", f"{secret['name']}{revision}"),
        ),
        "",
    )
    return lines + [f"Problem: {problem}" for problem in secret["problems"]]


def _chain_lines(report: Report, now: datetime) -> list[str]:
    lines = ["", "Chain (tls.crt):"]
    for index, entry in enumerate(report["chain"]):
        lines.append(f"  [{index}] {entry['role']}")
        lines += _certificate_lines(entry, now, "      ")
    return lines


def _leaf_lines(leaf: LeafDescription | None) -> list[str]:
    if leaf is None:
        return []
    size = f" ({leaf['keySize']} bits)" if leaf["keySize"] else ""
    return [
        "",
        "Leaf:",
        *_fields(
            (
                ("DNS names", _list(leaf["dnsNames"])),
                ("IP addresses", _list(leaf["ipAddresses"])),
                ("URIs", _list(leaf["uris"])),
                ("Email addresses", _list(leaf["emailAddresses"])),
                ("Key", f"{leaf['keyType']}{size}"),
                ("Key usage", _list(leaf["keyUsage"])),
                ("Extended key usage", _list(leaf["extendedKeyUsage"])),
            ),
            "  ",
        ),
    ]


def _roots_lines(report: Report, now: datetime) -> list[str]:
    lines = ["", "Trusted roots (ca.crt):"]
    for index, root in enumerate(report["trustedRoots"]):
        anchor = " (anchors the chain)" if root["anchorsChain"] else ""
        lines.append(f"  [{index}] {root['subject']}{anchor}")
        lines += _certificate_lines(root, now, "      ")
    if not report["trustedRoots"]:
        lines.append(f"  {output.NONE}")
    verification = report["verification"]
    verdict = "yes" if verification["verifies"] else f"no: {verification['problem']}"
    return [
        *lines,
        "",
        f"Chain verifies: {verdict} (checked against ca.crt at {verification['at']})",
    ]


def _mounted_lines(report: Report) -> list[str]:
    mounted = report["mountedBy"]
    if mounted is None:
        return ["", f"Mounted by: unknown ({report['mountedByUnknownBecause']})"]
    if not mounted:
        namespace, secret = report["certificate"]["namespace"], report["secret"]["name"]
        return ["", f"Mounted by: no pod in namespace {namespace} mounts Secret {secret}"]
    rows = [
        (str(m["pod"]), m["phase"], str(m["volume"]), m["via"], _list(m["mounts"])) for m in mounted
    ]
    table = output.table(("POD", "PHASE", "VOLUME", "VIA", "MOUNTS"), rows)
    return ["", "Mounted by:", *(f"  {line}" for line in table.splitlines())]


def render(report: Report, now: datetime) -> str:
    """The text `inspect` prints: the Certificate, the chain, the leaf, the trusted roots,
    the verdict and the pods mounting the Secret."""
    return "\n".join(
        [
            *_header_lines(report),
            *_chain_lines(report, now),
            *_leaf_lines(report["leaf"]),
            *_roots_lines(report, now),
            *_mounted_lines(report),
        ]
    )


def run(api: Api, *, namespace: str, name: str, json_output: bool, now: datetime) -> int:
    """`inspect`: print the report of Certificate `name`; exit code 0 when its chain
    verifies, else 1. CliError when the Certificate or its Secret does not exist."""
    certificate = api.get_certificate(namespace, name)
    secret_name = (certificate.get("spec") or {}).get("secretName", "")
    try:
        secret = api.get_secret(namespace, secret_name)
    except NotFound:
        state = status.certificate_state(certificate, now)
        raise CliError(
            f'Secret "{secret_name}" (spec.secretName of Certificate "{name}") not found in '
            f"namespace {namespace}; the Certificate is Ready={state.ready}"
            + (f" ({state.reason}: {state.message})" if state.reason else "")
        ) from None
    try:
        pods: list[dict[str, Any]] | str = api.list_pods(namespace)
    except CliError as error:
        # Someone allowed to read the Secret may not be allowed to list Pods: still show the rest.
        pods = str(error)
    report = build_report(certificate, secret, pods, now)
    if json_output:
        output.print_json(report)
    else:
        print(render(report, now))
    # Like `status`, the exit code is the verdict: 1 when the chain does not verify.
    return 0 if report["verification"]["verifies"] else 1
