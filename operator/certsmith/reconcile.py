"""Reconcile one Certificate: gather (Secret, authority) → decide (policies) → build → apply.

Every path ends in a `Outcome`: the status to write (or None when nothing changed) and
when to look at the Certificate again. Callers write the status in the cheapest way they
have (kopf's own patch from a handler, a direct PATCH from the scheduler).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from certsmith import conditions, isolation, metrics, model, policies, rollout, tls_secret
from certsmith.authorities import AuthorityRegistry
from certsmith.authority import AuthorityMaterial
from certsmith.config import Config
from certsmith.kube import ApiError, Kube
from certsmith.pki import inspect, issue, keys
from certsmith.policies import Action, Decision

logger = logging.getLogger(__name__)

RETRY_BASE = timedelta(seconds=2)
RETRY_CAP = timedelta(minutes=5)
AUTHORITY_RETRY = timedelta(seconds=5)
CONFLICT_RETRY = timedelta(minutes=1)
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
        created = metadata.get("creationTimestamp")
        if created:
            return datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    return now


def _revision(status: Mapping[str, Any] | None, secret: tls_secret.SecretContents | None) -> int:
    """The latest revision issued: status and Secret may each be the one a crash left behind."""
    recorded = int((status or {}).get("revision") or 0)
    return max(recorded, secret.revision if secret is not None else 0)


def _renewal_request(body: Mapping[str, Any]) -> str | None:
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    return annotations.get(tls_secret.RENEWAL_REQUEST_ANNOTATION)


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
    ) -> None:
        self._namespace_labels = namespace_labels
        self._kube = kube
        self._config = config
        self._authorities = authorities
        self._clock = clock
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._written: dict[tuple[str, str], str] = {}

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
        try:
            while True:
                secret_body = (
                    None
                    if optimistic
                    else self._kube.get_secret(namespace=namespace, name=spec.secret_name)
                )
                contents = None if secret_body is None else tls_secret.parse_secret(secret_body)
                decision = policies.decide(
                    policies.Input(
                        certificate_name=name,
                        namespace=namespace,
                        spec=spec,
                        secret=contents,
                        authority=material.view(),
                        now=now,
                        renewal_request=_renewal_request(body),
                    )
                )
                if decision.action is Action.CONFLICT:
                    return self._not_ready(
                        body,
                        status,
                        decision.reason,
                        decision.message,
                        now,
                        retry=now + CONFLICT_RETRY,
                    )
                if decision.action is Action.ISSUE:
                    try:
                        contents = self._issue(body, spec, contents, material, decision, now)
                    except ApiError as error:
                        if optimistic and error.conflict:
                            optimistic = False
                            continue
                        raise
                elif decision.action is Action.REPAIR:
                    assert contents is not None
                    self._repair(body, spec, contents, material)
                break
        except ApiError as error:
            return self._failed(body, status, f"the apiserver answered {error}", now)

        assert contents is not None and contents.leaf is not None
        return self._ready(body, spec, contents, status, generation, now)

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
        secret = tls_secret.build_secret(
            name=spec.secret_name,
            namespace=namespace,
            certificate_name=name,
            labels_template=spec.secret_labels,
            annotations_template=spec.secret_annotations,
            material=tls_secret.IssuedMaterial(
                leaf=leaf,
                intermediates=(material.intermediate.certificate,),
                key_pem=keys.encode_private_key(key, spec.private_key.encoding),
                ca_pem=material.bundle_pem,
                issuer_fingerprint=material.issuer_fingerprint,
                spec_fingerprint=model.issuance_fingerprint(spec),
                revision=revision,
                authority=material.name,
                renewal_request=_renewal_request(body),
            ),
        )
        if previous is None:
            stored = self._kube.create_secret(body=secret)
        else:
            secret["metadata"]["resourceVersion"] = previous.resource_version
            stored = self._kube.replace_secret(body=secret)
        self._written[(namespace, spec.secret_name)] = stored["metadata"]["resourceVersion"]
        metrics.issued(
            decision.reason,
            (self._clock() - _trigger_time(body, spec, previous, decision, now)).total_seconds(),
        )

        renewed = previous is not None and previous.leaf is not None
        if renewed:
            self._restart_workloads(namespace, spec.secret_name, inspect.serial_hex(leaf))
        self._event(
            body,
            "Normal",
            "Renewed" if renewed else "Issued",
            f"issued serial {inspect.serial_hex(leaf)} valid until "
            f"{conditions.format_time(leaf.not_valid_after_utc)} ({decision.message})",
        )
        logger.info(
            "%s/%s: issued serial %s (%s)",
            namespace,
            name,
            inspect.serial_hex(leaf),
            decision.reason,
        )
        return tls_secret.parse_secret(stored)

    def _restart_workloads(self, namespace: str, secret_name: str, serial: str) -> None:
        """Roll the opted-in workloads that mount this Secret; failures only warn."""
        for plural in rollout.WORKLOAD_KINDS:
            try:
                for workload in self._kube.list_workloads(namespace=namespace, plural=plural):
                    if rollout.needs_restart(workload, secret_name, serial):
                        name = workload["metadata"]["name"]
                        self._kube.patch_workload(
                            namespace=namespace,
                            plural=plural,
                            name=name,
                            patch=rollout.restart_patch(secret_name, serial),
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
                leaf=contents.leaf,
                issuer_fingerprint=issuer_fingerprint,
                spec_fingerprint=model.issuance_fingerprint(spec),
                revision=_revision(body.get("status"), contents),
                authority=material.name,
                renewal_request=contents.annotations.get(tls_secret.RENEWAL_REQUEST_ANNOTATION),
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
        self._event(
            body,
            "Normal",
            "Repaired",
            f"restored labels and annotations of Secret {spec.secret_name}",
        )

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
            "notBefore": conditions.format_time(leaf.not_valid_before_utc),
            "notAfter": conditions.format_time(leaf.not_valid_after_utc),
            "renewalTime": conditions.format_time(renewal_at),
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
    ) -> Outcome:
        desired = {
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
        if not _status_changed(status, desired):
            return Outcome(status=None, next_check=retry)
        metrics.certificate_not_ready(
            body["metadata"]["namespace"], body["metadata"]["name"], reason
        )
        self._event(body, "Warning", reason, message)
        return Outcome(status=desired, next_check=retry)

    def _failed(
        self, body: Mapping[str, Any], status: Mapping[str, Any], message: str, now: datetime
    ) -> Outcome:
        """Issuance failed: keep Ready as it was (the old certificate may still be valid)."""
        attempts = int(status.get("failedIssuanceAttempts") or 0) + 1
        current_ready = conditions.find_condition(status.get("conditions"), conditions.READY)
        desired_conditions = [
            conditions.Condition(conditions.ISSUING, False, "IssuanceFailed", message)
        ]
        if current_ready is None:
            desired_conditions.append(
                conditions.Condition(conditions.READY, False, "IssuanceFailed", message)
            )
        desired = {
            "conditions": conditions.merge_conditions(
                status.get("conditions"),
                desired_conditions,
                generation=body["metadata"].get("generation"),
                now=now,
            ),
            "lastFailureTime": conditions.format_time(now),
            "failedIssuanceAttempts": attempts,
        }
        metrics.FAILURES.labels("IssuanceFailed").inc()
        self._event(body, "Warning", "IssuanceFailed", message)
        logger.warning(
            "%s/%s: issuance failed (attempt %d): %s",
            body["metadata"]["namespace"],
            body["metadata"]["name"],
            attempts,
            message,
        )
        return Outcome(status=desired, next_check=now + retry_delay(attempts))

    def _event(self, body: Mapping[str, Any], event_type: str, reason: str, message: str) -> None:
        # An event that cannot be posted must not undo an issuance that succeeded.
        try:
            self._kube.post_event(
                involved=body,
                event_type=event_type,
                reason=reason,
                message=message,
                now=conditions.format_time(self._clock()),
                component=self._config.component,
            )
        except ApiError as error:
            logger.warning("could not post event %s: %s", reason, error)
