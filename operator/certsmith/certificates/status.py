"""The status a Certificate gets: Ready, not Ready, or a failed issuance, and when to look
at it again. Pure: functions of the Certificate as read, what was judged and the clock.

What a user sees comes from here: `kubectl get certificates` shows the Ready condition
(READY, REASON), status.notAfter (EXPIRES) and status.serialNumber (SERIAL); the Issuing
condition, renewalTime, revision, lastFailureTime and failedIssuanceAttempts are in
`kubectl describe`. Times are RFC 3339 UTC strings in whole seconds (api.times).

Every builder returns an `Outcome`: the status fields to write (None when the stored
status already says it) and the next check (None: wait for a change).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509

from certsmith.api import conditions, model, names, times
from certsmith.certificates import policies, seal, tls_secret
from certsmith.pki import crl, inspect

RETRY_BASE = timedelta(seconds=2)
RETRY_CAP = timedelta(minutes=5)
_MAX_DOUBLINGS = 16  # RETRY_BASE · 2¹⁶ is 36 hours, well past RETRY_CAP
AUTHORITY_RETRY = timedelta(seconds=5)
"""How soon a Certificate whose CertificateAuthority cannot sign is looked at again."""
CONFLICT_RECHECK_MIN = timedelta(seconds=2)
CONFLICT_RECHECK_MAX = timedelta(seconds=30)
# Fields of status this module owns; anything else (kopf's bookkeeping) is left alone.
STATUS_FIELDS = (
    "conditions",
    "notBefore",
    "notAfter",
    "renewalTime",
    "serialNumber",
    "revision",
    "lastFailureTime",
    "failedIssuanceAttempts",
    "secretResourceVersion",
    "secretSeal",
)
SEALED_FIELDS = tuple(field for field in STATUS_FIELDS if field != "secretSeal")
"""What status.secretSeal covers (certificates.seal): every field certsmith writes."""
# The status fields that describe the certificate in the Secret.
CERTIFICATE_STATUS_FIELDS = ("notBefore", "notAfter", "renewalTime", "serialNumber")


@dataclass(frozen=True)
class Outcome:
    """How a reconcile ends: what to write into the Certificate's status, when to come back."""

    status: dict[str, Any] | None
    """Status fields to write (a merge patch: None values remove), or None when the stored
    status is already right."""
    next_check: datetime | None
    """When to reconcile again (renewal or retry); None to wait for a change."""


REVOKED = "Revoked"
"""Ready=False reason of a Certificate whose certificate its authority's CRLs list."""
DELETING = "Deleting"
"""Ready=False reason of a Certificate not issued because it is being deleted (Observed.deleting):
a Secret written now would outlive it, as certsmith keeps Secrets of deleted Certificates."""
NAMESPACE_DELETING = "NamespaceDeleting"
"""Ready=False reason of a Certificate not issued because its namespace is being deleted
(a write there refused: kube.ApiError.namespace_closed)."""
REVOCATION_WAIT = timedelta(minutes=2)
"""How long a re-issue waits for a pending revocation of the certificate it replaces before
a Warning event (`REVOCATION_PENDING`) says so; it waits on until the request is handled."""
REVOCATION_RECHECK = timedelta(seconds=5)
"""How often a re-issue held back by a pending revocation looks again (within
REVOCATION_WAIT; every REVOCATION_RECHECK_LATER after)."""
REVOCATION_RECHECK_LATER = timedelta(seconds=30)
REVOCATION_AHEAD = timedelta(minutes=5)
"""A revocation request time further ahead than this is refused (a typo, not a clock
difference): authorities.revocation.FUTURE_REQUEST."""
REVOCATION_PENDING = "RevocationPending"
"""Warning event: a re-issue waits for a revocation its authority cannot record yet."""


