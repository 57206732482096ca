"""The kubernetes.io/tls Secret of a Certificate: its desired shape and what an existing one holds.

Labels let the operator watch only its own Secrets; annotations record what was issued
so that a later reconcile can tell "spec changed" from "nothing to do" without a database.

certsmith owns only part of a Secret: its own labels and annotations, the keys that came
from `spec.secretTemplate` (recorded in two annotations, so a key that leaves the template
can be removed without touching keys someone else added), and the data keys tls.crt,
tls.key and ca.crt. Everything else on the Secret is someone else's and is left as it is.
Which Secrets certsmith may write at all is decided by `foreign_claim`.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509

from certsmith.api import names, times
from certsmith.pki import inspect, keys

# The keys spec.secretTemplate put on the Secret, comma-separated: when one leaves the
# template it is removed; keys never listed here are never removed.
TEMPLATE_RECORDS = (names.TEMPLATE_LABELS_ANNOTATION, names.TEMPLATE_ANNOTATIONS_ANNOTATION)

# What certsmith records on every Secret it issued into (checked by policies.metadata_drifted).
OWNED_ANNOTATIONS = (
    names.CERTIFICATE_NAME_ANNOTATION,
    names.SERIAL_ANNOTATION,
    names.NOT_AFTER_ANNOTATION,
    names.ISSUER_ANNOTATION,
    names.SPEC_FINGERPRINT_ANNOTATION,
    names.REVISION_ANNOTATION,
    names.AUTHORITY_ANNOTATION,
)

TLS_SECRET_TYPE = "kubernetes.io/tls"


@dataclass(frozen=True)
class SecretContents:
    """What an existing Secret holds, parsed; fields are None where data is missing or bad."""

    name: str
    resource_version: str
    secret_type: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    leaf: x509.Certificate | None
    intermediates: tuple[x509.Certificate, ...]
    key: keys.PrivateKey | None
    ca_pem: bytes | None
    problems: tuple[str, ...] = field(default=())
    immutable: bool = False
    """`immutable: true`: the apiserver refuses any change to its data (Kubernetes cannot
    make such a Secret mutable again; it can only be deleted)."""
    owner_references: tuple[Mapping[str, Any], ...] = ()

    @property
    def owner(self) -> str | None:
        """The Certificate this Secret was issued for, by label or annotation."""
        return self.labels.get(names.CERTIFICATE_LABEL) or self.annotations.get(
            names.CERTIFICATE_NAME_ANNOTATION
        )

    @property
    def valid_until(self) -> datetime | None:
        """When the chain in tls.crt stops being valid (UTC), or None without a leaf."""
        if self.leaf is None:
            return None
        return chain_valid_until(self.leaf, self.intermediates)

    @property
    def revision(self) -> int:
        """The revision annotation (1 for the first issuance); 0 when absent or not a number."""
        try:
            return int(self.annotations.get(names.REVISION_ANNOTATION, "0"))
        except ValueError:
            return 0


def chain_valid_until(
    leaf: x509.Certificate, intermediates: Iterable[x509.Certificate]
) -> datetime:
    """When a chain stops being valid (UTC): the earliest notAfter of its certificates."""
    return min(c.not_valid_after_utc for c in (leaf, *intermediates))


def _decode(data: Mapping[str, str], key: str) -> bytes | None:
    value = data.get(key)
    if not value:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        return None


def parse_secret(secret: Mapping[str, Any], *, with_key: bool = True) -> SecretContents:
    """Parse a Secret as read from the API (data base64-encoded). Never raises on bad data.
    `with_key` False leaves tls.key unread (`key` None, no problem about it): for looking at
    the chain and ca.crt of thousands of Secrets, where loading each key is most of the cost."""
    metadata = secret.get("metadata") or {}
    data = secret.get("data") or {}
    problems: list[str] = []
    leaf: x509.Certificate | None = None
    intermediates: tuple[x509.Certificate, ...] = ()
    key: keys.PrivateKey | None = None

    chain_pem = _decode(data, "tls.crt")
    if chain_pem is None:
        problems.append("tls.crt is missing")
    else:
        try:
            chain = inspect.load_pem_certificates(chain_pem)
            leaf, intermediates = chain[0], tuple(chain[1:])
        except ValueError:
            problems.append("tls.crt does not hold a PEM certificate")

    if with_key:
        key, key_problem = _read_key(data)
        problems.extend(() if key_problem is None else (key_problem,))

    return SecretContents(
        name=str(metadata.get("name", "")),
        resource_version=str(metadata.get("resourceVersion", "")),
        secret_type=str(secret.get("type", "")),
        labels=dict(metadata.get("labels") or {}),
        annotations=dict(metadata.get("annotations") or {}),
        leaf=leaf,
        intermediates=intermediates,
        key=key,
        ca_pem=_decode(data, "ca.crt"),
        problems=tuple(problems),
        immutable=bool(secret.get("immutable")),
        owner_references=tuple(metadata.get("ownerReferences") or ()),
    )


def _read_key(data: Mapping[str, Any]) -> tuple[keys.PrivateKey | None, str | None]:
    """tls.key loaded, or None and what is wrong with it."""
    key_pem = _decode(data, "tls.key")
    if key_pem is None:
        return None, "tls.key is missing"
    try:
        return keys.load_private_key(key_pem), None
    except ValueError:
        return None, "tls.key does not hold a supported private key"


def _owner_reference(reference: Mapping[str, Any]) -> str:
    return f"{reference.get('kind', '?')} {reference.get('name', '?')}"


def _is_certificate_reference(reference: Mapping[str, Any], certificate_name: str) -> bool:
    return (
        reference.get("kind") == "Certificate"
        and str(reference.get("apiVersion", "")).startswith("certsmith.dev/")
        and reference.get("name") == certificate_name
    )


@dataclass(frozen=True)
class Claim:
    """Whose a Secret is, when it is not the asking Certificate's to write."""

    who: str
    """e.g. "belongs to Certificate other", "is owned by Deployment web (ownerReferences)"."""
    remedy: str
    """What a person can do about it."""
    other_certificate: str | None = None
    """The other Certificate it was issued for, when that is the claim."""


