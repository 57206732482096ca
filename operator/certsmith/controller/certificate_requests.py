"""Decide and sign CertificateRequests (enrolment by CSR): gather, decide with enrolment/,
then write. Runs only in the Lease holder.

A request is looked at when its watch event comes (a term's first listing brings every
request, so one approved while no replica led, or just before a restart, is signed then),
while its authority cannot sign again every NOT_READY_RETRY by the scheduler, and once
issued again at its notAfter (Ready False, reason Expired) and whenever its authority's
trusted roots change (Ready False, reason RootRetired, once its root left them). Every
status write carries the resourceVersion it was decided on: a request is signed once,
never from a stale read (a refused write is read again and decided anew). Nothing is
written when the status would not change, so the watch event of certsmith's own write ends
there.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from certsmith import metrics
from certsmith.api import conditions, model, times
from certsmith.authorities import store
from certsmith.certificates import isolation
from certsmith.config import Config
from certsmith.enrolment import csr, decision
from certsmith.enrolment.decision import Stage
from certsmith.kube import ApiError, Kube
from certsmith.scheduler import Scheduler

logger = logging.getLogger(__name__)

CERTIFICATE_REQUEST = "CertificateRequest"
"""The scheduler key kind of a request waiting for its authority:
(CERTIFICATE_REQUEST, namespace, name)."""
NOT_READY_RETRY = timedelta(seconds=30)
"""A request whose authority cannot sign (missing, not ready) is looked at again this often."""
NOT_LOADED_RETRY = timedelta(seconds=2)
"""An authority that exists but is not loaded yet (a new term loads them all at once)."""
CONFLICT_ATTEMPTS = 3
"""Reads of a request that changed while it was decided, before the scheduler takes over."""

RequestKey = tuple[str, str]


class CertificateRequestSigner:
    """Decides and signs every CertificateRequest; thread-safe, one at a time per request."""

    def __init__(
        self,
        *,
        kube: Kube,
        config: Config,
        registry: store.AuthorityRegistry,
        namespace_labels: Callable[[str], Mapping[str, str]],
        scheduler: Scheduler,
        clock: Callable[[], datetime],
    ) -> None:
        self._kube = kube
        self._config = config
        self._registry = registry
        self._namespace_labels = namespace_labels
        self._scheduler = scheduler
        self._clock = clock
        self._guard = threading.Lock()
        self._locks: dict[RequestKey, threading.Lock] = {}

    def seen(self, body: Mapping[str, Any]) -> None:
        """A watch event of a request: decide it unless it is done. ApiError when the
        apiserver did not answer (scheduled again)."""
        metadata = body["metadata"]
        key = (metadata["namespace"], metadata["name"])
        try:
            with self._lock(key):
                self._decide(body, attempts=CONFLICT_ATTEMPTS)
        except ApiError as error:
            # Refused (403: RBAC, or the policy without `approve`/`sign` for certsmith): a
            # person must act, so not every few seconds; anything else may pass soon.
            delay = NOT_READY_RETRY if error.status == 403 else NOT_LOADED_RETRY
            logger.warning("CertificateRequest %s/%s: %s; retrying", *key, error)
            self._scheduler.schedule((CERTIFICATE_REQUEST, *key), self._clock() + delay)
        except Exception as error:
            # A fault of certsmith's own (the CSR's are InvalidRequest already): the request
            # must not stay without a status, nor be forgotten.
            logger.exception("CertificateRequest %s/%s could not be decided", *key)
            self._scheduler.schedule((CERTIFICATE_REQUEST, *key), self._clock() + NOT_READY_RETRY)
            self._report_failure(body, error)

    def _report_failure(self, body: Mapping[str, Any], error: Exception) -> None:
        """Ready False, reason DecisionFailed, naming the error; best effort (logged)."""
        message = (
            f"certsmith could not decide this request ({type(error).__name__}: {error}); "
            f"it tries again every {int(NOT_READY_RETRY.total_seconds())} s"
        )
        try:
            self._not_ready(body, decision.DECISION_FAILED, message, "Warning", attempts=1)
        except (ApiError, OSError) as write_error:
            logger.warning("CertificateRequest %s/%s: %s", *_key(body), write_error)

    def decide_by_name(self, namespace: str, name: str) -> None:
        """The scheduler's path: read the request fresh and decide it unless done or gone."""
        body = self._kube.get_certificate_request(namespace=namespace, name=name)
        if body is None:
            self.forget(namespace, name)
            return
        self.seen(body)

    def forget(self, namespace: str, name: str) -> None:
        """The request is gone or done: nothing is scheduled or kept for it."""
        self._scheduler.cancel((CERTIFICATE_REQUEST, namespace, name))
        with self._guard:
            self._locks.pop((namespace, name), None)

    def _lock(self, key: RequestKey) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    # --- one request -------------------------------------------------------------------

    def _decide(self, body: Mapping[str, Any], *, attempts: int) -> None:
        metadata, status = body["metadata"], body.get("status") or {}
        namespace, name = metadata["namespace"], metadata["name"]
        stage = decision.stage(status)
        if stage is Stage.DONE:
            self._watch_issued(body, attempts)
            return
        if stage is Stage.DENIED:
            denied = conditions.find_condition(status.get("conditions"), decision.DENIED) or {}
            message = f"denied: {denied.get('message') or denied.get('reason') or 'no reason'}"
            self._not_ready(body, decision.DENIED, message, "Warning", attempts)
            return
        refusal = isolation.operator_namespace_refusal(namespace, self._config.namespace)
        if refusal is not None:
            self._not_ready(body, decision.POLICY_DENIED, refusal, "Warning", attempts)
            return
        try:
            parsed = csr.parse_request(body.get("spec") or {})
        except model.InvalidSpec as invalid:
            self._not_ready(body, decision.INVALID_REQUEST, str(invalid), "Warning", attempts)
            return
        authority = self._registry.get(parsed.certificate.issuer_name)
        if authority is None:
            self._wait_for_authority(body, parsed.certificate.issuer_name, attempts)
            return
        violations = decision.names_needing_approval(
            parsed,
            namespace=namespace,
            namespace_labels=self._namespace_labels(namespace),
            grants=authority.grants,
            trust_domain=self._config.trust_domain,
        )
        if stage is Stage.NEW and violations:
            message = decision.pending_message(
                violations, namespace=namespace, name=name, authority=authority.name
            )
            self._not_ready(body, decision.PENDING, message, "Normal", attempts)
            return
        if stage is Stage.APPROVED and decision.auto_approved(status) and violations:
            message = decision.policy_denied_message(violations)
            self._not_ready(body, decision.POLICY_DENIED, message, "Warning", attempts)
            return
        try:
            signed = decision.sign(
                parsed,
                authority=authority,
                current=status.get("conditions"),
                approve=stage is Stage.NEW,
                generation=metadata.get("generation"),
                now=self._clock(),
            )
        except ValueError as error:  # what cryptography cannot sign
            message = f"signing failed: {error}"
            self._not_ready(body, decision.INVALID_REQUEST, message, "Warning", attempts)
            return
        if self._write(body, signed.status, attempts):
            self._scheduler.schedule(
                (CERTIFICATE_REQUEST, namespace, name), signed.leaf.not_valid_after_utc
            )
            self._post(body, "Normal", decision.ISSUED, signed.status["conditions"])
            metrics.certificate_request_decided(decision.ISSUED)
            logger.info(
                "CertificateRequest %s/%s issued: serial %s until %s",
                namespace,
                name,
                signed.status["serialNumber"],
                signed.status["notAfter"],
            )

    def authority_roots_changed(self, authority: str) -> None:
        """`authority` trusts other roots now (loaded, or a rotation moved on): each issued
        request of it is judged again, so one whose root was retired says so (a failed list
        is logged: the next start judges them)."""
        try:
            listed = self._kube.list_certificate_requests()
        except ApiError as error:
            # The authority's step is done; its requests are judged again at the next start.
            logger.warning("CertificateRequests of %s not judged again: %s", authority, error)
            return
        for body in listed:
            if decision.issued_until(body.get("status")) is not None and (
                _issuer(body) == authority
            ):
                self.seen(body)

    def _watch_issued(self, body: Mapping[str, Any], attempts: int) -> None:
        """A done request: an issued one gets Ready False, reason RootRetired, once its
        authority no longer trusts the root its certificate chains to, and is looked at
        again at its notAfter (scheduled at each start too, from the term's listing), then
        Ready False, reason Expired; any other is forgotten."""
        namespace, name = _key(body)
        status = body.get("status") or {}
        not_after = decision.issued_until(status)
        authority = self._registry.get(_issuer(body))
        if not_after is None:
            self.forget(namespace, name)
        elif authority is not None and not decision.chains_to(
            status.get("certificate") or "", authority.trusted_roots
        ):
            message = decision.root_retired_message(authority.name)
            self._not_ready(body, decision.ROOT_RETIRED, message, "Warning", attempts)
        elif self._clock() < not_after:
            self._scheduler.schedule((CERTIFICATE_REQUEST, namespace, name), not_after)
        else:
            message = decision.expired_message(not_after)
            self._not_ready(body, decision.EXPIRED, message, "Warning", attempts)

    def _wait_for_authority(self, body: Mapping[str, Any], authority: str, attempts: int) -> None:
        """Ready False (IssuerNotReady) naming why, and a look again later."""
        metadata = body["metadata"]
        why = self._registry.why_unavailable(authority, self._kube)
        loaded_soon = self._registry.problem(authority) is None
        delay = NOT_LOADED_RETRY if loaded_soon else NOT_READY_RETRY
        self._scheduler.schedule(
            (CERTIFICATE_REQUEST, metadata["namespace"], metadata["name"]), self._clock() + delay
        )
        has_ready = conditions.find_condition(
            (body.get("status") or {}).get("conditions"), conditions.READY
        )
        if loaded_soon and has_ready is not None:
            # A new term loads its authorities: what the request says (Pending) stays, and
            # is not written and announced again seconds later.
            return
        self._not_ready(body, decision.ISSUER_NOT_READY, why, "Warning", attempts)

    def _not_ready(
        self, body: Mapping[str, Any], reason: str, message: str, event_type: str, attempts: int
    ) -> None:
        """Ready False with `reason` and `message`, written (with an event) only if that is
        not what the request says already."""
        current = (body.get("status") or {}).get("conditions")
        ready = conditions.find_condition(current, conditions.READY) or {}
        if ready.get("reason") == reason and ready.get("message") == message:
            return
        status = decision.not_ready_status(
            current,
            reason=reason,
            message=message,
            generation=body["metadata"].get("generation"),
            now=self._clock(),
        )
        if self._write(body, status, attempts):
            event_reason = "ApprovalPending" if reason == decision.PENDING else reason
            self._post(body, event_type, event_reason, status["conditions"])
            metrics.certificate_request_decided(reason)
            log = logger.info if event_type == "Normal" else logger.warning
            log("CertificateRequest %s/%s: %s: %s", *_key(body), reason, message)

    def _write(self, body: Mapping[str, Any], status: Mapping[str, Any], attempts: int) -> bool:
        """Write `status` on the resourceVersion it was decided on; True when written. A
        request changed meanwhile is read again and decided anew (False); one gone is
        forgotten (False)."""
        namespace, name = _key(body)
        try:
            self._kube.patch_certificate_request_status(
                namespace=namespace,
                name=name,
                status=status,
                resource_version=body["metadata"]["resourceVersion"],
            )
        except ApiError as error:
            if error.not_found:
                self.forget(namespace, name)
                return False
            if not error.conflict or attempts <= 1:
                raise
            fresh = self._kube.get_certificate_request(namespace=namespace, name=name)
            if fresh is None:
                self.forget(namespace, name)
            else:
                self._decide(fresh, attempts=attempts - 1)
            return False
        return True

    def _post(
        self,
        body: Mapping[str, Any],
        event_type: str,
        reason: str,
        written: Sequence[Mapping[str, Any]],
    ) -> None:
        # An event that cannot be posted must not undo a decision that was written.
        ready = conditions.find_condition(written, conditions.READY) or {}
        try:
            self._kube.post_event(
                involved=body,
                event_type=event_type,
                reason=reason,
                message=str(ready.get("message") or reason),
                now=times.format_time(self._clock()),
                component=self._config.component,
            )
        except ApiError as error:
            logger.warning("could not post event %s: %s", reason, error)


def _issuer(body: Mapping[str, Any]) -> str:
    """spec.issuerRef.name (the CRD defaults it)."""
    issuer_ref = (body.get("spec") or {}).get("issuerRef") or {}
    return str(issuer_ref.get("name") or model.DEFAULT_ISSUER)


def _key(body: Mapping[str, Any]) -> RequestKey:
    return body["metadata"]["namespace"], body["metadata"]["name"]