@dataclass(frozen=True)
class Observed:
    """What status building reads of a Certificate as the apiserver returned it."""

    namespace: str
    name: str
    uid: str
    """metadata.uid: binds a seal to this Certificate (certificates.seal)."""
    generation: int | None
    """metadata.generation, copied into each condition's observedGeneration."""
    status: Mapping[str, Any]
    renewal_request: str | None
    """The renew-requested-at annotation (`kubectl certsmith renew`), if any."""
    created: datetime | None
    """metadata.creationTimestamp."""
    revocation_request: str | None = None
    """The revoke-requested-at annotation (`kubectl certsmith revoke`), if any."""
    revocation_serial: str | None = None
    """The revoke-serial annotation (the serial the request pins, hex), if any."""
    deleting: bool = False
    """metadata.deletionTimestamp is set: deleted, held only by a finalizer (another tool's,
    or foreground deletion's) or its namespace's deletion."""

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Observed:
        """From a Certificate object (metadata.namespace and metadata.name required:
        KeyError without them, as the apiserver always sets them)."""
        metadata = body["metadata"]
        annotations = metadata.get("annotations") or {}
        return cls(
            namespace=metadata["namespace"],
            name=metadata["name"],
            uid=str(metadata.get("uid") or ""),
            generation=metadata.get("generation"),
            status=dict(body.get("status") or {}),
            renewal_request=annotations.get(names.RENEWAL_REQUEST_ANNOTATION),
            created=times.parse_time(metadata.get("creationTimestamp")),
            revocation_request=annotations.get(names.REVOKE_REQUEST_ANNOTATION),
            revocation_serial=annotations.get(names.REVOKE_SERIAL_ANNOTATION),
            deleting=metadata.get("deletionTimestamp") is not None,
        )

    def revocation_pending(self, now: datetime) -> bool:
        """Whether a revocation of the certificate held now (status.serialNumber, which the
        authority revokes) waits for its authority: it must not be replaced before it is
        revoked, however long that takes (the authority's CRLs may not be updatable for a
        while), or the request, pinning its serial, would no longer name the certificate
        held and be refused. Not when the request cannot be one (its time not RFC 3339 or
        more than REVOCATION_AHEAD ahead, the pinned serial another or none: the authority
        refuses it, saying why), nor once the certificate held expired (status.notAfter:
        nothing left to revoke, RFC 5280 5.1.2.6)."""
        at = times.parse_time(self.revocation_request)
        not_after = times.parse_time(self.status.get("notAfter"))
        if (
            at is None
            or at > now + REVOCATION_AHEAD
            or (not_after is not None and not_after <= now)
        ):
            return False
        try:
            held = crl.parse_serial(str(self.status.get("serialNumber") or ""))
            pinned = crl.parse_serial(self.revocation_serial) if self.revocation_serial else held
        except ValueError:
            return False
        return pinned == held

    def revocation_recheck(self, now: datetime) -> timedelta:
        """How soon a re-issue held back by `revocation_pending` looks again."""
        at = times.parse_time(self.revocation_request)
        waited = now - at if at is not None else REVOCATION_WAIT
        return REVOCATION_RECHECK if waited < REVOCATION_WAIT else REVOCATION_RECHECK_LATER

    @property
    def jitter_key(self) -> str:
        """ "namespace/name": what renewal jitter is derived from (see renewal.renewal_time)."""
        return f"{self.namespace}/{self.name}"

    @property
    def never_issued(self) -> bool:
        """Whether status records no issuance (no revision, no serial number)."""
        return not self.status.get("revision") and not self.status.get("serialNumber")


def revision(status: Mapping[str, Any], secret: tls_secret.SecretContents | None) -> int:
    """The latest revision issued (0: none): status.revision or the Secret's revision
    annotation, whichever is higher, since either may be the one a crash left behind."""
    recorded = int(status.get("revision") or 0)
    return max(recorded, secret.revision if secret is not None else 0)