def foreign_claim(contents: SecretContents, certificate_name: str) -> Claim | None:
    """None when certsmith may write this Secret for Certificate `certificate_name`.

    certsmith writes only a Secret it created for this Certificate: one whose label
    `certsmith.dev/certificate` or annotation `certsmith.dev/certificate-name` names it
    (either is enough, so a removed one is restored), of type kubernetes.io/tls. Explicit
    claims of others win even then: the labels of a CertificateAuthority's own Secret, a
    controller ownerReference to anything but this Certificate, cert-manager's
    certificate-name annotation, another `app.kubernetes.io/managed-by` (model.ownership_mark
    keeps every key read here out of spec.secretTemplate), except annotations this
    Certificate's own template record lists. Any other Secret (hand-made, another
    Certificate's, another tool's) is never written.
    """
    annotations = _claiming_annotations(contents, certificate_name)
    explicit = _explicit_claim(contents, annotations, certificate_name)
    if explicit is not None:
        return explicit
    named = {
        contents.labels.get(names.CERTIFICATE_LABEL),
        annotations.get(names.CERTIFICATE_NAME_ANNOTATION),
    }
    others = sorted(n for n in named if n is not None and n != certificate_name)
    if others:
        return Claim(
            f"was issued by certsmith for Certificate {others[0]}",
            _CHOOSE_ANOTHER,
            other_certificate=others[0],
        )
    if named == {None}:
        return _unnamed_claim(contents, annotations, certificate_name)
    if contents.secret_type != TLS_SECRET_TYPE:
        return Claim(
            f"has type {contents.secret_type or 'Opaque'}, and a Secret's type cannot change",
            f"certsmith writes only {TLS_SECRET_TYPE} Secrets: delete it or {_CHOOSE_ANOTHER}",
        )
    return None


_CHOOSE_ANOTHER = "choose another spec.secretName"


def _claiming_annotations(contents: SecretContents, certificate_name: str) -> dict[str, str]:
    """The Secret's annotations that may claim it: without the marks this Certificate's own
    secretTemplate put there (before model refused such keys), which are no one else's
    claim; they go once they left the template."""
    annotations = dict(contents.annotations)
    if certificate_name in (
        contents.labels.get(names.CERTIFICATE_LABEL),
        annotations.get(names.CERTIFICATE_NAME_ANNOTATION),
    ):
        for key in recorded_template_keys(annotations, names.TEMPLATE_ANNOTATIONS_ANNOTATION):
            if not key.startswith(names.CERTSMITH_PREFIX):
                annotations.pop(key, None)
    return annotations


