"""Decide what a Certificate needs: a chain of small checks over gathered state.

Gather (the Secret, the authority, the clock) happens elsewhere; these functions only
judge. The first check that fires decides, so the order below is the order of priority.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from certsmith.api import model, names, times
from certsmith.certificates import renewal, tls_secret
from certsmith.certificates.tls_secret import SecretContents
from certsmith.pki import ca, inspect, issue, keys


class Action(enum.Enum):
    NOTHING = "Nothing"
    ISSUE = "Issue"
    REPAIR = "Repair"
    CONFLICT = "Conflict"


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    message: str


@dataclass(frozen=True)
class AuthorityView:
    """The parts of a CertificateAuthority that judging a leaf needs."""

    name: str
    trusted_roots: tuple[x509.Certificate, ...]
    signing_root: x509.Certificate | None = None
    """The root new leaves are issued under; leaves under another root move to it."""
    bundle_pem: bytes | None = None
    """The ca.crt every Secret of this authority must carry."""


@dataclass(frozen=True)
class Input:
    certificate_name: str
    namespace: str
    spec: model.CertificateSpec
    secret: SecretContents | None
    authority: AuthorityView
    now: datetime
    renewal_request: str | None = None
    """The Certificate's renew-requested-at annotation (set by `kubectl certsmith renew`)."""
    claimant_exists: bool = True
    """Whether the other Certificate the Secret was issued for (if any) still exists."""


Check = Callable[[Input], Decision | None]
ROOT_ROTATION = "RootRotation"
"""The reason of re-issues that move leaves to a new root (paced at the authority's rate)."""
CERTIFICATE_MISMATCH = "CertificateMismatch"
"""The reason of re-issues of a certificate or key that does not match the spec, whatever
the Secret's annotations recorded."""
CERTIFICATE_REPLACED = "CertificateReplaced"
"""The reason of re-issues of a leaf other than the one certsmith wrote into the Secret."""


def _issue(reason: str, message: str) -> Decision:
    return Decision(Action.ISSUE, reason, message)


def secret_missing(i: Input) -> Decision | None:
    if i.secret is None:
        return _issue("SecretMissing", f"Secret {i.spec.secret_name} does not exist")
    return None


def secret_owned_by_another(i: Input) -> Decision | None:
    """Only a Secret certsmith created for this Certificate is written (see foreign_claim)."""
    assert i.secret is not None
    claim = tls_secret.foreign_claim(i.secret, i.certificate_name)
    if claim is None:
        return None
    who, remedy = claim.who, claim.remedy
    if claim.other_certificate is not None:
        if i.claimant_exists:
            who = f"belongs to Certificate {claim.other_certificate}"
        else:
            who = f"{who}, which no longer exists"
            remedy = (
                "delete the Secret to have certsmith issue a new one for this Certificate, "
                "or choose another spec.secretName"
            )
    return Decision(
        Action.CONFLICT,
        "SecretConflict",
        f"Secret {i.spec.secret_name} {who}; it is left untouched: {remedy}",
    )


def secret_data_invalid(i: Input) -> Decision | None:
    assert i.secret is not None
    if i.secret.problems:
        return _issue("SecretInvalid", "; ".join(i.secret.problems))
    return None


def key_does_not_match_certificate(i: Input) -> Decision | None:
    assert i.secret is not None and i.secret.key is not None and i.secret.leaf is not None
    if not keys.key_matches_certificate(i.secret.key, i.secret.leaf):
        return _issue("KeyMismatch", "tls.key does not match the certificate in tls.crt")
    return None


def leaf_expired(i: Input) -> Decision | None:
    assert i.secret is not None and i.secret.leaf is not None
    not_after = i.secret.leaf.not_valid_after_utc
    if i.now > not_after:
        return _issue(
            "Expired",
            f"the certificate in Secret {i.spec.secret_name} expired at "
            f"{times.format_time(not_after)}",
        )
    return None


def leaf_not_yet_valid(i: Input) -> Decision | None:
    assert i.secret is not None and i.secret.leaf is not None
    not_before = i.secret.leaf.not_valid_before_utc
    if i.now < not_before:
        return _issue(
            "NotYetValid",
            f"the certificate in Secret {i.spec.secret_name} is not valid before "
            f"{times.format_time(not_before)}",
        )
    return None


def issuer_not_trusted(i: Input) -> Decision | None:
    assert i.secret is not None and i.secret.leaf is not None
    if not inspect.chain_is_valid(
        leaf=i.secret.leaf,
        intermediates=i.secret.intermediates,
        roots=i.authority.trusted_roots,
        now=i.now,
    ):
        return _issue(
            "IssuerNotTrusted",
            f"the certificate does not chain to a root trusted by {i.authority.name} "
            "or is outside its validity period",
        )
    return None


def spec_changed(i: Input) -> Decision | None:
    """The spec's fingerprint recorded at issuance differs (it covers what the certificate
    cannot show, such as the requested duration), or the certificate and key themselves do
    not match the spec: checked whatever the annotations say, since a Secret may hold a
    leaf copied in by hand or restored from a backup while keeping this one's annotations."""
    assert i.secret is not None and i.secret.key is not None and i.secret.leaf is not None
    recorded = i.secret.annotations.get(names.SPEC_FINGERPRINT_ANNOTATION)
    if recorded is not None and recorded != model.issuance_fingerprint(i.spec):
        return _issue("SpecChanged", "the spec changed since the certificate was issued")
    mismatch = issue.leaf_mismatch(i.secret.leaf, i.spec)
    if mismatch is not None:
        return _issue(
            CERTIFICATE_MISMATCH,
            f"the certificate in Secret {i.spec.secret_name} does not match the spec: {mismatch}",
        )
    if not keys.key_matches_spec(i.secret.key, i.spec.private_key):
        return _issue(
            CERTIFICATE_MISMATCH, "the private key's algorithm or size differs from the spec"
        )
    return None