def _status_changed(current: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    return any(current.get(key) != desired.get(key) for key in STATUS_FIELDS if key in desired)


def _sealed(observed: Observed, desired: dict[str, Any], seal_key: bytes | None) -> dict[str, Any]:
    """`desired` (a merge patch of status) with the seal of the status it leaves behind (or
    any seal removed, without a key): the write is then recognisably certsmith's. When the
    seal of the status as observed does not hold, every field `desired` does not set is
    removed by it (None), so only what certsmith computed is sealed."""
    if seal_key is None:
        if "secretSeal" in observed.status:
            desired["secretSeal"] = None
        return desired
    if not _seal_holds(observed, seal_key):
        # What this write does not set was written by someone else (or before seals): a
        # seal over it would vouch for a notAfter or serialNumber certsmith never judged.
        # Removed instead; a Ready write fills the certificate's fields from the Secret.
        for field in SEALED_FIELDS:
            if field not in desired and observed.status.get(field) is not None:
                desired[field] = None
    after = {field: observed.status.get(field) for field in SEALED_FIELDS}
    after.update((field, value) for field, value in desired.items() if field in SEALED_FIELDS)
    desired["secretSeal"] = seal.seal(seal_key, observed.uid, after)
    return desired


def _seal_holds(observed: Observed, seal_key: bytes | None) -> bool:
    current = observed.status
    fields = {field: current.get(field) for field in SEALED_FIELDS}
    return seal_key is not None and seal.holds(
        seal_key, observed.uid, fields, current.get("secretSeal")
    )


def sealed_serial(observed: Observed, seal_key: bytes | None) -> str | None:
    """status.serialNumber when the seal holds (certsmith wrote it: the serial of the leaf
    it last judged or issued for this Certificate), else None."""
    serial = observed.status.get("serialNumber")
    if not isinstance(serial, str) or not _seal_holds(observed, seal_key):
        return None
    return serial


def edited(observed: Observed, seal_key: bytes | None, *, created: bool) -> bool:
    """Whether the Certificate's status, as a watch event shows it, is not what certsmith
    last wrote there: someone else edited it (or emptied it; not when `created`, where an
    empty status is a new Certificate's). False without a key (nothing can be told yet).
    Only certsmith can seal (certificates.seal), and it seals each status it writes, so
    its own writes never count."""
    if seal_key is None:
        return False
    current = observed.status
    written = current.get("secretSeal") is not None or any(
        current.get(field) is not None for field in SEALED_FIELDS
    )
    if not written:
        return not created
    return not _seal_holds(observed, seal_key)


def _merged(
    observed: Observed, desired: list[conditions.Condition], now: datetime
) -> list[dict[str, Any]]:
    return conditions.merge_conditions(
        observed.status.get("conditions"), desired, generation=observed.generation, now=now
    )


# --- Ready -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadyStatus:
    """`ready`'s result."""

    outcome: Outcome
    """Ready=True, Issuing=False (UpToDate), the certificate's fields, attempts reset to 0;
    next check at renewal_time."""
    renewal_time: datetime
    """When the certificate falls due, rounded up to a whole second (status.renewalTime)."""


def renewal_check_time(
    spec: model.CertificateSpec, leaf: x509.Certificate, *, jitter_key: str
) -> datetime:
    """policies.leaf_renewal_time rounded up to whole seconds, as status shows it, so status,
    metrics and the schedule agree and the check never comes before the renewal is due."""
    exact = policies.leaf_renewal_time(spec, leaf, jitter_key=jitter_key)
    rounded = exact.replace(microsecond=0)
    return rounded if rounded == exact else rounded + timedelta(seconds=1)


def ready(
    observed: Observed,
    spec: model.CertificateSpec,
    held: policies.Held,
    now: datetime,
    seal_key: bytes | None,
    *,
    revoked_by: str | None = None,
) -> ReadyStatus:
    """The status of a Certificate whose Secret holds `held`, a certificate that needs
    nothing more (or was just issued or repaired): Ready, or Ready=False (Revoked) when
    the CRLs of CertificateAuthority `revoked_by` list it (revoked without a re-issue).
    With `seal_key`, status records the Secret's resourceVersion as judged, and is sealed
    (certificates.seal) for `resumed`."""
    leaf = held.leaf
    renewal_at = renewal_check_time(spec, leaf, jitter_key=observed.jitter_key)
    readiness = conditions.Condition(
        conditions.READY, True, "Issued", "the certificate is valid and up to date"
    )
    if revoked_by is not None:
        readiness = conditions.Condition(
            conditions.READY,
            False,
            REVOKED,
            f"serial {inspect.serial_hex(leaf)} is revoked: the CRL of CertificateAuthority "
            f"{revoked_by} lists it; `kubectl certsmith renew {observed.name}` issues a new one",
        )
    desired: dict[str, Any] = {
        "conditions": _merged(
            observed,
            [
                readiness,
                conditions.Condition(
                    conditions.ISSUING, False, "UpToDate", "no issuance in progress"
                ),
            ],
            now,
        ),
        "notBefore": times.format_time(leaf.not_valid_before_utc),
        "notAfter": times.format_time(leaf.not_valid_after_utc),
        "renewalTime": times.format_time(renewal_at),
        "serialNumber": inspect.serial_hex(leaf),
        "revision": revision(observed.status, held.secret),
        "failedIssuanceAttempts": 0,
        # The Secret as judged: unchanged since (same resourceVersion) and the seal holding,
        # it needs no new look when the operator starts again (`resumed`).
        "secretResourceVersion": held.secret.resource_version if seal_key else None,
    }
    _sealed(observed, desired, seal_key)
    changed = _status_changed(observed.status, desired)
    return ReadyStatus(Outcome(desired if changed else None, renewal_at), renewal_at)


@dataclass(frozen=True)
class Resumed:
    """`resumed`'s result: the Certificate stays as its status says."""

    outcome: Outcome
    """No status to write; the next check at status.renewalTime."""
    not_after: datetime
    renewal_time: datetime


def resumed(
    observed: Observed,
    secret_version: str | None,
    now: datetime,
    seal_key: bytes | None,
    *,
    revoked: Collection[int] = frozenset(),
) -> Resumed | None:
    """A Certificate looked at again (a restart lists every one) whose status says it is
    Ready and up to date, judged on the Secret at resourceVersion `secret_version` (the
    Secret's version now, from a list; None: none is listed): it stays so until its
    renewalTime, without reading the Secret. None when it must be judged on its Secret:
    the Secret changed or is gone, status.secretSeal does not hold under `seal_key` for
    this Certificate's uid and its status (any field of it edited, or no key), the spec
    changed since (observedGeneration), an issuance failed, a renewal is requested (the
    annotation), or renewalTime is reached or unreadable. Status is user-writable:
    only the seal and the Secret's live resourceVersion, neither forgeable, vouch for it
    (certificates.seal).

    What can change outside the Certificate and its Secret is looked at elsewhere: its
    authority (loaded, trusted roots, bundle) by the authority's own step, which re-issues
    the leaves it needs to; the namespace's grants by the caller (admission) first. A
    serial its authority revoked (`revoked`, the serials its CRLs list) is judged again
    too, so the Certificate says so (Ready=False, Revoked)."""
    current = observed.status
    recorded = current.get("secretResourceVersion")
    if not secret_version or recorded != secret_version or observed.renewal_request:
        return None
    if not observed.uid or not _seal_holds(observed, seal_key):
        return None
    if _serial(current.get("serialNumber")) in revoked:
        return None
    found = {c.get("type"): c for c in current.get("conditions") or [] if isinstance(c, dict)}
    ready, issuing = found.get(conditions.READY) or {}, found.get(conditions.ISSUING) or {}
    if (
        ready.get("status") != "True"
        or ready.get("observedGeneration") != observed.generation
        or issuing.get("status") != "False"
        or current.get("failedIssuanceAttempts")
    ):
        return None
    renewal_at = times.parse_time(current.get("renewalTime"))
    not_after = times.parse_time(current.get("notAfter"))
    if renewal_at is None or not_after is None or renewal_at <= now:
        return None
    return Resumed(Outcome(None, renewal_at), not_after, renewal_at)


def _serial(recorded: object) -> int | None:
    """status.serialNumber (hex) as a number; None when absent or not hex."""
    try:
        return int(str(recorded), 16) if recorded else None
    except ValueError:
        return None


# --- not Ready -------------------------------------------------------------------------


def not_ready(
    observed: Observed,
    reason: str,
    message: str,
    now: datetime,
    *,
    retry: datetime | None,
    seal_key: bytes | None,
    forget_certificate: bool = False,
) -> Outcome:
    """Ready=False and Issuing=False, both with `reason` and `message`; next check `retry`.

    `forget_certificate`: the Certificate has no Secret of its own (SecretConflict), so the
    notBefore, notAfter, renewalTime and serialNumber of a certificate it had (printer
    columns EXPIRES, SERIAL) are removed from status (null in the merge patch).
    The status is None when the stored one already says all this.
    """
    desired: dict[str, Any] = {
        "conditions": _merged(
            observed,
            [
                conditions.Condition(conditions.READY, False, reason, message),
                conditions.Condition(conditions.ISSUING, False, reason, message),
            ],
            now,
        )
    }
    # What a restart would resume on no longer holds once not Ready.
    if "secretResourceVersion" in observed.status:
        desired["secretResourceVersion"] = None
    if forget_certificate:
        desired.update(dict.fromkeys(CERTIFICATE_STATUS_FIELDS))
    _sealed(observed, desired, seal_key)
    return Outcome(desired if _status_changed(observed.status, desired) else None, retry)


def issuer_not_ready(
    observed: Observed, message: str, now: datetime, seal_key: bytes | None
) -> Outcome:
    """Not Ready (IssuerNotReady) while the CertificateAuthority cannot sign; looked at
    again after AUTHORITY_RETRY, as an authority becoming ready does not wake it."""
    return not_ready(
        observed, "IssuerNotReady", message, now, retry=now + AUTHORITY_RETRY, seal_key=seal_key
    )


def conflict_recheck_delay(age: timedelta) -> timedelta:
    """How soon to look again at a SecretConflict that has lasted `age`: a tenth of its age,
    from 2 s to 30 s. A blocking Secret that certsmith labelled wakes the Certificate by its
    watch event at once; a foreign one is not watched (certsmith never watches every
    Secret), so this bounds how long its deletion goes unnoticed, at a cost of one GET."""
    return min(max(age / 10, CONFLICT_RECHECK_MIN), CONFLICT_RECHECK_MAX)


def conflict_age(status: Mapping[str, Any], now: datetime) -> timedelta:
    """How long the Certificate has been Ready=False for a SecretConflict (0 if it is not)."""
    ready_condition = conditions.find_condition(status.get("conditions"), conditions.READY)
    if (
        ready_condition is None
        or ready_condition.get("status") != "False"
        or ready_condition.get("reason") != "SecretConflict"
    ):
        return timedelta(0)
    since = times.parse_time(ready_condition.get("lastTransitionTime"))
    return timedelta(0) if since is None else max(now - since, timedelta(0))


def secret_conflict(
    observed: Observed, conflict: policies.Decision, now: datetime, seal_key: bytes | None
) -> Outcome:
    """Not Ready for `conflict` (SecretConflict: the Secret is someone else's), without the
    certificate fields, which described a certificate that is not this Certificate's;
    looked at again after conflict_recheck_delay."""
    delay = conflict_recheck_delay(conflict_age(observed.status, now))
    return not_ready(
        observed,
        conflict.reason,
        conflict.message,
        now,
        retry=now + delay,
        seal_key=seal_key,
        forget_certificate=True,
    )


# --- failed issuance -------------------------------------------------------------------


def retry_delay(attempts: int, jitter: float = 1.0) -> timedelta:
    """Exponential back-off after `attempts` failures in a row: 2 s, 4 s, 8 s … capped at
    5 minutes, times `jitter` (the caller draws it from 0.9 to 1.1). Any count of attempts
    gives the cap: the doubling stops once past it (2 s · 2⁴⁶ would overflow timedelta)."""
    doublings = min(max(0, attempts - 1), _MAX_DOUBLINGS)
    return min(RETRY_BASE * (1 << doublings), RETRY_CAP) * jitter


@dataclass(frozen=True)
class Readiness:
    """The Ready condition after a failed issuance, and the latest time to look again."""

    condition: conditions.Condition | None
    """None: leave Ready as it is."""
    wake: datetime | None
    """When Ready must be judged again whatever the back-off (None: no such time)."""


def failure_readiness(judged: policies.Input, failure: str) -> Readiness:
    """Ready after a failed issuance, judged on the Secret as read.

    Ready stays True (Issued) only while the certificate already in the Secret is usable
    (policies.usable); it is then due again one second after its chain's earliest notAfter
    (X.509 validity includes notAfter itself) whatever the retry back-off, so Ready turns
    False when it expires. Otherwise Ready is False with the problem's reason (Expired,
    NotYetValid, KeyMismatch, …; IssuanceFailed for a missing Secret) and the failure in
    the message; a certificate not yet valid is due again at its notBefore.
    """
    found = policies.usable(judged)
    if isinstance(found, policies.Held):
        message = (
            f"the certificate is valid until {times.format_time(found.valid_until)}; "
            f"re-issuing it failed (see the Issuing condition): {failure}"
        )
        condition = conditions.Condition(conditions.READY, True, "Issued", message)
        return Readiness(condition, found.valid_until + timedelta(seconds=1))
    reason = "IssuanceFailed" if found.reason == "SecretMissing" else found.reason
    message = f"{found.message}; issuing a new one failed: {failure}"
    leaf = None if judged.secret is None else judged.secret.leaf
    wake = leaf.not_valid_before_utc if leaf is not None and found.reason == "NotYetValid" else None
    return Readiness(conditions.Condition(conditions.READY, False, reason, message), wake)


def unread_readiness(status: Mapping[str, Any], now: datetime, failure: str) -> Readiness:
    """Like failure_readiness when the Secret could not even be read: status.notAfter stands
    for its certificate. Ready is left as it is (None) while that has not passed, and due
    again one second after it."""
    not_after = times.parse_time(status.get("notAfter"))
    if not_after is None:
        return Readiness(
            conditions.Condition(conditions.READY, False, "IssuanceFailed", failure), None
        )
    if now > not_after:
        message = f"the certificate expired at {status['notAfter']}; issuing a new one failed: "
        return Readiness(
            conditions.Condition(conditions.READY, False, "Expired", message + failure), None
        )
    return Readiness(None, not_after + timedelta(seconds=1))


@dataclass(frozen=True)
class FailedStatus:
    """`failed`'s result."""

    outcome: Outcome
    """Issuing=False with the failure, Ready per Readiness, lastFailureTime, the attempts;
    always written (lastFailureTime changes)."""
    attempts: int
    """status.failedIssuanceAttempts now: failures in a row, this one included."""
    ready: bool
    """Whether Ready is True after it (an old certificate still usable)."""


def failed(
    observed: Observed,
    reason: str,
    message: str,
    now: datetime,
    judged: policies.Input | None,
    *,
    seal_key: bytes | None,
    jitter: float = 1.0,
) -> FailedStatus:
    """The status after an issuance failed for `reason` (IssuanceFailed, SecretConflict).

    `judged` is what the Secret was judged on (None when it could not be read; then
    status.notAfter stands for it, if the seal holds under `seal_key`). With `seal_key`,
    fields of a status whose seal does not hold are removed, not sealed (`_sealed`). The
    next check backs off (retry_delay with `jitter`), but comes no later than
    Readiness.wake: a usable old certificate is looked at again right after it stops being
    valid, however long the back-off.
    """
    attempts = int(observed.status.get("failedIssuanceAttempts") or 0) + 1
    if judged is not None:
        readiness = failure_readiness(judged, message)
    else:
        # An edited notAfter must not keep Ready as it is: only a sealed one stands in.
        vouched = observed.status if seal_key is None or _seal_holds(observed, seal_key) else {}
        readiness = unread_readiness(vouched, now, message)
    desired_conditions = [conditions.Condition(conditions.ISSUING, False, reason, message)]
    if readiness.condition is not None:
        desired_conditions.append(readiness.condition)
    merged = _merged(observed, desired_conditions, now)
    desired = {
        "conditions": merged,
        "lastFailureTime": times.format_time(now),
        "failedIssuanceAttempts": attempts,
    }
    _sealed(observed, desired, seal_key)
    retry = now + retry_delay(attempts, jitter)
    next_check = retry if readiness.wake is None else min(retry, readiness.wake)
    return FailedStatus(
        Outcome(desired, next_check),
        attempts=attempts,
        ready=conditions.is_true(merged, conditions.READY),
    )


def reissued_at_once(again: policies.Decision) -> str:
    """The failure message when the certificate just issued would itself be re-issued (a
    check that can never pass): reported and backed off instead of issuing in a loop."""
    return (
        f"the certificate just issued would be re-issued at once ({again.reason}: {again.message})"
    )