def _explicit_claim(
    contents: SecretContents, annotations: Mapping[str, str], certificate_name: str
) -> Claim | None:
    """Claims that win whatever certsmith's own marks say: a CA's Secret, another
    controller's, cert-manager's, another tool's."""
    labels = contents.labels
    authority = labels.get(names.CA_AUTHORITY_LABEL)
    role = labels.get(names.CA_ROLE_LABEL)
    if authority is not None or role is not None:
        return Claim(
            f"holds the {role or 'key material'} of CertificateAuthority {authority or '?'}",
            f"certsmith never writes a CA's Secret: {_CHOOSE_ANOTHER}",
        )
    controllers = [
        r
        for r in contents.owner_references
        if r.get("controller") and not _is_certificate_reference(r, certificate_name)
    ]
    if controllers:
        return Claim(
            f"is controlled by {_owner_reference(controllers[0])} (ownerReferences)",
            f"certsmith never writes another controller's Secret: {_CHOOSE_ANOTHER}",
        )
    cert_manager = annotations.get(names.CERT_MANAGER_CERTIFICATE_ANNOTATION)
    if cert_manager is not None:
        return Claim(
            f"was issued by cert-manager for its Certificate {cert_manager} "
            f"(annotation {names.CERT_MANAGER_CERTIFICATE_ANNOTATION})",
            f"{_CHOOSE_ANOTHER}, or delete the cert-manager Certificate and this Secret",
        )
    managed_by = labels.get(names.MANAGED_BY_LABEL)
    if managed_by is not None and managed_by != names.MANAGED_BY_VALUE:
        return Claim(
            f"is managed by {managed_by} (label {names.MANAGED_BY_LABEL}={managed_by})",
            f"certsmith never writes another tool's Secret: {_CHOOSE_ANOTHER}",
        )
    return None


def _unnamed_claim(
    contents: SecretContents, annotations: Mapping[str, str], certificate_name: str
) -> Claim:
    """Whose a Secret naming no Certificate is, and how to hand it over."""
    hand_over = f"label it {names.CERTIFICATE_LABEL}={certificate_name} to hand it over"
    if contents.owner_references:
        return Claim(
            f"is owned by {_owner_reference(contents.owner_references[0])} (ownerReferences)",
            f"{_CHOOSE_ANOTHER}, or {hand_over}",
        )
    foreign_marks = sorted(k for k in annotations if k.startswith(names.CERT_MANAGER_PREFIX))
    if foreign_marks:
        return Claim(
            f"carries cert-manager's annotation {foreign_marks[0]}",
            f"{_CHOOSE_ANOTHER}, or {hand_over}",
        )
    if contents.labels.get(names.MANAGED_BY_LABEL) == names.MANAGED_BY_VALUE:
        return Claim(
            f"is labelled {names.MANAGED_BY_LABEL}={names.MANAGED_BY_VALUE} but names no "
            "Certificate "
            f"(no label {names.CERTIFICATE_LABEL}, no annotation "
            f"{names.CERTIFICATE_NAME_ANNOTATION})",
            f"{hand_over}, delete it to have certsmith issue a new one, or {_CHOOSE_ANOTHER}",
        )
    return Claim(
        "was created by hand (not labelled by certsmith)",
        f"delete it to have certsmith issue one, {_CHOOSE_ANOTHER}, or {hand_over}",
    )


def immutable_message(secret_name: str) -> str:
    """Why an immutable Secret of ours cannot take a re-issued certificate, and the way out."""
    return (
        f"Secret {secret_name} is immutable (immutable: true), so certsmith cannot write a "
        "new certificate into it; delete it (Kubernetes never makes an immutable Secret "
        "mutable again) and certsmith issues a new one at once"
    )


@dataclass(frozen=True)
class IssuedMaterial:
    """What goes into a Secret after issuance."""

    leaf: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    key_pem: bytes
    ca_pem: bytes
    issuer_fingerprint: str
    spec_fingerprint: str
    revision: int
    authority: str
    renewal_request: str | None = None


