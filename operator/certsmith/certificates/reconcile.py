"""Reconcile one Certificate: gather → decide → apply, the folder's only I/O.

Gather: the Certificate as read (status.Observed), its signer, its namespace's labels,
its Secret. Decide: isolation, policies.decide, then the status (`status`) and what to
write (`issuance`), all pure. Apply: write the Secret (before the status, with the
resourceVersion it was judged on), post Events, set metrics.

Every path ends in an `Outcome`: the status to write (or None when nothing changed) and
when to look at the Certificate again. Callers write the status in the cheapest way they
have (kopf's own patch from a handler, a direct PATCH from the scheduler).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from certsmith import metrics
from certsmith.api import model, times
from certsmith.certificates import isolation, issuance, policies, status, tls_secret
from certsmith.certificates.policies import Action, Decision
from certsmith.certificates.signer import ReissuePacing, Signer
from certsmith.certificates.status import Outcome
from certsmith.config import Config
from certsmith.kube import ApiError, ClaimLapsed, Kube
from certsmith.pki import inspect, name_constraints
from certsmith.pods import rollout

__all__ = ["WRITE_CONFLICT_ATTEMPTS", "Outcome", "Reconciler", "Signers"]

logger = logging.getLogger(__name__)

# A write refused with 409 (someone wrote the Secret after it was read) is judged again on
# a fresh read this many times before it counts as a failed issuance.
WRITE_CONFLICT_ATTEMPTS = 3
NAME_CONSTRAINTS = "NameConstraints"
"""The reason of a Certificate refused for a name outside its authority's name constraints."""


class Signers(Protocol):
    """The loaded authorities by name (authorities.store.AuthorityRegistry)."""

    def get(self, name: str) -> Signer | None:
        """The authority `name` when it can sign now, else None."""
        ...

    def why_unavailable(self, name: str, kube: Kube) -> str:
        """Why `name` cannot sign (the message its Certificates show); may read the
        CertificateAuthority once through `kube` (kube.ApiError if that fails)."""
        ...


@dataclass(frozen=True)
class Admitted:
    """A Certificate that may be signed: its spec parsed, its signer loaded, its names
    allowed in its namespace."""

    spec: model.CertificateSpec
    signer: Signer


@dataclass(frozen=True)
class Refusal:
    """A Certificate that must not be signed: the reason and message its status shows."""

    reason: str
    message: str


@dataclass(frozen=True)
class Unsignable:
    """A Certificate whose authority `issuer` cannot sign now."""

    issuer: str


CLAIM_RECHECK = timedelta(seconds=2)
"""When a Certificate not written for a lapsed claim is looked at again (the Lease's renew
period): a renewal that came late, under load, keeps the term and its work."""


