"""The operator's long-lived parts wired together, and the scheduled actions they run."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from certsmith import authorities, authority
from certsmith.config import Config
from certsmith.kube import ApiError, Kube
from certsmith.reconcile import Outcome, Reconciler
from certsmith.scheduler import Scheduler

logger = logging.getLogger(__name__)

CERTIFICATE = "Certificate"
AUTHORITY = "CertificateAuthority"


@dataclass
class Runtime:
    config: Config
    kube: Kube
    registry: authorities.AuthorityRegistry
    reconciler: Reconciler
    scheduler: Scheduler
    executor: ThreadPoolExecutor
    clock: Callable[[], datetime]

    # --- Certificates --------------------------------------------------------------------

    def after_certificate(self, namespace: str, name: str, outcome: Outcome) -> None:
        key = (CERTIFICATE, namespace, name)
        if outcome.next_check is None:
            self.scheduler.cancel(key)
        else:
            self.scheduler.schedule(key, outcome.next_check)

    def reconcile_certificate_by_name(self, namespace: str, name: str) -> None:
        """The scheduler's path: read the Certificate fresh, reconcile, write status directly."""
        body = self.kube.get_certificate(namespace=namespace, name=name)
        if body is None:
            self.forget_certificate(namespace, name)
            return
        outcome = self.reconciler.reconcile(body)
        if outcome.status is not None:
            try:
                self.kube.patch_certificate_status(
                    namespace=namespace, name=name, status=outcome.status
                )
            except ApiError as error:
                if not error.not_found:
                    raise
        self.after_certificate(namespace, name, outcome)

    def certificate_due_now(self, namespace: str, name: str) -> None:
        self.scheduler.schedule((CERTIFICATE, namespace, name), self.clock())

    def forget_certificate(self, namespace: str, name: str) -> None:
        self.scheduler.cancel((CERTIFICATE, namespace, name))
        self.reconciler.forget(namespace, name)

    # --- CertificateAuthorities ----------------------------------------------------------

    def load_authority(self, body: Any) -> dict[str, Any]:
        """Load or bootstrap an authority's material; return the status to write."""
        name = body["metadata"]["name"]
        now = self.clock()
        current = body.get("status") or {}
        generation = body["metadata"].get("generation")
        try:
            material = authorities.ensure_material(self.kube, self.config, body, now)
        except authorities.AuthorityNotReady as error:
            self.registry.remove(name)
            self.scheduler.schedule((AUTHORITY, "", name), now + timedelta(seconds=30))
            return authority.failed_status(
                "InvalidRoot", str(error), current=current, generation=generation, now=now
            )
        self.registry.put(material)
        self.scheduler.schedule(
            (AUTHORITY, "", name),
            authority.intermediate_renewal_time(material.intermediate.certificate),
        )
        return authority.ready_status(material, current=current, generation=generation, now=now)

    def reload_authority_by_name(self, name: str) -> None:
        body = self.kube.get_authority(name=name)
        if body is None:
            self.registry.remove(name)
            return
        self.kube.patch_authority_status(name=name, status=self.load_authority(body))

    # --- the scheduler's action ----------------------------------------------------------

    async def run_scheduled(self, key: Hashable) -> None:
        assert isinstance(key, tuple)
        kind, namespace, name = key
        loop = asyncio.get_running_loop()
        try:
            if kind == CERTIFICATE:
                await loop.run_in_executor(
                    self.executor, self.reconcile_certificate_by_name, namespace, name
                )
            else:
                await loop.run_in_executor(self.executor, self.reload_authority_by_name, name)
        except ApiError as error:
            # Transient apiserver trouble: look again shortly rather than never.
            logger.warning("%s %s/%s: %s; retrying in 5s", kind, namespace, name, error)
            self.scheduler.schedule(key, self.clock() + timedelta(seconds=5))