def desired_labels(certificate_name: str, template: Mapping[str, str]) -> dict[str, str]:
    """The template's labels plus certsmith's (managed-by, certificate), which win."""
    # Ours are applied last: a template must not be able to hide a Secret from the operator.
    return {
        **template,
        names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE,
        names.CERTIFICATE_LABEL: certificate_name,
    }


_OWN_LABELS = frozenset((names.MANAGED_BY_LABEL, names.CERTIFICATE_LABEL))
_OWN_ANNOTATIONS = frozenset(
    (*OWNED_ANNOTATIONS, *TEMPLATE_RECORDS, names.RENEWAL_REQUEST_ANNOTATION)
)


def _record(keys: Iterable[str], own: frozenset[str]) -> str:
    return ",".join(sorted(k for k in keys if k not in own))


def recorded_template_keys(annotations: Mapping[str, str], record: str) -> frozenset[str]:
    """The template keys a Secret's record annotation lists (empty when it has none)."""
    return frozenset(k for k in annotations.get(record, "").split(",") if k)


def template_annotations(
    certificate_name: str,
    labels_template: Mapping[str, str],
    annotations_template: Mapping[str, str],
) -> dict[str, str]:
    """The annotations that depend only on the spec: the template's, the Certificate's name
    and the records of which keys came from the template (a record is left out when empty)."""
    # A template cannot set certsmith's own annotations (records included): ours win.
    chosen = {k: v for k, v in annotations_template.items() if k not in _OWN_ANNOTATIONS}
    records = {
        names.TEMPLATE_LABELS_ANNOTATION: _record(labels_template, _OWN_LABELS),
        names.TEMPLATE_ANNOTATIONS_ANNOTATION: _record(annotations_template, _OWN_ANNOTATIONS),
    }
    return {
        **chosen,
        **{k: v for k, v in records.items() if v},
        names.CERTIFICATE_NAME_ANNOTATION: certificate_name,
    }


def desired_annotations(
    *,
    certificate_name: str,
    template: Mapping[str, str],
    labels_template: Mapping[str, str],
    leaf: x509.Certificate,
    issuer_fingerprint: str,
    spec_fingerprint: str,
    revision: int,
    authority: str,
    renewal_request: str | None = None,
) -> dict[str, str]:
    """Every annotation certsmith owns on a Secret holding `leaf`: the template's and its
    records, the Certificate's name, serial, notAfter, issuer and spec fingerprints,
    revision, authority, and the renewal request honoured (when there was one)."""
    honoured = {names.RENEWAL_REQUEST_ANNOTATION: renewal_request} if renewal_request else {}
    return {
        **template_annotations(certificate_name, labels_template, template),
        **honoured,
        names.SERIAL_ANNOTATION: inspect.serial_hex(leaf),
        names.NOT_AFTER_ANNOTATION: times.format_time(leaf.not_valid_after_utc),
        names.ISSUER_ANNOTATION: issuer_fingerprint,
        names.SPEC_FINGERPRINT_ANNOTATION: spec_fingerprint,
        names.REVISION_ANNOTATION: str(revision),
        names.AUTHORITY_ANNOTATION: authority,
    }


@dataclass(frozen=True)
class OwnedMetadata:
    """The labels and annotations certsmith writes on a Secret it issued into."""

    labels: dict[str, str]
    annotations: dict[str, str]


def _owned_metadata(
    certificate_name: str,
    labels_template: Mapping[str, str],
    annotations_template: Mapping[str, str],
    material: IssuedMaterial,
) -> OwnedMetadata:
    labels = desired_labels(certificate_name, labels_template)
    annotations = desired_annotations(
        certificate_name=certificate_name,
        template=annotations_template,
        labels_template=labels_template,
        leaf=material.leaf,
        issuer_fingerprint=material.issuer_fingerprint,
        spec_fingerprint=material.spec_fingerprint,
        revision=material.revision,
        authority=material.authority,
        renewal_request=material.renewal_request,
    )
    return OwnedMetadata(labels=labels, annotations=annotations)


