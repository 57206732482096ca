"""Reconcile one Certificate: gather (Secret, authority) → decide (policies) → build → apply.

Every path ends in a `Outcome`: the status to write (or None when nothing changed) and
when to look at the Certificate again. Callers write the status in the cheapest way they
have (kopf's own patch from a handler, a direct PATCH from the scheduler).
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from certsmith import metrics
from certsmith.api import conditions, model, names, times
from certsmith.authorities.authority import AuthorityMaterial
from certsmith.authorities.rotation import ReissuePacer
from certsmith.authorities.store import AuthorityRegistry
from certsmith.certificates import isolation, policies, tls_secret
from certsmith.certificates.policies import Action, Decision
from certsmith.config import Config
from certsmith.kube import ApiError, Kube
from certsmith.pki import inspect, issue, keys
from certsmith.pods import rollout

logger = logging.getLogger(__name__)

RETRY_BASE = timedelta(seconds=2)
RETRY_CAP = timedelta(minutes=5)
AUTHORITY_RETRY = timedelta(seconds=5)
CONFLICT_RECHECK_MIN = timedelta(seconds=2)
CONFLICT_RECHECK_MAX = timedelta(seconds=30)
# A write refused with 409 (someone wrote the Secret after it was read) is judged again on
# a fresh read this many times before it counts as a failed issuance.
WRITE_CONFLICT_ATTEMPTS = 3
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
)


# The status fields that describe the certificate in the Secret.
CERTIFICATE_STATUS_FIELDS = ("notBefore", "notAfter", "renewalTime", "serialNumber")


@dataclass(frozen=True)
class Outcome:
    status: dict[str, Any] | None
    """Status fields to write, or None when the stored status is already right."""
    next_check: datetime | None
    """When to reconcile again (renewal or retry); None to wait for a change."""


def retry_delay(attempts: int) -> timedelta:
    """Exponential back-off: 2 s, 4 s, 8 s … capped at 5 minutes, with ±10 % jitter."""
    delay = min(RETRY_BASE * (2 ** max(0, attempts - 1)), RETRY_CAP)
    return delay * random.uniform(0.9, 1.1)


def conflict_recheck_delay(age: timedelta) -> timedelta:
    """How soon to look again at a SecretConflict that has lasted `age`: a tenth of its age,
    from 2 s to 30 s. A blocking Secret that certsmith labelled wakes the Certificate by its
    watch event at once; a foreign one is not watched (certsmith never watches every
    Secret), so this bounds how long its deletion goes unnoticed, at a cost of one GET."""
    return min(max(age / 10, CONFLICT_RECHECK_MIN), CONFLICT_RECHECK_MAX)


def _conflict_age(status: Mapping[str, Any], now: datetime) -> timedelta:
    """How long the Certificate has been Ready=False for a SecretConflict (0 if it is not)."""
    ready = conditions.find_condition(status.get("conditions"), conditions.READY)
    if ready is None or ready.get("status") != "False" or ready.get("reason") != "SecretConflict":
        return timedelta(0)
    since = times.parse_time(ready.get("lastTransitionTime"))
    return timedelta(0) if since is None else max(now - since, timedelta(0))


def failure_readiness(
    problem: Decision | None, secret: tls_secret.SecretContents | None, failure: str
) -> tuple[conditions.Condition, datetime | None]:
    """Ready after a failed issuance, and when to look at the Certificate again at the latest.

    Ready stays True only while the certificate already in the Secret is usable (`problem`
    None, see policies.leaf_problem); it is then due again one second after its chain's
    earliest notAfter (X.509 validity includes notAfter itself) whatever the retry back-off,
    so Ready turns False when it expires. Otherwise Ready is False with the problem's reason
    (Expired, NotYetValid, KeyMismatch, …) and the failure in the message; a certificate not
    yet valid is due again at its notBefore.
    """
    leaf = None if secret is None else secret.leaf
    if problem is None:
        assert secret is not None and secret.valid_until is not None
        message = (
            f"the certificate is valid until {times.format_time(secret.valid_until)}; "
            f"re-issuing it failed (see the Issuing condition): {failure}"
        )
        ready = conditions.Condition(conditions.READY, True, "Issued", message)
        return ready, secret.valid_until + timedelta(seconds=1)
    reason = "IssuanceFailed" if problem.reason == "SecretMissing" else problem.reason
    message = f"{problem.message}; issuing a new one failed: {failure}"
    wake = leaf.not_valid_before_utc if leaf and problem.reason == "NotYetValid" else None
    return conditions.Condition(conditions.READY, False, reason, message), wake


def unread_readiness(
    status: Mapping[str, Any], now: datetime, failure: str
) -> tuple[conditions.Condition | None, datetime | None]:
    """Like failure_readiness when the Secret could not even be read: status.notAfter stands
    for its certificate. Ready is left as it is (None) while that has not passed."""
    not_after = times.parse_time(status.get("notAfter"))
    if not_after is None:
        return conditions.Condition(conditions.READY, False, "IssuanceFailed", failure), None
    if now > not_after:
        message = f"the certificate expired at {status['notAfter']}; issuing a new one failed: "
        return conditions.Condition(conditions.READY, False, "Expired", message + failure), None
    return None, not_after + timedelta(seconds=1)


def _trigger_time(
    body: Mapping[str, Any],
    spec: model.CertificateSpec,
    previous: tls_secret.SecretContents | None,
    decision: Decision,
    now: datetime,
) -> datetime:
    """What an issuance's latency is measured from: creation, renewal time, or detection."""
    metadata = body["metadata"]
    if decision.reason == "RenewalDue" and previous is not None and previous.leaf is not None:
        return policies.leaf_renewal_time(
            spec, previous.leaf, jitter_key=f"{metadata['namespace']}/{metadata['name']}"
        )
    if previous is None and not (body.get("status") or {}).get("revision"):
        created = times.parse_time(metadata.get("creationTimestamp"))
        if created is not None:
            return created
    return now


