"""Decide what a Certificate needs: a chain of small checks over gathered state.

Gather (the Secret, the authority, the clock) happens elsewhere; these functions only
judge. The first check that fires decides, so the order below is the order of priority:
whether the Secret exists and is this Certificate's (`Input`), whether its tls.crt and
tls.key can be read (`readable`), then the checks of a certificate and key in hand (`Held`).
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
    """What the reconciler does with the Certificate's Secret."""

    NOTHING = "Nothing"
    ISSUE = "Issue"
    """Sign a new certificate (and usually a new key) into the Secret."""
    REPAIR = "Repair"
    """Patch labels, annotations or ca.crt; the certificate and key stay."""
    CONFLICT = "Conflict"
    """The Secret is someone else's: leave it untouched, report SecretConflict."""


@dataclass(frozen=True)
class Decision:
    """What to do with the Secret, and why, in the words the user reads."""

    action: Action
    reason: str
    """The condition reason and Event reason shown to the user, e.g. "RenewalDue"."""
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
    name_constraints: x509.NameConstraints | None = None
    """The name constraints its intermediate carries now (spec.nameConstraints), None when
    unconstrained; a leaf under an intermediate with other constraints is re-issued."""


@dataclass(frozen=True)
class Input:
    """Everything a decision is made on, gathered before: no check reads anything else."""

    certificate_name: str
    namespace: str
    spec: model.CertificateSpec
    secret: SecretContents | None
    """The Secret spec.secretName names, parsed; None when it does not exist."""
    authority: AuthorityView
    now: datetime
    renewal_request: str | None = None
    """The Certificate's renew-requested-at annotation (set by `kubectl certsmith renew`)."""
    claimant_exists: bool = True
    """Whether the other Certificate the Secret was issued for (if any) still exists."""
    judged_serial: str | None = None
    """The serial (inspect.serial_hex) of the leaf certsmith last judged or issued for this
    Certificate, as its sealed status records it (status.sealed_serial); None when the seal
    does not hold or status records none."""


@dataclass(frozen=True)
class Held:
    """An Input whose Secret exists and whose tls.crt and tls.key parsed: what every check
    after SecretInvalid judges."""

    input: Input
    secret: SecretContents
    leaf: x509.Certificate
    """The first certificate of tls.crt."""
    key: keys.PrivateKey

    @property
    def valid_until(self) -> datetime:
        """When the chain in tls.crt stops being valid (UTC): its earliest notAfter."""
        return tls_secret.chain_valid_until(self.leaf, self.secret.intermediates)


Check = Callable[[Held], Decision | None]
ROOT_ROTATION = "RootRotation"
"""The reason of re-issues that move leaves to a new root (paced at the authority's rate)."""
CERTIFICATE_MISMATCH = "CertificateMismatch"
"""The reason of re-issues of a certificate or key that does not match the spec, whatever
the Secret's annotations recorded."""
CERTIFICATE_REPLACED = "CertificateReplaced"
NAME_CONSTRAINTS_CHANGED = "NameConstraintsChanged"
"""The reason of re-issues of a leaf other than the one certsmith wrote into the Secret."""


def _issue(reason: str, message: str) -> Decision:
    return Decision(Action.ISSUE, reason, message)


def secret_owned_by_another(i: Input, secret: SecretContents) -> Decision | None:
    """Only a Secret certsmith created for this Certificate is written (see foreign_claim)."""
    claim = tls_secret.foreign_claim(secret, i.certificate_name)
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


def readable(i: Input) -> Held | Decision:
    """The Secret's certificate and key, or the re-issue a Secret without them needs:
    SecretMissing (no Secret) or SecretInvalid (tls.crt or tls.key missing or unreadable;
    the message lists each problem). Whose the Secret is is not judged here."""
    secret = i.secret
    if secret is None:
        return _issue("SecretMissing", f"Secret {i.spec.secret_name} does not exist")
    if secret.problems or secret.leaf is None or secret.key is None:
        return _issue(
            "SecretInvalid", "; ".join(secret.problems) or "tls.crt or tls.key could not be read"
        )
    return Held(input=i, secret=secret, leaf=secret.leaf, key=secret.key)


def key_does_not_match_certificate(h: Held) -> Decision | None:
    """KeyMismatch: tls.key is not the key of the certificate in tls.crt."""
    if not keys.key_matches_certificate(h.key, h.leaf):
        return _issue("KeyMismatch", "tls.key does not match the certificate in tls.crt")
    return None


def leaf_expired(h: Held) -> Decision | None:
    """Expired: `now` is past the leaf's notAfter (which is itself still valid, RFC 5280)."""
    not_after = h.leaf.not_valid_after_utc
    if h.input.now > not_after:
        return _issue(
            "Expired",
            f"the certificate in Secret {h.input.spec.secret_name} expired at "
            f"{times.format_time(not_after)}",
        )
    return None


