"""What issuing into, or repairing, a Certificate's Secret writes, and what it tells the user.

Pure: the reconciler decides (policies), builds here, then writes the Secret and posts the
Event. The Secret's shape itself is tls_secret's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from certsmith.api import model, names, times
from certsmith.certificates import policies, status, tls_secret
from certsmith.certificates.policies import Action, Decision
from certsmith.certificates.signer import Signer
from certsmith.pki import inspect, issue, keys


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the Certificate."""

    type: str
    """"Normal" or "Warning"."""
    reason: str
    message: str


def signing_key(
    spec: model.CertificateSpec, previous: tls_secret.SecretContents | None
) -> keys.PrivateKey:
    """The key of the new certificate: the Secret's own when spec.privateKey.rotationPolicy
    is Never and it still has the spec's algorithm and size, otherwise a new one."""
    if (
        spec.private_key.rotation_policy == "Never"
        and previous is not None
        and previous.key is not None
        and keys.key_matches_spec(previous.key, spec.private_key)
    ):
        return previous.key
    return keys.generate_private_key(spec.private_key)


def issued_material(
    observed: status.Observed,
    spec: model.CertificateSpec,
    previous: tls_secret.SecretContents | None,
    signer: Signer,
    now: datetime,
) -> tls_secret.IssuedMaterial:
    """A new leaf signed by `signer`'s intermediate at `now`, and everything the Secret
    records with it; its revision is one more than the latest (status.revision)."""
    key = signing_key(spec, previous)
    leaf = issue.build_leaf(
        spec=spec,
        public_key=key.public_key(),
        issuer=signer.intermediate,
        now=now,
        crl_url=signer.crl_url,
    )
    return tls_secret.IssuedMaterial(
        leaf=leaf,
        intermediates=(signer.intermediate.certificate,),
        key_pem=keys.encode_private_key(key, spec.private_key.encoding),
        ca_pem=signer.bundle_pem,
        issuer_fingerprint=signer.issuer_fingerprint,
        spec_fingerprint=model.issuance_fingerprint(spec),
        revision=status.revision(observed.status, previous) + 1,
        authority=signer.name,
        renewal_request=observed.renewal_request,
    )


def trigger_time(
    observed: status.Observed,
    spec: model.CertificateSpec,
    previous: tls_secret.SecretContents | None,
    decision: Decision,
    now: datetime,
) -> datetime:
    """What an issuance's latency (metric) is measured from: the renewal time for a due
    renewal, the Certificate's creation for its first issuance, else `now` (detection)."""
    if decision.reason == "RenewalDue" and previous is not None and previous.leaf is not None:
        return policies.leaf_renewal_time(spec, previous.leaf, jitter_key=observed.jitter_key)
    if previous is None and not observed.status.get("revision") and observed.created is not None:
        return observed.created
    return now


def issued_event(
    previous: tls_secret.SecretContents | None,
    material: tls_secret.IssuedMaterial,
    decision: Decision,
) -> Event:
    """Issued (the Secret held no certificate) or Renewed, naming serial and notAfter."""
    renewed = previous is not None and previous.leaf is not None
    leaf = material.leaf
    return Event(
        "Normal",
        "Renewed" if renewed else "Issued",
        f"issued serial {inspect.serial_hex(leaf)} valid until "
        f"{times.format_time(leaf.not_valid_after_utc)} ({decision.message})",
    )


def writes_data(decision: Decision, secret: tls_secret.SecretContents, signer: Signer) -> bool:
    """Whether carrying out `decision` changes the Secret's data (refused if immutable):
    an issuance, or a repair that updates ca.crt."""
    if decision.action is Action.ISSUE:
        return True
    return decision.action is Action.REPAIR and secret.ca_pem != signer.bundle_pem


def repair_patch(
    observed: status.Observed,
    spec: model.CertificateSpec,
    held: policies.Held,
    signer: Signer,
) -> dict[str, Any] | None:
    """A merge patch restoring certsmith's labels and annotations and ca.crt (see
    tls_secret.metadata_patch), or None when nothing drifted. The issuer recorded is the
    intermediate in tls.crt (the signer's when tls.crt holds none)."""
    secret = held.secret
    issuer_fingerprint = (
        inspect.fingerprint_sha256(secret.intermediates[0])
        if secret.intermediates
        else signer.issuer_fingerprint
    )
    return tls_secret.metadata_patch(
        secret,
        desired_labels=tls_secret.desired_labels(observed.name, spec.secret_labels),
        desired_annotations=tls_secret.desired_annotations(
            certificate_name=observed.name,
            template=spec.secret_annotations,
            labels_template=spec.secret_labels,
            leaf=held.leaf,
            issuer_fingerprint=issuer_fingerprint,
            spec_fingerprint=model.issuance_fingerprint(spec),
            revision=status.revision(observed.status, secret),
            authority=signer.name,
            renewal_request=secret.annotations.get(names.RENEWAL_REQUEST_ANNOTATION),
        ),
        ca_pem=signer.bundle_pem,
    )


def repaired_event(secret_name: str, patch: dict[str, Any]) -> Event | None:
    """The Repaired Event listing each label and annotation set or removed, e.g.
    "Secret web-tls: set app.kubernetes.io/managed-by, removed team"; None for a patch
    that updates ca.crt (a trust-bundle update during a root rotation is routine)."""
    if "data" in patch:
        return None
    changed = ", ".join(
        f"{'removed' if value is None else 'set'} {key}"
        for part in ("labels", "annotations")
        for key, value in sorted(patch["metadata"].get(part, {}).items())
    )
    return Event("Normal", "Repaired", f"Secret {secret_name}: {changed}")