def _revision(status: Mapping[str, Any] | None, secret: tls_secret.SecretContents | None) -> int:
    """The latest revision issued: status and Secret may each be the one a crash left behind."""
    recorded = int((status or {}).get("revision") or 0)
    return max(recorded, secret.revision if secret is not None else 0)


def _renewal_request(body: Mapping[str, Any]) -> str | None:
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    return annotations.get(names.RENEWAL_REQUEST_ANNOTATION)


def _status_changed(current: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    return any(current.get(key) != desired.get(key) for key in STATUS_FIELDS if key in desired)


class Reconciler:
    def __init__(
        self,
        *,
        kube: Kube,
        config: Config,
        authorities: AuthorityRegistry,
        clock: Callable[[], datetime],
        namespace_labels: Callable[[str], Mapping[str, str]],
        pacer: ReissuePacer | None = None,
    ) -> None:
        self._namespace_labels = namespace_labels
        self._pacer = pacer or ReissuePacer()
        self._kube = kube
        self._config = config
        self._authorities = authorities
        self._clock = clock
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._written: dict[tuple[str, str], str] = {}
        # (namespace, Secret name) → the Certificates in SecretConflict over it.
        self._conflicts: dict[tuple[str, str], set[tuple[str, str]]] = {}

    # --- entry points ------------------------------------------------------------------

    def reconcile(self, body: Mapping[str, Any]) -> Outcome:
        """Bring one Certificate's Secret in line with its spec; never raises for bad input."""
        metadata = body["metadata"]
        key = (metadata["namespace"], metadata["name"])
        with self._lock_for(key):
            return self._reconcile(body)

    def is_own_write(self, namespace: str, secret_name: str, resource_version: str) -> bool:
        """Whether a Secret watch event only echoes a write this operator made."""
        return self._written.get((namespace, secret_name)) == resource_version

    def forget(self, namespace: str, name: str) -> None:
        metrics.certificate_forgotten(namespace, name)
        self._conflict_on(namespace, None, name)
        with self._locks_guard:
            self._locks.pop((namespace, name), None)

    def _lock_for(self, key: tuple[str, str]) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    # --- gather → decide → apply ---------------------------------------------------------

    def _reconcile(self, body: Mapping[str, Any]) -> Outcome:
        now = self._clock()
        metadata = body["metadata"]
        namespace, name = metadata["namespace"], metadata["name"]
        status = dict(body.get("status") or {})
        generation = metadata.get("generation")

        refusal = isolation.operator_namespace_refusal(namespace, self._config.namespace)
        if refusal is not None:
            # Before the spec and any Secret: nothing of this Certificate is ever written.
            return self._not_ready(body, status, "PolicyDenied", refusal, now, retry=None)

        try:
            spec = model.parse_certificate_spec(body.get("spec") or {})
        except model.InvalidSpec as invalid:
            return self._not_ready(body, status, "InvalidSpec", str(invalid), now, retry=None)

        material = self._authorities.get(spec.issuer_name)
        if material is None:
            message = self._authorities.why_unavailable(spec.issuer_name, self._kube)
            return self._not_ready(
                body, status, "IssuerNotReady", message, now, retry=now + AUTHORITY_RETRY
            )

        violations = isolation.evaluate(
            namespace=namespace,
            namespace_labels=self._namespace_labels(namespace),
            spec=spec,
            grants=material.grants,
            trust_domain=self._config.trust_domain,
        )
        if violations:
            # Checked again at signing: a Certificate that slipped past the webhook is never signed.
            message = "; ".join(str(v) for v in violations)
            return self._not_ready(body, status, "PolicyDenied", message, now, retry=None)

        # A Certificate never issued most likely has no Secret yet: try creating it without
        # reading first; a conflict means one exists, and the full path runs on it.
        optimistic = not status.get("revision") and not status.get("serialNumber")
        judged: policies.Input | None = None
        write_conflicts = 0
        try:
            while True:
                judged = None
                secret_body = (
                    None
                    if optimistic
                    else self._kube.get_secret(namespace=namespace, name=spec.secret_name)
                )
                contents = None if secret_body is None else tls_secret.parse_secret(secret_body)
                judged = policies.Input(
                    certificate_name=name,
                    namespace=namespace,
                    spec=spec,
                    secret=contents,
                    authority=material.view(),
                    now=now,
                    renewal_request=_renewal_request(body),
                    claimant_exists=self._claimant_exists(namespace, name, contents),
                )
                decision = policies.decide(judged)
                if decision.action is Action.CONFLICT:
                    self._conflict_on(namespace, spec.secret_name, name)
                    delay = conflict_recheck_delay(_conflict_age(status, now))
                    # The Secret is not this Certificate's: its certificate is not either.
                    return self._not_ready(
                        body,
                        status,
                        decision.reason,
                        decision.message,
                        now,
                        retry=now + delay,
                        forget_certificate=True,
                    )
                self._conflict_on(namespace, None, name)
                if (
                    contents is not None
                    and contents.immutable
                    and self._writes_data(decision, contents, material)
                ):
                    message = tls_secret.immutable_message(spec.secret_name)
                    return self._failed(body, status, "SecretConflict", message, now, judged)
                if decision.action is Action.ISSUE and decision.reason == policies.ROOT_ROTATION:
                    # At most spec.rotation.reissueRate per second, whoever asked.
                    moment = self._clock()
                    slot = self._pacer.slot(material.name, (namespace, name), now=moment)
                    if slot > moment:
                        return Outcome(status=None, next_check=slot)
                try:
                    if decision.action is Action.ISSUE:
                        contents = self._issue(body, spec, contents, material, decision, now)
                        # What was just issued must pass every check, or each reconcile would
                        # issue again: report it and back off instead of looping.
                        again = policies.decide(dataclasses.replace(judged, secret=contents))
                        if again.action is Action.ISSUE:
                            message = (
                                "the certificate just issued would be re-issued at once "
                                f"({again.reason}: {again.message})"
                            )
                            return self._failed(
                                body,
                                status,
                                "IssuanceFailed",
                                message,
                                now,
                                dataclasses.replace(judged, secret=contents),
                            )
                    elif decision.action is Action.REPAIR:
                        assert contents is not None
                        self._repair(body, spec, contents, material)
                except ApiError as error:
                    # 409: the Secret exists after all (optimistic create) or was written
                    # since it was read (resourceVersion precondition): judge it afresh.
                    if error.conflict and write_conflicts < WRITE_CONFLICT_ATTEMPTS:
                        write_conflicts += 1
                        optimistic = False
                        continue
                    raise
                break
        except ApiError as error:
            return self._failed(
                body,
                status,
                "IssuanceFailed",
                f"the apiserver answered {error}",
                now,
                # Judged on a Secret read, not on the guess that none exists.
                None if optimistic else judged,
            )

        assert contents is not None and contents.leaf is not None
        return self._ready(body, spec, contents, status, generation, now)

    def _claimant_exists(
        self, namespace: str, name: str, contents: tls_secret.SecretContents | None
    ) -> bool:
        """Whether the other Certificate a Secret was issued for still exists (read only then)."""
        claim = None if contents is None else tls_secret.foreign_claim(contents, name)
        if claim is None or claim.other_certificate is None:
            return True
        found = self._kube.get_certificate(namespace=namespace, name=claim.other_certificate)
        return found is not None

    @staticmethod
    def _writes_data(
        decision: Decision, contents: tls_secret.SecretContents, material: AuthorityMaterial
    ) -> bool:
        """Whether carrying out `decision` changes the Secret's data (refused if immutable)."""
        if decision.action is Action.ISSUE:
            return True
        return decision.action is Action.REPAIR and contents.ca_pem != material.bundle_pem

    def _conflict_on(self, namespace: str, secret_name: str | None, name: str) -> None:
        """Record which Secret a Certificate waits for (None: none), so its events wake it."""
        with self._locks_guard:
            for key in list(self._conflicts):
                self._conflicts[key].discard((namespace, name))
                if not self._conflicts[key]:
                    del self._conflicts[key]
            if secret_name is not None:
                self._conflicts.setdefault((namespace, secret_name), set()).add((namespace, name))

    def waiting_on_secret(self, namespace: str, secret_name: str) -> list[str]:
        """Certificates in SecretConflict over this Secret: look again when it changes."""
        with self._locks_guard:
            return sorted(n for _, n in self._conflicts.get((namespace, secret_name), ()))

    def _issue(
        self,
        body: Mapping[str, Any],
        spec: model.CertificateSpec,
        previous: tls_secret.SecretContents | None,
        material: AuthorityMaterial,
        decision: Decision,
        now: datetime,
    ) -> tls_secret.SecretContents:
        metadata = body["metadata"]
        namespace, name = metadata["namespace"], metadata["name"]
        key = None
        if (
            spec.private_key.rotation_policy == "Never"
            and previous is not None
            and previous.key is not None
            and keys.key_matches_spec(previous.key, spec.private_key)
        ):
            key = previous.key
        if key is None:
            key = keys.generate_private_key(spec.private_key)
        leaf = issue.build_leaf(
            spec=spec, public_key=key.public_key(), issuer=material.intermediate, now=now
        )
        revision = _revision(body.get("status"), previous) + 1
        issued = tls_secret.IssuedMaterial(
            leaf=leaf,
            intermediates=(material.intermediate.certificate,),
            key_pem=keys.encode_private_key(key, spec.private_key.encoding),
            ca_pem=material.bundle_pem,
            issuer_fingerprint=material.issuer_fingerprint,
            spec_fingerprint=model.issuance_fingerprint(spec),
            revision=revision,
            authority=material.name,
            renewal_request=_renewal_request(body),
        )
        if previous is None:
            stored = self._kube.create_secret(
                body=tls_secret.build_secret(
                    name=spec.secret_name,
                    namespace=namespace,
                    certificate_name=name,
                    labels_template=spec.secret_labels,
                    annotations_template=spec.secret_annotations,
                    material=issued,
                )
            )
        else:
            # A merge patch of what certsmith owns, not a replacement: what others added to
            # the Secret stays; its resourceVersion makes a concurrent write a 409.
            stored = self._kube.patch_secret(
                namespace=namespace,
                name=spec.secret_name,
                patch=tls_secret.issue_patch(
                    previous,
                    certificate_name=name,
                    labels_template=spec.secret_labels,
                    annotations_template=spec.secret_annotations,
                    material=issued,
                ),
            )
        self._written[(namespace, spec.secret_name)] = stored["metadata"]["resourceVersion"]
        metrics.issued(
            decision.reason,
            (self._clock() - _trigger_time(body, spec, previous, decision, now)).total_seconds(),
        )

        renewed = previous is not None and previous.leaf is not None
        if revision > 1:
            # An earlier leaf exists in pods: from this Secret, or from one that was deleted
            # or named before (injected pods follow the Certificate, env never refreshes).
            self._restart_workloads(namespace, name, spec.secret_name, inspect.serial_hex(leaf))
        self._event(
            body,
            "Normal",
            "Renewed" if renewed else "Issued",
            f"issued serial {inspect.serial_hex(leaf)} valid until "
            f"{times.format_time(leaf.not_valid_after_utc)} ({decision.message})",
        )
        logger.info(
            "%s/%s: issued serial %s (%s)",
            namespace,
            name,
            inspect.serial_hex(leaf),
            decision.reason,
        )
        return tls_secret.parse_secret(stored)

    def _restart_workloads(
        self, namespace: str, certificate_name: str, secret_name: str, serial: str
    ) -> None:
        """Roll the opted-in workloads whose pods use this Secret; failures only warn."""
        for plural in rollout.WORKLOAD_KINDS:
            try:
                for workload in self._kube.list_workloads(namespace=namespace, plural=plural):
                    if rollout.needs_restart(
                        workload,
                        certificate_name=certificate_name,
                        secret_name=secret_name,
                        serial=serial,
                    ):
                        name = workload["metadata"]["name"]
                        self._kube.patch_workload(
                            namespace=namespace,
                            plural=plural,
                            name=name,
                            patch=rollout.restart_patch(workload, secret_name, serial),
                        )
                        logger.info(
                            "%s/%s %s: rolling restart for %s", namespace, plural, name, secret_name
                        )
            except ApiError as error:
                logger.warning("could not restart %s using %s: %s", plural, secret_name, error)

    def _repair(
        self,
        body: Mapping[str, Any],
        spec: model.CertificateSpec,
        contents: tls_secret.SecretContents,
        material: AuthorityMaterial,
    ) -> None:
        assert contents.leaf is not None
        metadata = body["metadata"]
        issuer_fingerprint = (
            inspect.fingerprint_sha256(contents.intermediates[0])
            if contents.intermediates
            else material.issuer_fingerprint
        )
        patch = tls_secret.metadata_patch(
            contents,
            desired_labels=tls_secret.desired_labels(metadata["name"], spec.secret_labels),
            desired_annotations=tls_secret.desired_annotations(
                certificate_name=metadata["name"],
                template=spec.secret_annotations,
                labels_template=spec.secret_labels,
                leaf=contents.leaf,
                issuer_fingerprint=issuer_fingerprint,
                spec_fingerprint=model.issuance_fingerprint(spec),
                revision=_revision(body.get("status"), contents),
                authority=material.name,
                renewal_request=contents.annotations.get(names.RENEWAL_REQUEST_ANNOTATION),
            ),
            ca_pem=material.bundle_pem,
        )
        if patch is None:
            return
        stored = self._kube.patch_secret(
            namespace=metadata["namespace"], name=spec.secret_name, patch=patch
        )
        self._written[(metadata["namespace"], spec.secret_name)] = stored["metadata"][
            "resourceVersion"
        ]
        if "data" in patch:
            # A trust-bundle update during a root rotation is routine, not a repair.
            logger.info("%s/%s: ca.crt updated", metadata["namespace"], metadata["name"])
            return
        changed = ", ".join(
            f"{'removed' if value is None else 'set'} {key}"
            for part in ("labels", "annotations")
            for key, value in sorted(patch["metadata"].get(part, {}).items())
        )
        self._event(body, "Normal", "Repaired", f"Secret {spec.secret_name}: {changed}")

    # --- outcomes ------------------------------------------------------------------------

    def _ready(
        self,
        body: Mapping[str, Any],
        spec: model.CertificateSpec,
        contents: tls_secret.SecretContents,
        status: Mapping[str, Any],
        generation: int | None,
        now: datetime,
    ) -> Outcome:
        assert contents.leaf is not None
        leaf = contents.leaf
        metadata = body["metadata"]
        # Whole seconds, as status shows it, so status, metrics and the schedule agree;
        # rounded up, so the scheduled check never comes before the renewal is due.
        exact = policies.leaf_renewal_time(
            spec, leaf, jitter_key=f"{metadata['namespace']}/{metadata['name']}"
        )
        renewal_at = exact.replace(microsecond=0)
        if renewal_at < exact:
            renewal_at += timedelta(seconds=1)
        desired: dict[str, Any] = {
            "conditions": conditions.merge_conditions(
                status.get("conditions"),
                [
                    conditions.Condition(
                        conditions.READY, True, "Issued", "the certificate is valid and up to date"
                    ),
                    conditions.Condition(
                        conditions.ISSUING, False, "UpToDate", "no issuance in progress"
                    ),
                ],
                generation=generation,
                now=now,
            ),
            "notBefore": times.format_time(leaf.not_valid_before_utc),
            "notAfter": times.format_time(leaf.not_valid_after_utc),
            "renewalTime": times.format_time(renewal_at),
            "serialNumber": inspect.serial_hex(leaf),
            "revision": _revision(status, contents),
            "failedIssuanceAttempts": 0,
        }
        metrics.certificate_ready(
            metadata["namespace"], metadata["name"], leaf.not_valid_after_utc, renewal_at
        )
        changed = _status_changed(status, desired)
        return Outcome(status=desired if changed else None, next_check=renewal_at)

    def _not_ready(
        self,
        body: Mapping[str, Any],
        status: Mapping[str, Any],
        reason: str,
        message: str,
        now: datetime,
        *,
        retry: datetime | None,
        forget_certificate: bool = False,
    ) -> Outcome:
        """Ready=False for `reason`. `forget_certificate`: the Certificate has no Secret of
        its own (SecretConflict), so the notBefore, notAfter, renewalTime and serialNumber
        of a certificate it had (printer columns EXPIRES, SERIAL) are removed from status."""
        desired: dict[str, Any] = {
            "conditions": conditions.merge_conditions(
                status.get("conditions"),
                [
                    conditions.Condition(conditions.READY, False, reason, message),
                    conditions.Condition(conditions.ISSUING, False, reason, message),
                ],
                generation=body["metadata"].get("generation"),
                now=now,
            )
        }
        if forget_certificate:
            desired.update(dict.fromkeys(CERTIFICATE_STATUS_FIELDS))  # null: merge patch removes
        # The gauge follows every judgement (also after a restart); counts only on change.
        metrics.certificate_not_ready(body["metadata"]["namespace"], body["metadata"]["name"])
        if not _status_changed(status, desired):
            return Outcome(status=None, next_check=retry)
        metrics.FAILURES.labels(reason).inc()
        self._event(body, "Warning", reason, message)
        return Outcome(status=desired, next_check=retry)

    def _failed(
        self,
        body: Mapping[str, Any],
        status: Mapping[str, Any],
        reason: str,
        message: str,
        now: datetime,
        judged: policies.Input | None,
    ) -> Outcome:
        """Issuance failed: Ready stays True only while the old certificate is usable.

        `judged` is what the Secret was judged on (None when it could not be read; then
        status.notAfter stands for it). Retries back off; a usable old certificate is looked
        at again right after it stops being valid, however long the back-off.
        """
        metadata = body["metadata"]
        attempts = int(status.get("failedIssuanceAttempts") or 0) + 1
        desired_conditions = [conditions.Condition(conditions.ISSUING, False, reason, message)]
        if judged is not None:
            ready, wake = failure_readiness(policies.leaf_problem(judged), judged.secret, message)
        else:
            ready, wake = unread_readiness(status, now, message)
        if ready is not None:
            desired_conditions.append(ready)
        desired = {
            "conditions": conditions.merge_conditions(
                status.get("conditions"),
                desired_conditions,
                generation=metadata.get("generation"),
                now=now,
            ),
            "lastFailureTime": times.format_time(now),
            "failedIssuanceAttempts": attempts,
        }
        if conditions.is_true(desired["conditions"], conditions.READY):
            metrics.READY.labels(metadata["namespace"], metadata["name"]).set(1)
        else:
            metrics.certificate_not_ready(metadata["namespace"], metadata["name"])
        metrics.FAILURES.labels(reason).inc()
        self._event(body, "Warning", reason, message)
        logger.warning(
            "%s/%s: issuance failed (attempt %d): %s",
            metadata["namespace"],
            metadata["name"],
            attempts,
            message,
        )
        retry = now + retry_delay(attempts)
        return Outcome(status=desired, next_check=retry if wake is None else min(retry, wake))

    def _event(self, body: Mapping[str, Any], event_type: str, reason: str, message: str) -> None:
        # An event that cannot be posted must not undo an issuance that succeeded.
        try:
            self._kube.post_event(
                involved=body,
                event_type=event_type,
                reason=reason,
                message=message,
                now=times.format_time(self._clock()),
                component=self._config.component,
            )
        except ApiError as error:
            logger.warning("could not post event %s: %s", reason, error)