def _owned_data(material: IssuedMaterial) -> dict[str, str]:
    chain = inspect.certificates_to_pem((material.leaf, *material.intermediates))
    return {
        "tls.crt": base64.b64encode(chain).decode(),
        "tls.key": base64.b64encode(material.key_pem).decode(),
        "ca.crt": base64.b64encode(material.ca_pem).decode(),
    }


def build_secret(
    *,
    name: str,
    namespace: str,
    certificate_name: str,
    labels_template: Mapping[str, str],
    annotations_template: Mapping[str, str],
    material: IssuedMaterial,
) -> dict[str, Any]:
    """The body of a new Secret (POST), for a Certificate whose Secret does not exist."""
    owned = _owned_metadata(certificate_name, labels_template, annotations_template, material)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": TLS_SECRET_TYPE,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": owned.labels,
            "annotations": owned.annotations,
        },
        "data": _owned_data(material),
    }


def _removals(
    current: Mapping[str, str], recorded: frozenset[str], desired: Mapping[str, str]
) -> dict[str, None]:
    """Keys the template put there (per the record) that are no longer desired: null them."""
    return {k: None for k in sorted(recorded) if k in current and k not in desired}


def _metadata_changes(
    contents: SecretContents,
    desired_labels: Mapping[str, str],
    desired_annotations: Mapping[str, str],
    *,
    only_drifted: bool,
) -> dict[str, Any]:
    """The labels and annotations part of a merge patch: set what certsmith owns, remove
    template keys that left the template (and a record that became empty)."""

    def wanted(current: Mapping[str, str], desired: Mapping[str, str]) -> dict[str, Any]:
        return {k: v for k, v in desired.items() if not only_drifted or current.get(k) != v}

    labels: dict[str, Any] = {
        **wanted(contents.labels, desired_labels),
        **_removals(
            contents.labels,
            recorded_template_keys(contents.annotations, names.TEMPLATE_LABELS_ANNOTATION),
            desired_labels,
        ),
    }
    annotations: dict[str, Any] = {
        **wanted(contents.annotations, desired_annotations),
        **_removals(
            contents.annotations,
            recorded_template_keys(contents.annotations, names.TEMPLATE_ANNOTATIONS_ANNOTATION)
            | frozenset(TEMPLATE_RECORDS),
            desired_annotations,
        ),
    }
    metadata: dict[str, Any] = {}
    if labels:
        metadata["labels"] = labels
    if annotations:
        metadata["annotations"] = annotations
    return metadata


def metadata_patch(
    contents: SecretContents,
    *,
    desired_labels: Mapping[str, str],
    desired_annotations: Mapping[str, str],
    ca_pem: bytes | None = None,
) -> dict[str, Any] | None:
    """A merge patch restoring drifted labels, annotations and ca.crt, or None if none drifted.

    Template keys that left the template are removed (only those the Secret's record lists);
    every other key someone added is left alone.
    """
    metadata = _metadata_changes(contents, desired_labels, desired_annotations, only_drifted=True)
    stale_bundle = ca_pem if ca_pem is not None and contents.ca_pem != ca_pem else None
    if not metadata and stale_bundle is None:
        return None
    patch: dict[str, Any] = {"metadata": metadata}
    if stale_bundle is not None:
        patch["data"] = {"ca.crt": base64.b64encode(stale_bundle).decode()}
    return patch


def issue_patch(
    contents: SecretContents,
    *,
    certificate_name: str,
    labels_template: Mapping[str, str],
    annotations_template: Mapping[str, str],
    material: IssuedMaterial,
) -> dict[str, Any]:
    """A merge patch writing newly issued material into an existing Secret of ours.

    Only what certsmith owns changes (its labels and annotations, the template's keys,
    tls.crt/tls.key/ca.crt); labels, annotations and data keys others added stay. The
    Secret's resourceVersion goes along as a precondition: if anyone wrote the Secret since
    it was read and judged, the apiserver answers 409 and the caller judges it again.
    """
    owned = _owned_metadata(certificate_name, labels_template, annotations_template, material)
    metadata = _metadata_changes(contents, owned.labels, owned.annotations, only_drifted=False)
    metadata["resourceVersion"] = contents.resource_version
    return {"metadata": metadata, "data": _owned_data(material)}
