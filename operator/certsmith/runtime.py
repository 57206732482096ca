"""The operator's long-lived parts wired together, and the scheduled actions they run."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from certsmith import authorities, authority, serving, webhook_config
from certsmith.config import Config
from certsmith.kube import ApiError, Kube
from certsmith.reconcile import Outcome, Reconciler
from certsmith.scheduler import Scheduler

logger = logging.getLogger(__name__)

CERTIFICATE = "Certificate"
AUTHORITY = "CertificateAuthority"
WEBHOOK = "Webhook"


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

    def ensure_certificate(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a Certificate unless one of that name exists; return the stored one."""
        metadata = body["metadata"]
        try:
            return self.kube.create_certificate(body=body)
        except ApiError as error:
            if not error.conflict:
                raise
        found = self.kube.get_certificate(namespace=metadata["namespace"], name=metadata["name"])
        if found is None:
            raise ApiError(409, "Conflict", f"Certificate {metadata['name']} vanished")
        return found

    # --- the webhook's serving certificate -----------------------------------------------

    def write_serving_certificate(self) -> None:
        """Issue the webhook's certificate into files kopf's server reloads when they change."""
        material = self.registry.get(self.config.default_authority)
        if material is None:
            raise RuntimeError(f"CertificateAuthority {self.config.default_authority} not loaded")
        chain, key, renew_at = serving.serving_certificate(
            material,
            dns_names=serving.webhook_dns_names(self.config.webhook_service, self.config.namespace),
            now=self.clock(),
        )
        directory = Path(self.config.webhook_cert_dir)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name, content in (("tls.key", key), ("tls.crt", chain)):
            temporary = directory / f".{name}.tmp"
            temporary.write_bytes(content)
            temporary.chmod(0o600)
            temporary.replace(directory / name)
        self.scheduler.schedule((WEBHOOK, "", "serving"), renew_at)

    def register_webhooks(self) -> None:
        material = self.registry.get(self.config.default_authority)
        assert material is not None
        endpoint = webhook_config.Endpoint(
            ca_bundle=material.bundle_pem,
            url=self.config.webhook_url,
            service_name=self.config.webhook_service,
            service_namespace=self.config.namespace,
        )
        self.kube.put_webhook_configuration(body=webhook_config.mutating_configuration(endpoint))
        self.kube.put_webhook_configuration(body=webhook_config.validating_configuration(endpoint))

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
            elif kind == WEBHOOK:
                await loop.run_in_executor(self.executor, self.write_serving_certificate)
            else:
                await loop.run_in_executor(self.executor, self.reload_authority_by_name, name)
        except ApiError as error:
            # Transient apiserver trouble: look again shortly rather than never.
            logger.warning("%s %s/%s: %s; retrying in 5s", kind, namespace, name, error)
            self.scheduler.schedule(key, self.clock() + timedelta(seconds=5))