def leaf_not_the_one_issued(i: Input) -> Decision | None:
    """tls.crt holds another leaf than the one certsmith wrote with these annotations: a
    twin Certificate's (same names, so spec_changed cannot tell) or an older one restored
    from a backup. Its key may be shared with another Secret: issue a new one."""
    assert i.secret is not None and i.secret.leaf is not None
    recorded = i.secret.annotations.get(names.SERIAL_ANNOTATION)
    serial = inspect.serial_hex(i.secret.leaf)
    if recorded is not None and recorded != serial:
        return _issue(
            CERTIFICATE_REPLACED,
            f"the certificate in Secret {i.spec.secret_name} (serial {serial}) is not the one "
            f"certsmith issued for this Certificate (serial {recorded})",
        )
    return None


def renewal_requested(i: Input) -> Decision | None:
    assert i.secret is not None
    honoured = i.secret.annotations.get(names.RENEWAL_REQUEST_ANNOTATION)
    if i.renewal_request and i.renewal_request != honoured:
        return _issue("RenewalRequested", f"renewal requested at {i.renewal_request}")
    return None


def renewal_due(i: Input) -> Decision | None:
    assert i.secret is not None and i.secret.leaf is not None
    due = leaf_renewal_time(i.spec, i.secret.leaf, jitter_key=f"{i.namespace}/{i.certificate_name}")
    if i.now >= due:
        return _issue("RenewalDue", f"renewal time {due.isoformat()} has been reached")
    return None


def issued_under_retiring_root(i: Input) -> Decision | None:
    """During a root rotation, leaves move to the new root once it is in every bundle."""
    assert i.secret is not None
    root = i.authority.signing_root
    if root is None:
        return None
    if i.secret.intermediates and inspect.issued_by(i.secret.intermediates[0], root):
        return None
    return _issue(ROOT_ROTATION, f"moving to the current root of {i.authority.name}")


def trust_bundle_outdated(i: Input) -> Decision | None:
    assert i.secret is not None
    if i.authority.bundle_pem is not None and i.secret.ca_pem != i.authority.bundle_pem:
        return Decision(Action.REPAIR, "TrustBundleUpdated", "ca.crt updated to the trusted roots")
    return None


def metadata_drifted(i: Input) -> Decision | None:
    """Checked last, and only for a Secret whose content is fine: repair, don't re-issue.

    A label or annotation of certsmith or the template removed or changed, or a template
    key that left spec.secretTemplate still on the Secret.
    """
    assert i.secret is not None
    spec_only = tls_secret.metadata_patch(
        i.secret,
        desired_labels=tls_secret.desired_labels(i.certificate_name, i.spec.secret_labels),
        desired_annotations=tls_secret.template_annotations(
            i.certificate_name, i.spec.secret_labels, i.spec.secret_annotations
        ),
    )
    missing = [k for k in tls_secret.OWNED_ANNOTATIONS if k not in i.secret.annotations]
    if spec_only is not None or missing or _leaf_annotations_stale(i.secret):
        return Decision(Action.REPAIR, "Repaired", "restored the Secret's labels and annotations")
    return None


def _leaf_annotations_stale(secret: SecretContents) -> bool:
    """The notAfter annotation (a hand edit) no longer describes the leaf in tls.crt; a
    serial that does not is leaf_not_the_one_issued's."""
    assert secret.leaf is not None
    recorded = secret.annotations.get(names.NOT_AFTER_ANNOTATION)
    return recorded != times.format_time(secret.leaf.not_valid_after_utc)


# What makes the certificate in an existing Secret unusable (so never Ready), in order.
VALIDITY_CHECKS: Sequence[Check] = (
    secret_data_invalid,
    key_does_not_match_certificate,
    leaf_expired,
    leaf_not_yet_valid,
    issuer_not_trusted,
)

ISSUANCE_CHAIN: Sequence[Check] = (
    secret_missing,
    secret_owned_by_another,
    *VALIDITY_CHECKS,
    spec_changed,
    leaf_not_the_one_issued,
    renewal_requested,
    renewal_due,
    issued_under_retiring_root,
    trust_bundle_outdated,
    metadata_drifted,
)


def decide(i: Input) -> Decision:
    for check in ISSUANCE_CHAIN:
        decision = check(i)
        if decision is not None:
            return decision
    return Decision(Action.NOTHING, "UpToDate", "the certificate is valid and matches its spec")


def leaf_problem(i: Input) -> Decision | None:
    """Why the Secret holds no certificate that may be called Ready (missing, unreadable,
    mismatched, expired, not yet valid, untrusted), or None when it holds a usable one.

    Used when an issuance failed: Ready stays True only while the old certificate is usable.
    """
    for check in (secret_missing, *VALIDITY_CHECKS):
        decision = check(i)
        if decision is not None:
            return decision
    return None


def leaf_renewal_time(
    spec: model.CertificateSpec, leaf: x509.Certificate, *, jitter_key: str
) -> datetime:
    """When `leaf` falls due, counted from the instant it was signed (never its back-dated
    notBefore) and never less than renewal.MIN_IN_USE after it."""
    return renewal.renewal_time(
        issued_at=ca.signed_at(leaf),
        not_after=leaf.not_valid_after_utc,
        renew_before=spec.renew_before,
        renew_before_percentage=spec.renew_before_percentage,
        jitter_key=jitter_key,
    )
