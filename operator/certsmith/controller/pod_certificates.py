"""Answer the PodCertificateRequests of certsmith's signers (`certsmith.dev/<authority>`):
gather, decide with podcerts/, then write. Runs only in the Lease holder.

A request is looked at when its watch event comes (a term's first listing brings those
created while no replica led) and, while it stays pending for a reason that may pass (the
apiserver not answering, its authority not loaded or not ready), again by the scheduler.
Other signers' requests are never looked at. A request is answered once: kube-apiserver
refuses any change to an Issued, Denied or Failed request, and a refused write is read
again before anything else is written, so a retry never hands out a second certificate.

Before a certificate is handed out, the refresh bound recorded on its root's Secret covers
its beginRefreshAt (authorities.pod_certificates): a root rotation waits on it, also after
the authority was deleted and created again.
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
from certsmith.kube import ApiError, Kube
from certsmith.pki import inspect
from certsmith.podcerts import requests, signing
from certsmith.podcerts.requests import PodCertificateRequest
from certsmith.scheduler import Scheduler

logger = logging.getLogger(__name__)

POD_CERTIFICATE_REQUEST = "PodCertificateRequest"
"""The scheduler key kind of a pending request: (POD_CERTIFICATE_REQUEST, namespace, name)."""
RETRY_FIRST = timedelta(seconds=1)
RETRY_MAX = timedelta(seconds=30)
"""Retries after an apiserver error double from RETRY_FIRST up to RETRY_MAX."""
NOT_LOADED_RETRY = timedelta(seconds=1)
"""An authority that exists but is not loaded yet (a new term loads them all at once)."""
NOT_READY_RETRY = timedelta(seconds=30)
"""An authority that cannot sign (its Ready condition says why) is asked again this often."""

RequestKey = tuple[str, str]


class PodCertificateSigner:
    """Signs for every loaded CertificateAuthority; thread-safe, one request at a time."""

    def __init__(
        self,
        *,
        kube: Kube,
        config: Config,
        version: str,
        registry: store.AuthorityRegistry,
        namespace_labels: Callable[[str], Mapping[str, str]],
        scheduler: Scheduler,
        clock: Callable[[], datetime],
    ) -> None:
        """`version`: the certificates.k8s.io version the cluster serves the requests in."""
        self._kube = kube
        self._config = config
        self._version = version
        self._registry = registry
        self._namespace_labels = namespace_labels
        self._scheduler = scheduler
        self._clock = clock
        self._guard = threading.Lock()
        self._locks: dict[RequestKey, threading.Lock] = {}
        self._attempts: dict[RequestKey, int] = {}
        self._waiting: dict[RequestKey, str] = {}
        # The authority each request waits on (not loaded, or not ready): asked again as
        # soon as it can sign, not at the next retry.
        self._waiting_on: dict[RequestKey, str] = {}
        self._bounds = RootBounds(
            lambda owner, root, moment: store.record_refresh_bound(
                kube, config, owner, root=root, refresh_at=moment
            )
        )
        registry.on_loaded(self._authority_loaded)

    @property
    def version(self) -> str:
        """The certificates.k8s.io version its requests are read and written in."""
        return self._version

    def start_term(self) -> None:
        """A new leadership term: another replica may have recorded bounds since."""
        self._bounds.forget()
        with self._guard:
            self._attempts.clear()
            self._waiting.clear()
            self._waiting_on.clear()

    def seen(self, body: Mapping[str, Any]) -> None:
        """A watch event of a certsmith request: answer it unless it is answered."""
        self._handle(body)

    def sign_by_name(self, namespace: str, name: str) -> None:
        """The scheduler's path: read the request fresh and answer it unless it is answered
        or gone; an apiserver error schedules it again."""
        key = (namespace, name)
        try:
            body = self._kube.get_pod_certificate_request(
                version=self._version, namespace=namespace, name=name
            )
        except ApiError as error:
            self._retry(key, error)
            return
        if body is None:
            self.forget(namespace, name)
            return
        self._handle(body)

    def forget(self, namespace: str, name: str) -> None:
        """The request is gone (or answered): nothing is scheduled or kept for it."""
        key = (namespace, name)
        self._scheduler.cancel((POD_CERTIFICATE_REQUEST, *key))
        with self._guard:
            self._attempts.pop(key, None)
            self._waiting.pop(key, None)
            self._waiting_on.pop(key, None)
            self._locks.pop(key, None)

    def _authority_loaded(self, name: str) -> None:
        """Authority `name` can sign now: the requests waiting on it are answered at once."""
        with self._guard:
            keys = [key for key, waited in self._waiting_on.items() if waited == name]
        now = self._clock()
        for key in keys:
            self._scheduler.expedite((POD_CERTIFICATE_REQUEST, *key), now)

    # --- one request -------------------------------------------------------------------

    def _lock(self, key: RequestKey) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def _handle(self, body: Mapping[str, Any]) -> None:
        request = requests.parse(body)
        key = (request.namespace, request.name)
        if request.authority is None:
            return  # another signer's: never touched
        with self._lock(key):
            if request.answered is not None:
                self.forget(*key)
                return
            try:
                self._answer(request)
            except ApiError as error:
                self._retry(key, error)

    def _retry(self, key: RequestKey, error: ApiError) -> None:
        """Ask again after an apiserver error: soon, then backing off; never an answer."""
        with self._guard:
            attempt = self._attempts.get(key, 0)
            self._attempts[key] = attempt + 1
        delay = min(RETRY_FIRST * 2**attempt, RETRY_MAX)
        if _lacks_sign(error):
            delay = RETRY_MAX  # RBAC: a person must act
        if attempt == 0 or _lacks_sign(error):
            logger.warning("PodCertificateRequest %s/%s: %s; retrying", *key, error)
        self._scheduler.schedule((POD_CERTIFICATE_REQUEST, *key), self._clock() + delay)

    def _postpone(
        self,
        request: PodCertificateRequest,
        why: str,
        delay: timedelta,
        *,
        authority: str | None = None,
    ) -> None:
        """Ask again after `delay`, or as soon as `authority` (the one it waits on, if that is
        why) can sign; said once per request (and reason), not at every look."""
        key = (request.namespace, request.name)
        self._scheduler.schedule((POD_CERTIFICATE_REQUEST, *key), self._clock() + delay)
        with self._guard:
            told = self._waiting.get(key) == why
            self._waiting[key] = why
            if authority is None:
                self._waiting_on.pop(key, None)
            else:
                self._waiting_on[key] = authority
        # Loaded since it was looked up: _authority_loaded may have run before the entry
        # above, and the time just scheduled must not stand.
        if authority is not None and self._registry.get(authority) is not None:
            self._scheduler.expedite((POD_CERTIFICATE_REQUEST, *key), self._clock())
        if not told:
            logger.info("PodCertificateRequest %s/%s waits: %s", *key, why)

    def _answer(self, request: PodCertificateRequest) -> None:
        """Gather, decide, write; ApiError when the apiserver did not answer."""
        authority = self._authority(request)
        if authority is None:
            return
        checked = signing.check(request, operator_namespace=self._config.namespace)
        if isinstance(checked, signing.Refusal):
            self._refuse(request, checked)
            return
        pod = self._kube.get_pod(namespace=request.namespace, name=request.pod_name)
        if pod is None:
            self._refuse(request, signing.pod_not_found(request))
            return
        refusal = signing.identity_refusal(request, pod)
        if refusal is not None:
            self._refuse(request, refusal)
            return
        named = signing.certificate_names(
            request,
            checked,
            pod=pod,
            services=self._kube.list_services(namespace=request.namespace),
            namespace_labels=self._namespace_labels(request.namespace),
            grants=authority.grants,
            trust_domain=self._config.trust_domain,
        )
        if isinstance(named, signing.Refusal):
            self._refuse(request, named)
            return
        self._issue(request, checked, named, authority)

    def _authority(self, request: PodCertificateRequest) -> AuthorityMaterial | None:
        """The loaded authority of the request's signer; None once the request is denied
        (no such authority) or postponed (not loaded, not ready)."""
        name = str(request.authority)
        material = self._registry.get(name)
        if material is not None:
            return material
        problem = self._registry.why_unavailable(name, self._kube)
        if problem == store.does_not_exist(name):
            # Denied is final, and the registry remembers an absence seen earlier: an
            # authority created again since must not be denied. Read it now.
            if self._kube.get_authority(name=name) is None:
                self._refuse(request, signing.unknown_authority(request))
            else:
                self._postpone(
                    request,
                    f"CertificateAuthority {name} is not loaded yet",
                    NOT_LOADED_RETRY,
                    authority=name,
                )
        elif self._registry.problem(name) is None:
            self._postpone(request, problem, NOT_LOADED_RETRY, authority=name)
        else:
            self._postpone(request, problem, NOT_READY_RETRY, authority=name)
        return None

    def _issue(
        self,
        request: PodCertificateRequest,
        checked: signing.Checked,
        named: signing.Names,
        authority: AuthorityMaterial,
    ) -> None:
        try:
            signed = signing.sign(request, checked, named, authority=authority, now=self._clock())
        except ValueError as error:  # the key or names cryptography cannot sign
            signed = signing.Refusal(signing.FAILED, "SigningFailed", f"signing failed: {error}")
        if isinstance(signed, signing.Postponed):
            self._postpone(request, signed.why, NOT_READY_RETRY)
            return
        if isinstance(signed, signing.Refusal):
            self._refuse(request, signed)
            return
        # Before the certificate leaves: a crash after this costs a later end of a root
        # rotation at most; after the status write it could cost a pod its trust.
        self._bounds.cover(authority, signed.root_fingerprint, signed.begin_refresh_at)
        if self._write(request, signed.status, signing.ISSUED, signing.ISSUED):
            logger.info(
                "PodCertificateRequest %s/%s issued: serial %s for pod %s, refresh from %s",
                request.namespace,
                request.name,
                inspect.serial_hex(signed.leaf),
                request.pod_name,
                signed.status["beginRefreshAt"],
            )

    def _refuse(self, request: PodCertificateRequest, refusal: signing.Refusal) -> None:
        status = signing.refused_status(refusal, self._clock())
        if self._write(request, status, refusal.condition, refusal.reason):
            logger.warning(
                "PodCertificateRequest %s/%s %s (%s): %s",
                request.namespace,
                request.name,
                refusal.condition.lower(),
                refusal.reason,
                refusal.message,
            )

    def _write(
        self, request: PodCertificateRequest, status: Mapping[str, Any], condition: str, reason: str
    ) -> bool:
        """Write the answer; True when it is the request's answer now. ApiError for what may
        pass (also a caller without `sign` on the signer: RBAC can be fixed)."""
        try:
            self._kube.patch_pod_certificate_request_status(
                version=self._version,
                namespace=request.namespace,
                name=request.name,
                status=status,
            )
        except ApiError as error:
            if error.not_found:
                self.forget(request.namespace, request.name)
                return False
            if error.status != 422 or _lacks_sign(error):
                raise
            return self._answer_refused(request, condition, error)
        self.forget(request.namespace, request.name)
        latency = None
        if request.created is not None:
            latency = (self._clock() - request.created).total_seconds()
        metrics.pod_certificate_answered(condition, reason, latency)
        return True

    def _answer_refused(
        self, request: PodCertificateRequest, condition: str, error: ApiError
    ) -> bool:
        """kube-apiserver refused an answer (422). Read again: answered already (an earlier
        write of ours that timed out, or anyone's) stays as it is; else this answer was
        invalid (a chain too long, …), which makes Failed the request's answer."""
        fresh = self._kube.get_pod_certificate_request(
            version=self._version, namespace=request.namespace, name=request.name
        )
        if fresh is None or requests.answered(fresh) is not None:
            self.forget(request.namespace, request.name)
            return False
        if condition == signing.FAILED:
            logger.error(
                "PodCertificateRequest %s/%s: kube-apiserver refused its Failed answer: %s",
                request.namespace,
                request.name,
                error,
            )
            self.forget(request.namespace, request.name)
            return False
        failed = signing.Refusal(
            signing.FAILED,
            "SigningFailed",
            f"kube-apiserver refused the {condition} answer: {error.message}",
        )
        return self._write(
            request, signing.refused_status(failed, self._clock()), failed.condition, failed.reason
        )


def _lacks_sign(error: ApiError) -> bool:
    """kube-apiserver's answer (403, or 422 from the status strategy) to a caller without
    `sign` on the request's signerName (RBAC on signers.certificates.k8s.io)."""
    return error.status == 403 or 'not permitted to "sign"' in error.message
