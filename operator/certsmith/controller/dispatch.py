"""The scheduler's action: a due key becomes a Certificate reconciliation, an authority
step, a pending PodCertificateRequest's answer or a CertificateRequest's decision, run in
the worker threads. Runs only in the Lease holder (the scheduler runs there)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import NamedTuple

from certsmith.authorities.controller import AUTHORITY, CERTIFICATE
from certsmith.controller.authority_steps import AuthoritySteps
from certsmith.controller.certificate_queue import CertificateQueue
from certsmith.controller.certificate_requests import CERTIFICATE_REQUEST, CertificateRequestSigner
from certsmith.controller.pod_certificates import POD_CERTIFICATE_REQUEST, PodCertificateSigner
from certsmith.kube import ApiError
from certsmith.scheduler import Key, Scheduler

logger = logging.getLogger(__name__)

RETRY = timedelta(seconds=5)
"""How soon a scheduled action the apiserver did not answer runs again."""


class ScheduledKey(NamedTuple):
    """What the scheduler holds: (CERTIFICATE, namespace, name), (AUTHORITY, "", name) or
    (POD_CERTIFICATE_REQUEST, namespace, name) or (CERTIFICATE_REQUEST, namespace, name)."""

    kind: str
    namespace: str
    name: str


def parse_key(key: Hashable) -> ScheduledKey:
    """The key as scheduled; TypeError for anything else (a programming error)."""
    if (
        isinstance(key, tuple)
        and len(key) == 3
        and key[0] in (CERTIFICATE, AUTHORITY, POD_CERTIFICATE_REQUEST, CERTIFICATE_REQUEST)
        and all(isinstance(part, str) for part in key)
    ):
        return ScheduledKey(*key)
    raise TypeError(f"not a scheduled certsmith key: {key!r}")


class ScheduledActions:
    """`await actions(key)`: the Scheduler's action (Scheduler.run)."""

    def __init__(
        self,
        *,
        executor: ThreadPoolExecutor,
        certificates: CertificateQueue,
        authorities: AuthoritySteps,
        scheduler: Scheduler,
        clock: Callable[[], datetime],
        certificate_requests: CertificateRequestSigner,
        pod_certificates: PodCertificateSigner | None = None,
    ) -> None:
        """`pod_certificates`: None when the cluster serves no PodCertificateRequests."""
        self._executor = executor
        self._pod_certificates = pod_certificates
        self._certificate_requests = certificate_requests
        self._certificates = certificates
        self._authorities = authorities
        self._scheduler = scheduler
        self._clock = clock

    async def __call__(self, key: Key) -> None:
        due = parse_key(key)
        loop = asyncio.get_running_loop()
        try:
            if due.kind == CERTIFICATE:
                await loop.run_in_executor(
                    self._executor, self._certificates.reconcile_by_name, due.namespace, due.name
                )
            elif due.kind == CERTIFICATE_REQUEST:
                await loop.run_in_executor(
                    self._executor,
                    self._certificate_requests.decide_by_name,
                    due.namespace,
                    due.name,
                )
            elif due.kind == POD_CERTIFICATE_REQUEST:
                if self._pod_certificates is not None:
                    await loop.run_in_executor(
                        self._executor, self._pod_certificates.sign_by_name, due.namespace, due.name
                    )
            else:
                await loop.run_in_executor(self._executor, self._authorities.step_by_name, due.name)
        except ApiError as error:
            # Transient apiserver trouble: look again shortly rather than never.
            logger.warning("%s %s/%s: %s; retrying in 5s", *due, error)
            self._scheduler.schedule(key, self._clock() + RETRY)