def leaf_not_yet_valid(h: Held) -> Decision | None:
    """NotYetValid: `now` is before the leaf's notBefore (a clock set back, a restored Secret)."""
    not_before = h.leaf.not_valid_before_utc
    if h.input.now < not_before:
        return _issue(
            "NotYetValid",
            f"the certificate in Secret {h.input.spec.secret_name} is not valid before "
            f"{times.format_time(not_before)}",
        )
    return None


def issuer_not_trusted(h: Held) -> Decision | None:
    """IssuerNotTrusted: the chain in tls.crt does not verify up to a root the authority
    trusts now, or one of its certificates is outside its validity period, or a name of the
    leaf is outside the name constraints on its chain; the message gives the verifier's why."""
    authority = h.input.authority
    error = inspect.chain_error(
        leaf=h.leaf,
        intermediates=h.secret.intermediates,
        roots=authority.trusted_roots,
        now=h.input.now,
    )
    if error is not None:
        return _issue(
            "IssuerNotTrusted",
            f"the certificate does not verify against the roots trusted by {authority.name}: "
            f"{error}",
        )
    return None


def spec_changed(h: Held) -> Decision | None:
    """The spec's fingerprint recorded at issuance differs (it covers what the certificate
    cannot show, such as the requested duration), or the certificate and key themselves do
    not match the spec: checked whatever the annotations say, since a Secret may hold a
    leaf copied in by hand or restored from a backup while keeping this one's annotations."""
    spec = h.input.spec
    recorded = h.secret.annotations.get(names.SPEC_FINGERPRINT_ANNOTATION)
    if recorded is not None and recorded != model.issuance_fingerprint(spec):
        return _issue("SpecChanged", "the spec changed since the certificate was issued")
    mismatch = issue.leaf_mismatch(h.leaf, spec)
    if mismatch is not None:
        return _issue(
            CERTIFICATE_MISMATCH,
            f"the certificate in Secret {spec.secret_name} does not match the spec: {mismatch}",
        )
    if not keys.key_matches_spec(h.key, spec.private_key):
        return _issue(
            CERTIFICATE_MISMATCH,
            "the private key's algorithm or size differs from the spec, or it is an RSA key "
            f"whose public exponent is not {keys.RSA_PUBLIC_EXPONENT}",
        )
    return None


def leaf_not_the_one_issued(h: Held) -> Decision | None:
    """tls.crt holds another leaf than the one certsmith wrote with these annotations: a
    twin Certificate's (same names, so spec_changed cannot tell) or an older one restored
    from a backup. Its key may be shared with another Secret: issue a new one. Unless the
    leaf is the very one the Certificate's sealed status records: then the serial
    annotation was edited, and metadata_drifted puts it back without re-issuing."""
    recorded = h.secret.annotations.get(names.SERIAL_ANNOTATION)
    serial = inspect.serial_hex(h.leaf)
    if recorded is not None and recorded != serial and serial != h.input.judged_serial:
        return _issue(
            CERTIFICATE_REPLACED,
            f"the certificate in Secret {h.input.spec.secret_name} (serial {serial}) is not "
            f"the one certsmith issued for this Certificate (serial {recorded})",
        )
    return None


def renewal_requested(h: Held) -> Decision | None:
    """RenewalRequested: the Certificate's renew-requested-at annotation differs from the
    request the Secret records as honoured."""
    requested = h.input.renewal_request
    honoured = h.secret.annotations.get(names.RENEWAL_REQUEST_ANNOTATION)
    if requested and requested != honoured:
        return _issue("RenewalRequested", f"renewal requested at {requested}")
    return None


def renewal_due(h: Held) -> Decision | None:
    """RenewalDue: `now` reached leaf_renewal_time."""
    i = h.input
    due = leaf_renewal_time(i.spec, h.leaf, jitter_key=f"{i.namespace}/{i.certificate_name}")
    if i.now >= due:
        return _issue("RenewalDue", f"renewal time {due.isoformat()} has been reached")
    return None


def issued_under_retiring_root(h: Held) -> Decision | None:
    """During a root rotation, leaves move to the new root once it is in every bundle."""
    authority = h.input.authority
    root = authority.signing_root
    if root is None:
        return None
    if h.secret.intermediates and inspect.issued_by(h.secret.intermediates[0], root):
        return None
    return _issue(ROOT_ROTATION, f"moving to the current root of {authority.name}")