class Reconciler:
    """Reconciles Certificates, each under its own lock, different ones in parallel threads;
    remembers its own Secret writes and which Certificates wait on which Secret.

    `clock` gives aware UTC datetimes; `namespace_labels` a namespace's labels (for grants);
    `authorities` and `pacer` are the authorities' registry and re-issue pacer;
    `seal_key` the key of status seals (certificates.seal), None until loaded.
    `kube` is the controller's fenced client (Kube.fenced): a write after this replica's
    claim on the Lease lapsed raises ClaimLapsed, and the Certificate is looked at again
    CLAIM_RECHECK later (by the next leader, or here after a late renewal).
    """

    def __init__(
        self,
        *,
        kube: Kube,
        config: Config,
        authorities: Signers,
        clock: Callable[[], datetime],
        namespace_labels: Callable[[str], Mapping[str, str]],
        pacer: ReissuePacing,
        seal_key: Callable[[], bytes | None],
    ) -> None:
        self._seal_key = seal_key
        self._namespace_labels = namespace_labels
        self._pacer = pacer
        self._kube = kube
        self._config = config
        self._authorities = authorities
        self._clock = clock
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._written: dict[tuple[str, str], str] = {}
        # Secret writes under way, versions of those Secrets seen meanwhile (the watch can
        # report a write before its answer arrives), and the Certificates whose Secret was
        # written by someone else meanwhile.
        self._writing: dict[tuple[str, str], int] = {}
        self._seen_while_writing: dict[tuple[str, str], set[str]] = {}
        self._changed_meanwhile: set[tuple[str, str]] = set()
        # (namespace, Secret name) → the Certificates in SecretConflict over it.
        self._conflicts: dict[tuple[str, str], set[tuple[str, str]]] = {}
        # (namespace, name, requested-at) of revocations a re-issue waited long for: warned once.
        self._warned_held_back: set[tuple[str, str, str]] = set()

    # --- entry points ------------------------------------------------------------------

    def reconcile(self, body: Mapping[str, Any], *, secret_version: str | None = None) -> Outcome:
        """Bring one Certificate's Secret in line with its spec; never raises for bad input
        (kube.ApiError when the apiserver cannot say why its authority cannot sign).

        `secret_version`: the resourceVersion its Secret has now, when the caller knows it
        without a read (from a watch's list); a Certificate whose status was judged on that
        very Secret and needs nothing before its renewal is then not read again
        (status.resumed): a restart with 10,000 Certificates makes no 10,000 GETs."""
        metadata = body["metadata"]
        key = (metadata["namespace"], metadata["name"])
        with self._lock_for(key):
            try:
                outcome = self._reconcile(body, secret_version)
            except ClaimLapsed:
                # Nothing written. Looked at again soon: by the next leader if this term
                # ends, else here once a late renewal restored the claim.
                logger.info("%s/%s: not written, this replica's claim on the Lease lapsed", *key)
                return Outcome(status=None, next_check=self._clock() + CLAIM_RECHECK)
            with self._locks_guard:
                again = key in self._changed_meanwhile
                self._changed_meanwhile.discard(key)
        if again:  # its Secret changed by someone else while certsmith wrote it
            return dataclasses.replace(outcome, next_check=self._clock())
        return outcome

    def resume_listed(
        self, body: Mapping[str, Any], *, secret_version: str | None
    ) -> Outcome | None:
        """What `reconcile` would answer for a Certificate from a list at a term's start,
        when it is admitted and its status vouches for its Secret at `secret_version` (the
        Secret's version in the same term's list) and needs nothing before its renewal
        (status.resumed); None when it must be reconciled. No API call (the namespace's
        labels aside, when not cached) and no lock: so 10,000 Certificates are judged
        and scheduled in one pass, before any watch delivers them."""
        observed = status.Observed.from_body(body)
        admitted = self._admission(body, observed)
        if not isinstance(admitted, Admitted):
            return None
        return self._resumed(observed, admitted, secret_version, self._clock())

    def _resumed(
        self,
        observed: status.Observed,
        admitted: Admitted,
        secret_version: str | None,
        now: datetime,
    ) -> Outcome | None:
        """status.resumed's outcome, its metrics set; None when it must be converged."""
        unchanged = status.resumed(
            observed, secret_version, now, self._seal_key(), revoked=admitted.signer.revoked
        )
        if unchanged is None:
            return None
        metrics.certificate_ready(
            observed.namespace, observed.name, unchanged.not_after, unchanged.renewal_time
        )
        return unchanged.outcome

    def secret_changed(self, namespace: str, secret_name: str, resource_version: str) -> bool:
        """A watch event shows the Secret at `resource_version`: whether its Certificate
        must be judged again. Not for the echo of certsmith's own write, nor while a write
        of it is under way (its answer may come after the event): the write's end then
        tells whether a version other than its own was seen."""
        key = (namespace, secret_name)
        with self._locks_guard:
            if self._written.get(key) == resource_version:
                return False
            if self._writing.get(key):
                self._seen_while_writing.setdefault(key, set()).add(resource_version)
                return False
        return True

    @contextlib.contextmanager
    def _writing_secret(
        self, secret: tuple[str, str], certificate: tuple[str, str]
    ) -> Iterator[list[str]]:
        """Around one write of `secret`; the caller appends the version the write returned
        to the list yielded (none: the write failed, and whatever was seen counts)."""
        written: list[str] = []
        with self._locks_guard:
            self._writing[secret] = self._writing.get(secret, 0) + 1
        try:
            yield written
        finally:
            with self._locks_guard:
                left = self._writing.pop(secret, 1) - 1
                if left:
                    self._writing[secret] = left
                if written:
                    self._written[secret] = written[0]
                seen = self._seen_while_writing.pop(secret, set()) - set(written)
                if seen:
                    self._changed_meanwhile.add(certificate)

    def forget(self, namespace: str, name: str) -> None:
        """Drop what is kept about a deleted Certificate (metrics, conflicts, its lock)."""
        metrics.certificate_forgotten(namespace, name)
        self._conflict_on(namespace, None, name)
        with self._locks_guard:
            self._locks.pop((namespace, name), None)
            self._changed_meanwhile.discard((namespace, name))

    def forget_secret(self, namespace: str, secret_name: str) -> None:
        """The Secret was deleted: drop the version of certsmith's last write to it."""
        with self._locks_guard:
            self._written.pop((namespace, secret_name), None)

    def waiting_on_secret(self, namespace: str, secret_name: str) -> list[str]:
        """Certificates in SecretConflict over this Secret: look again when it changes."""
        with self._locks_guard:
            return sorted(n for _, n in self._conflicts.get((namespace, secret_name), ()))

    def _lock_for(self, key: tuple[str, str]) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    def _conflict_on(self, namespace: str, secret_name: str | None, name: str) -> None:
        """Record which Secret a Certificate waits for (None: none), so its events wake it."""
        with self._locks_guard:
            for key in list(self._conflicts):
                self._conflicts[key].discard((namespace, name))
                if not self._conflicts[key]:
                    del self._conflicts[key]
            if secret_name is not None:
                self._conflicts.setdefault((namespace, secret_name), set()).add((namespace, name))

    # --- gather → decide → apply ---------------------------------------------------------

    def _reconcile(self, body: Mapping[str, Any], secret_version: str | None) -> Outcome:
        now = self._clock()
        observed = status.Observed.from_body(body)
        admitted = self._admit(body, observed, now)
        if isinstance(admitted, Outcome):
            return admitted
        resumed = self._resumed(observed, admitted, secret_version, now)
        if resumed is not None:
            return resumed
        return self._converge(body, observed, admitted, now)

    def _admit(
        self, body: Mapping[str, Any], observed: status.Observed, now: datetime
    ) -> Admitted | Outcome:
        """Whether the Certificate may be signed at all, before any Secret is read."""
        judged = self._admission(body, observed)
        if isinstance(judged, Admitted):
            return judged
        if isinstance(judged, Unsignable):
            message = self._authorities.why_unavailable(judged.issuer, self._kube)
            outcome = status.issuer_not_ready(observed, message, now, self._seal_key())
            return self._not_ready(body, observed, "IssuerNotReady", message, outcome)
        return self._refuse(body, observed, judged.reason, judged.message, now)

    def _admission(
        self, body: Mapping[str, Any], observed: status.Observed
    ) -> Admitted | Refusal | Unsignable:
        """`_admit` without I/O."""
        refusal = isolation.operator_namespace_refusal(observed.namespace, self._config.namespace)
        if refusal is not None:
            # Before the spec and any Secret: nothing of this Certificate is ever written.
            return Refusal("PolicyDenied", refusal)
        try:
            spec = model.parse_certificate_spec(body.get("spec") or {})
        except model.InvalidSpec as invalid:
            return Refusal("InvalidSpec", str(invalid))
        signer = self._authorities.get(spec.issuer_name)
        if signer is None:
            return Unsignable(spec.issuer_name)
        violations = isolation.evaluate(
            namespace=observed.namespace,
            namespace_labels=self._namespace_labels(observed.namespace),
            spec=spec,
            grants=signer.grants,
            trust_domain=self._config.trust_domain,
        )
        if violations:
            # Checked again at signing: a Certificate that slipped past the webhook is never signed.
            return Refusal("PolicyDenied", "; ".join(str(v) for v in violations))
        outside = name_constraints.violations(
            signer.name_constraints, name_constraints.spec_names(spec), authority=signer.name
        )
        if outside:
            # Verifiers would refuse such a leaf under this intermediate: never sign it.
            return Refusal(NAME_CONSTRAINTS, "; ".join(outside))
        return Admitted(spec=spec, signer=signer)

    def _converge(
        self, body: Mapping[str, Any], observed: status.Observed, admitted: Admitted, now: datetime
    ) -> Outcome:
        """Judge the Secret and act on it; a write refused with 409 is judged again."""
        # A Certificate never issued most likely has no Secret yet: try creating it without
        # reading first; a conflict means one exists, and the full path runs on it.
        optimistic = observed.never_issued
        judged: policies.Input | None = None
        write_conflicts = 0
        try:
            while True:
                judged = None
                judged = self._gather(observed, admitted, now, read_secret=not optimistic)
                try:
                    return self._act(body, observed, admitted, judged, now)
                except ApiError as error:
                    # 409: the Secret exists after all (optimistic create) or was written
                    # since it was read (resourceVersion precondition): judge it afresh.
                    if not error.conflict or write_conflicts >= WRITE_CONFLICT_ATTEMPTS:
                        raise
                    write_conflicts += 1
                    optimistic = False
        except ClaimLapsed:
            raise
        except ApiError as error:
            if error.namespace_closed:
                # Its namespace is being deleted or gone, the Certificate with it: no Secret
                # and no Event can be written there. Not a failure (no retry, no counter);
                # the status says why, and it is sealed, as every status certsmith leaves.
                logger.info(
                    "%s/%s: not issued, its namespace is being deleted",
                    observed.namespace,
                    observed.name,
                )
                return status.not_ready(
                    observed,
                    status.NAMESPACE_DELETING,
                    "not issued: its namespace is being deleted",
                    now,
                    retry=None,
                    seal_key=self._seal_key(),
                )
            message = f"the apiserver answered {error}"
            # Judged on a Secret read, not on the guess that none exists.
            return self._failed(body, observed, message, now, None if optimistic else judged)

    def _gather(
        self, observed: status.Observed, admitted: Admitted, now: datetime, *, read_secret: bool
    ) -> policies.Input:
        """What the decision is made on: the Secret (when read) and its claimant."""
        spec = admitted.spec
        secret_body = (
            self._kube.get_secret(namespace=observed.namespace, name=spec.secret_name)
            if read_secret
            else None
        )
        contents = None if secret_body is None else tls_secret.parse_secret(secret_body)
        return policies.Input(
            certificate_name=observed.name,
            namespace=observed.namespace,
            spec=spec,
            secret=contents,
            authority=admitted.signer.view(),
            now=now,
            renewal_request=observed.renewal_request,
            claimant_exists=self._claimant_exists(observed, contents),
            judged_serial=status.sealed_serial(observed, self._seal_key()),
        )

    def _claimant_exists(
        self, observed: status.Observed, contents: tls_secret.SecretContents | None
    ) -> bool:
        """Whether the other Certificate a Secret was issued for still exists (read only then)."""
        claim = None if contents is None else tls_secret.foreign_claim(contents, observed.name)
        if claim is None or claim.other_certificate is None:
            return True
        found = self._kube.get_certificate(
            namespace=observed.namespace, name=claim.other_certificate
        )
        return found is not None

    def _act(
        self,
        body: Mapping[str, Any],
        observed: status.Observed,
        admitted: Admitted,
        judged: policies.Input,
        now: datetime,
    ) -> Outcome:
        """Carry out what policies decide on `judged`; kube.ApiError from a write."""
        spec, signer, secret = admitted.spec, admitted.signer, judged.secret
        decision = policies.decide(judged)
        if decision.action is Action.CONFLICT:
            self._conflict_on(observed.namespace, spec.secret_name, observed.name)
            outcome = status.secret_conflict(observed, decision, now, self._seal_key())
            return self._not_ready(body, observed, decision.reason, decision.message, outcome)
        self._conflict_on(observed.namespace, None, observed.name)
        if (
            secret is not None
            and secret.immutable
            and issuance.writes_data(decision, secret, signer)
        ):
            message = tls_secret.immutable_message(spec.secret_name)
            return self._failed(body, observed, message, now, judged, reason="SecretConflict")
        if decision.action is Action.ISSUE:
            return self._issue(body, observed, admitted, judged, decision, now)
        if decision.action is Action.REPAIR:
            held = policies.readable(judged)
            if isinstance(held, policies.Held):
                version = self._repair(body, observed, spec, held, signer)
                if version is not None:
                    # Status records the Secret as repaired (the certificate in it is the
                    # same): a restart then finds it unchanged and does not read it.
                    repaired = dataclasses.replace(held.secret, resource_version=version)
                    judged = dataclasses.replace(judged, secret=repaired)
        return self._settle(body, observed, admitted, judged, now)

    def _issue(
        self,
        body: Mapping[str, Any],
        observed: status.Observed,
        admitted: Admitted,
        judged: policies.Input,
        decision: Decision,
        now: datetime,
    ) -> Outcome:
        """Issue (paced during a root rotation), then check what was issued. Never for a
        Certificate being deleted (Ready=False, reason Deleting). Not while a revocation of
        the certificate held now is pending: it is revoked first (its authority's step then
        asks for the re-issue), however long that takes: a Warning event says so once it
        waited REVOCATION_WAIT."""
        if observed.deleting:
            # Deleted but held by a finalizer: a Secret issued now (its own deleted with it,
            # or by hand) would be left behind once the Certificate is gone. Without a
            # Secret, status no longer shows the certificate it held (EXPIRES, SERIAL).
            return status.not_ready(
                observed,
                status.DELETING,
                "not issued: the Certificate is being deleted (metadata.deletionTimestamp)",
                now,
                retry=None,
                seal_key=self._seal_key(),
                forget_certificate=judged.secret is None,
            )
        if observed.revocation_pending(now):
            self._held_back(body, observed, admitted.signer.name, now)
            return Outcome(status=None, next_check=now + observed.revocation_recheck(now))
        if decision.reason == policies.ROOT_ROTATION:
            # At most spec.rotation.reissueRate per second, whoever asked.
            moment = self._clock()
            key = (observed.namespace, observed.name)
            slot = self._pacer.slot(admitted.signer.name, key, now=moment)
            if slot > moment:
                return Outcome(status=None, next_check=slot)
        try:
            contents = self._write_issued(body, observed, admitted, judged.secret, decision, now)
        except (ValueError, TypeError) as error:
            # cryptography refusing what the spec asks (a name it cannot encode): a
            # condition and a Warning Event with backoff, never a silent handler retry.
            message = f"the certificate could not be built from the spec: {error}"
            return self._failed(body, observed, message, now, judged)
        issued = dataclasses.replace(judged, secret=contents)
        # What was just issued must pass every check, or each reconcile would issue again:
        # report it and back off instead of looping.
        again = policies.decide(issued)
        if again.action is Action.ISSUE:
            return self._failed(body, observed, status.reissued_at_once(again), now, issued)
        return self._settle(body, observed, admitted, issued, now)

    def _write_issued(
        self,
        body: Mapping[str, Any],
        observed: status.Observed,
        admitted: Admitted,
        previous: tls_secret.SecretContents | None,
        decision: Decision,
        now: datetime,
    ) -> tls_secret.SecretContents:
        """Sign a new certificate and write it into the Secret, then tell pods and people."""
        spec = admitted.spec
        material = issuance.issued_material(observed, spec, previous, admitted.signer, now)
        stored = self._store_issued(observed, spec, previous, material)
        metrics.issued(
            decision.reason,
            (
                self._clock() - issuance.trigger_time(observed, spec, previous, decision, now)
            ).total_seconds(),
        )
        serial = inspect.serial_hex(material.leaf)
        if material.revision > 1:
            # An earlier leaf exists in pods: from this Secret, or from one that was deleted
            # or named before (injected pods follow the Certificate, env never refreshes).
            self._restart_workloads(observed.namespace, observed.name, spec.secret_name, serial)
        self._post(body, issuance.issued_event(previous, material, decision))
        logger.info(
            "%s/%s: issued serial %s (%s)",
            observed.namespace,
            observed.name,
            serial,
            decision.reason,
        )
        return tls_secret.parse_secret(stored)

    def _store_issued(
        self,
        observed: status.Observed,
        spec: model.CertificateSpec,
        previous: tls_secret.SecretContents | None,
        material: tls_secret.IssuedMaterial,
    ) -> dict[str, Any]:
        """Create the Secret, or merge-patch what certsmith owns into the one judged: what
        others added stays, and its resourceVersion makes a concurrent write a 409.
        ClaimLapsed (the fenced client) when this replica may no longer write."""
        secret = (observed.namespace, spec.secret_name)
        with self._writing_secret(secret, (observed.namespace, observed.name)) as written:
            if previous is None:
                stored = self._kube.create_secret(
                    body=tls_secret.build_secret(
                        name=spec.secret_name,
                        namespace=observed.namespace,
                        certificate_name=observed.name,
                        labels_template=spec.secret_labels,
                        annotations_template=spec.secret_annotations,
                        material=material,
                    )
                )
            else:
                patch = tls_secret.issue_patch(
                    previous,
                    certificate_name=observed.name,
                    labels_template=spec.secret_labels,
                    annotations_template=spec.secret_annotations,
                    material=material,
                )
                stored = self._kube.patch_secret(
                    namespace=observed.namespace, name=spec.secret_name, patch=patch
                )
            written.append(str(stored["metadata"]["resourceVersion"]))
        return stored

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
        observed: status.Observed,
        spec: model.CertificateSpec,
        held: policies.Held,
        signer: Signer,
    ) -> str | None:
        """Patch drifted labels, annotations and ca.crt; the certificate stays. The
        Secret's new resourceVersion, None when nothing had to be written."""
        patch = issuance.repair_patch(observed, spec, held, signer)
        if patch is None:
            return None
        secret = (observed.namespace, spec.secret_name)
        with self._writing_secret(secret, (observed.namespace, observed.name)) as written:
            stored = self._kube.patch_secret(
                namespace=observed.namespace, name=spec.secret_name, patch=patch
            )
            version = str(stored["metadata"]["resourceVersion"])
            written.append(version)
        event = issuance.repaired_event(spec.secret_name, patch)
        if event is None:
            logger.info("%s/%s: ca.crt updated", observed.namespace, observed.name)
        else:
            self._post(body, event)
        return version

    # --- outcomes ------------------------------------------------------------------------

    def _settle(
        self,
        body: Mapping[str, Any],
        observed: status.Observed,
        admitted: Admitted,
        final: policies.Input,
        now: datetime,
    ) -> Outcome:
        """Ready on the Secret as it now is (`final`). Judged (or just written) without an
        ISSUE decision, it holds a readable certificate; were it not so, that is reported
        as a failed issuance rather than Ready; one its authority revoked is Ready=False
        (Revoked)."""
        held = policies.readable(final)
        if isinstance(held, Decision):
            return self._failed(body, observed, f"{held.reason}: {held.message}", now, final)
        revoked_by = (
            admitted.signer.name if held.leaf.serial_number in admitted.signer.revoked else None
        )
        ready = status.ready(
            observed, admitted.spec, held, now, self._seal_key(), revoked_by=revoked_by
        )
        metrics.certificate_ready(
            observed.namespace, observed.name, held.leaf.not_valid_after_utc, ready.renewal_time
        )
        return ready.outcome

    def _refuse(
        self,
        body: Mapping[str, Any],
        observed: status.Observed,
        reason: str,
        message: str,
        now: datetime,
    ) -> Outcome:
        """Not Ready until the Certificate (or its namespace) changes: no retry."""
        outcome = status.not_ready(
            observed, reason, message, now, retry=None, seal_key=self._seal_key()
        )
        return self._not_ready(body, observed, reason, message, outcome)

    def _not_ready(
        self,
        body: Mapping[str, Any],
        observed: status.Observed,
        reason: str,
        message: str,
        outcome: Outcome,
    ) -> Outcome:
        """The gauge follows every judgement (also after a restart); the failure counter and
        the Warning Event only a change of status."""
        metrics.certificate_not_ready(observed.namespace, observed.name)
        if outcome.status is not None:
            metrics.FAILURES.labels(reason).inc()
            self._post(body, issuance.Event("Warning", reason, message))
        return outcome

    def _failed(
        self,
        body: Mapping[str, Any],
        observed: status.Observed,
        message: str,
        now: datetime,
        judged: policies.Input | None,
        *,
        reason: str = "IssuanceFailed",
    ) -> Outcome:
        """Issuance failed (see status.failed): metrics, a Warning Event, a log line."""
        jitter = random.uniform(0.9, 1.1)
        failure = status.failed(
            observed, reason, message, now, judged, seal_key=self._seal_key(), jitter=jitter
        )
        metrics.certificate_readiness(observed.namespace, observed.name, ready=failure.ready)
        metrics.FAILURES.labels(reason).inc()
        self._post(body, issuance.Event("Warning", reason, message))
        logger.warning(
            "%s/%s: issuance failed (attempt %d): %s",
            observed.namespace,
            observed.name,
            failure.attempts,
            message,
        )
        return failure.outcome

    def _held_back(
        self, body: Mapping[str, Any], observed: status.Observed, authority: str, now: datetime
    ) -> None:
        """Once per request, when a re-issue waited REVOCATION_WAIT for it: a Warning event
        naming what it waits for (the request is kept, never dropped)."""
        at = times.parse_time(observed.revocation_request)
        key = (observed.namespace, observed.name, str(observed.revocation_request))
        if at is None or now - at < status.REVOCATION_WAIT or key in self._warned_held_back:
            return
        self._warned_held_back.add(key)
        serial = observed.status.get("serialNumber")
        self._post(
            body,
            issuance.Event(
                "Warning",
                status.REVOCATION_PENDING,
                f"the revocation of serial {serial} asked at {observed.revocation_request} is "
                f"not recorded yet by CertificateAuthority {authority} (see its CRLPublished "
                "condition): the certificate is re-issued once it is",
            ),
        )

    def _post(self, body: Mapping[str, Any], event: issuance.Event) -> None:
        # An event that cannot be posted must not undo an issuance that succeeded.
        try:
            self._kube.post_event(
                involved=body,
                event_type=event.type,
                reason=event.reason,
                message=event.message,
                now=times.format_time(self._clock()),
                component=self._config.component,
            )
        except ApiError as error:
            logger.warning("could not post event %s: %s", event.reason, error)
