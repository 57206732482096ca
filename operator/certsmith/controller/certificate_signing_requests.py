"""Sign the approved Kubernetes CertificateSigningRequests of certsmith's signers
(`certsmith.dev/<authority>`): gather, decide with enrolment.signing_requests, then write.
Runs only in the Lease holder.

A CSR is looked at when its watch event says it is approved and not answered (a term's
first listing brings those approved while no replica led) and, while its authority is not
loaded or the apiserver did not answer, again by the scheduler. Other signers' CSRs are
never handed to it (the watch filter), nor unapproved, denied, failed or signed ones.

A CSR is answered once: every write is a PUT of the status subresource on the
resourceVersion it was decided on, so one changed meanwhile (approved again, answered by an
earlier write whose answer was lost) is read again and decided anew, and kube-apiserver
never lets a certificate once set be replaced. One deleted while it is signed is forgotten.

Before a certificate is written, the latest notAfter signed under its root is recorded on
that root's Secret (authorities.csr_bounds): a root rotation keeps the old root trusted
until every certificate signed under it has expired.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from certsmith import metrics
from certsmith.authorities import store
from certsmith.authorities.authority import AuthorityMaterial
from certsmith.config import Config
from certsmith.controller.root_bounds import RootBounds
from certsmith.enrolment import signing_requests
from certsmith.enrolment.signing_requests import Refusal, Stage
from certsmith.kube import ApiError, Kube
from certsmith.pki import inspect
from certsmith.scheduler import Scheduler

logger = logging.getLogger(__name__)

CERTIFICATE_SIGNING_REQUEST = "CertificateSigningRequest"
"""The scheduler key kind of a CSR to look at again: (CERTIFICATE_SIGNING_REQUEST, "", name)."""
RETRY_FIRST = timedelta(seconds=1)
RETRY_MAX = timedelta(seconds=30)
"""Retries after an apiserver error double from RETRY_FIRST up to RETRY_MAX (at once
RETRY_MAX when refused by RBAC: a person must act)."""
NOT_LOADED_RETRY = timedelta(seconds=1)
"""An authority that exists but is not loaded yet (a new term loads them all at once)."""
NOT_READY_RETRY = timedelta(seconds=30)
"""An authority that cannot sign (its Ready condition says why) is asked again this often."""
CONFLICT_ATTEMPTS = 3
"""Reads of a CSR that changed while it was decided, before the scheduler takes over."""


class CertificateSigningRequestSigner:
    """Signs for every loaded CertificateAuthority; thread-safe, one CSR at a time."""

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
        self._locks: dict[str, threading.Lock] = {}
        self._attempts: dict[str, int] = {}
        self._waiting: dict[str, str] = {}
        """Why each CSR waits for its authority, as last logged (said once, not every look)."""
        self._bounds = RootBounds(
            lambda owner, root, moment: store.record_csr_bound(
                kube, config, owner, root=root, not_after=moment
            )
        )

    def seen(self, body: Mapping[str, Any]) -> None:
        """A watch event of a certsmith CSR: sign (or fail) it if it is approved and not
        answered; an apiserver error schedules it again."""
        name = body["metadata"]["name"]
        with self._lock(name):
            try:
                self._decide(body, attempts=CONFLICT_ATTEMPTS)
            except ApiError as error:
                self._retry(name, error)

    def sign_by_name(self, name: str) -> None:
        """The scheduler's path: read the CSR fresh and decide it unless answered or gone."""
        try:
            body = self._kube.get_certificate_signing_request(name=name)
        except ApiError as error:
            self._retry(name, error)
            return
        if body is None:
            self.forget(name)
            return
        self.seen(body)

    def start_term(self) -> None:
        """A new leadership term: another replica may have recorded bounds, and answered or
        retried CSRs, since."""
        self._bounds.forget()
        with self._guard:
            self._attempts.clear()
            self._waiting.clear()

    def forget(self, name: str) -> None:
        """The CSR is gone or answered: nothing is scheduled or kept for it."""
        self._scheduler.cancel((CERTIFICATE_SIGNING_REQUEST, "", name))
        with self._guard:
            self._attempts.pop(name, None)
            self._waiting.pop(name, None)
            self._locks.pop(name, None)

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def _retry(self, name: str, error: ApiError) -> None:
        with self._guard:
            attempt = self._attempts.get(name, 0)
            self._attempts[name] = attempt + 1
        refused = error.status == 403
        delay = RETRY_MAX if refused else min(RETRY_FIRST * 2**attempt, RETRY_MAX)
        if attempt == 0 or refused:
            logger.warning("CertificateSigningRequest %s: %s; retrying", name, error)
        self._scheduler.schedule((CERTIFICATE_SIGNING_REQUEST, "", name), self._clock() + delay)

    # --- one CSR -----------------------------------------------------------------------

    def _decide(self, body: Mapping[str, Any], *, attempts: int) -> None:
        name = body["metadata"]["name"]
        authority_name = signing_requests.authority_of(body)
        if authority_name is None:
            return  # another signer's: never touched
        stage = signing_requests.stage(body)
        if stage != Stage.SIGN:
            if stage == Stage.DONE:
                self.forget(name)
            return  # not approved: Kubernetes' approvers decide, the next event brings it
        authority = self._authority(body, authority_name, attempts)
        if authority is None:
            return
        account = signing_requests.service_account((body.get("spec") or {}).get("username"))
        requester = signing_requests.RequesterObjects(namespace=None, service_account=None)
        if account is not None:
            # Read now, not from a cache: a namespace or ServiceAccount deleted a moment
            # ago must not be certified.
            requester = signing_requests.RequesterObjects(
                namespace=self._kube.get_namespace(name=account.namespace),
                service_account=self._kube.get_service_account(
                    namespace=account.namespace, name=account.name
                ),
            )
        checked = signing_requests.check(
            body,
            operator_namespace=self._config.namespace,
            trust_domain=self._config.trust_domain,
            authority=authority,
            namespace_labels={} if account is None else self._namespace_labels(account.namespace),
            requester=requester,
        )
        if isinstance(checked, Refusal):
            self._fail(body, checked, attempts)
            return
        try:
            signed = signing_requests.sign(checked, authority=authority, now=self._clock())
        except ValueError as error:  # the key or names cryptography cannot sign
            failed = Refusal(signing_requests.SIGNING_FAILED, f"signing failed: {error}")
            self._fail(body, failed, attempts)
            return
        # Before the certificate leaves: a crash after this costs a later end of a root
        # rotation at most; after the write it could strand a valid certificate.
        self._bounds.cover(
            authority,
            inspect.fingerprint_sha256(authority.root.certificate),
            signed.leaf.not_valid_after_utc,
        )
        status = {**(body.get("status") or {}), **signed.status}
        if self._write(body, status, signing_requests.ISSUED, attempts):
            logger.info(
                "CertificateSigningRequest %s for %s/%s: %s",
                name,
                checked.requester.namespace,
                checked.requester.name,
                signing_requests.issued_message(authority.name, signed.leaf),
            )

    def _authority(
        self, body: Mapping[str, Any], name: str, attempts: int
    ) -> AuthorityMaterial | None:
        """The loaded authority the CSR's signer names; None once the CSR failed (no such
        authority) or was postponed (not loaded, not ready)."""
        material = self._registry.get(name)
        if material is not None:
            return material
        problem = self._registry.why_unavailable(name, self._kube)
        csr_name = body["metadata"]["name"]
        key = (CERTIFICATE_SIGNING_REQUEST, "", csr_name)
        if problem == store.does_not_exist(name):
            # Failed is final, and the registry remembers an absence seen earlier: an
            # authority created since must not fail the CSR. Read it now.
            if self._kube.get_authority(name=name) is None:
                self._fail(body, signing_requests.unknown_authority(name), attempts)
            else:
                self._scheduler.schedule(key, self._clock() + NOT_LOADED_RETRY)
        else:
            loaded_soon = self._registry.problem(name) is None
            delay = NOT_LOADED_RETRY if loaded_soon else NOT_READY_RETRY
            with self._guard:
                told = self._waiting.get(csr_name) == problem
                self._waiting[csr_name] = problem
            if not told:
                logger.info("CertificateSigningRequest %s waits: %s", csr_name, problem)
            self._scheduler.schedule(key, self._clock() + delay)
        return None

    def _fail(self, body: Mapping[str, Any], refusal: Refusal, attempts: int) -> None:
        current = (body.get("status") or {}).get("conditions")
        status = {
            **(body.get("status") or {}),
            **signing_requests.failed_status(current, refusal, self._clock()),
        }
        if self._write(body, status, refusal.reason, attempts):
            logger.warning(
                "CertificateSigningRequest %s failed (%s): %s",
                body["metadata"]["name"],
                refusal.reason,
                refusal.message,
            )

    def _write(
        self, body: Mapping[str, Any], status: Mapping[str, Any], outcome: str, attempts: int
    ) -> bool:
        """Write `status` on the resourceVersion it was decided on; True when written. A CSR
        changed meanwhile is read again and decided anew (False); one gone is forgotten."""
        name = body["metadata"]["name"]
        try:
            self._kube.replace_certificate_signing_request_status(body={**body, "status": status})
        except ApiError as error:
            if error.not_found:
                logger.info("CertificateSigningRequest %s was deleted before its answer", name)
                self.forget(name)
                return False
            if not error.conflict or attempts <= 1:
                raise
            fresh = self._kube.get_certificate_signing_request(name=name)
            if fresh is None:
                self.forget(name)
            else:
                self._decide(fresh, attempts=attempts - 1)
            return False
        self.forget(name)
        metrics.certificate_signing_request_answered(outcome)
        return True