def issuer_constraints_changed(h: Held) -> Decision | None:
    """NameConstraintsChanged: the intermediate in tls.crt carries other name constraints
    than the authority's (spec.nameConstraints changed): the leaf moves under the current
    intermediate, so its chain shows the zone the authority has now. (A leaf whose names
    are outside the new constraints never gets here: the reconciler refuses it first.)"""
    if not h.secret.intermediates:
        return None
    try:
        held = (
            h.secret.intermediates[0].extensions.get_extension_for_class(x509.NameConstraints).value
        )
    except x509.ExtensionNotFound:
        held = None
    if held == h.input.authority.name_constraints:
        return None
    return _issue(
        NAME_CONSTRAINTS_CHANGED,
        f"the name constraints of {h.input.authority.name} changed since the certificate "
        "was issued",
    )


def trust_bundle_outdated(h: Held) -> Decision | None:
    """TrustBundleUpdated (a repair): ca.crt differs from the authority's trusted roots."""
    bundle = h.input.authority.bundle_pem
    if bundle is not None and h.secret.ca_pem != bundle:
        return Decision(Action.REPAIR, "TrustBundleUpdated", "ca.crt updated to the trusted roots")
    return None


def metadata_drifted(h: Held) -> Decision | None:
    """Checked last, and only for a Secret whose content is fine: repair, don't re-issue.

    A label or annotation of certsmith or the template removed or changed, or a template
    key that left spec.secretTemplate still on the Secret.
    """
    i, secret = h.input, h.secret
    spec_only = tls_secret.metadata_patch(
        secret,
        desired_labels=tls_secret.desired_labels(i.certificate_name, i.spec.secret_labels),
        desired_annotations=tls_secret.template_annotations(
            i.certificate_name, i.spec.secret_labels, i.spec.secret_annotations
        ),
    )
    missing = [k for k in tls_secret.OWNED_ANNOTATIONS if k not in secret.annotations]
    if spec_only is not None or missing or _leaf_annotations_stale(h):
        return Decision(Action.REPAIR, "Repaired", "restored the Secret's labels and annotations")
    return None


def _leaf_annotations_stale(h: Held) -> bool:
    """The notAfter or serial annotation (a hand edit) no longer describes the leaf in
    tls.crt. A serial that does not reaches here only for the leaf the sealed status
    vouches for (see leaf_not_the_one_issued)."""
    annotations = h.secret.annotations
    serial = annotations.get(names.SERIAL_ANNOTATION)
    return annotations.get(names.NOT_AFTER_ANNOTATION) != times.format_time(
        h.leaf.not_valid_after_utc
    ) or serial not in (None, inspect.serial_hex(h.leaf))


# What makes a readable certificate unusable (so never Ready), in order.
VALIDITY_CHECKS: Sequence[Check] = (
    key_does_not_match_certificate,
    leaf_expired,
    leaf_not_yet_valid,
    issuer_not_trusted,
)

ISSUANCE_CHAIN: Sequence[Check] = (
    *VALIDITY_CHECKS,
    spec_changed,
    leaf_not_the_one_issued,
    renewal_requested,
    renewal_due,
    issued_under_retiring_root,
    issuer_constraints_changed,
    trust_bundle_outdated,
    metadata_drifted,
)


def _first(checks: Sequence[Check], held: Held) -> Decision | None:
    for check in checks:
        decision = check(held)
        if decision is not None:
            return decision
    return None


def decide(i: Input) -> Decision:
    """The first check that fires, in order: SecretMissing, SecretConflict, SecretInvalid,
    then ISSUANCE_CHAIN; NOTHING ("UpToDate") when none does."""
    if i.secret is not None:
        conflict = secret_owned_by_another(i, i.secret)
        if conflict is not None:
            return conflict
    held = readable(i)
    if isinstance(held, Decision):
        return held
    decision = _first(ISSUANCE_CHAIN, held)
    if decision is not None:
        return decision
    return Decision(Action.NOTHING, "UpToDate", "the certificate is valid and matches its spec")


def usable(i: Input) -> Held | Decision:
    """The Secret's certificate and key when they may be called Ready, else why not
    (missing, unreadable, mismatched, expired, not yet valid, untrusted). Whose the Secret
    is, and whether the certificate is due for renewal or matches the spec, is not judged.

    Used when an issuance failed: Ready stays True only while the old certificate is usable.
    """
    held = readable(i)
    if isinstance(held, Decision):
        return held
    problem = _first(VALIDITY_CHECKS, held)
    return held if problem is None else problem


def leaf_problem(i: Input) -> Decision | None:
    """Why the Secret holds no certificate that may be called Ready (see `usable`), or None
    when it holds a usable one."""
    found = usable(i)
    return found if isinstance(found, Decision) else None


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
