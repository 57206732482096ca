"""When each CertificateAuthority steps (authorities/controller.py does one step): after a
watch event, when the scheduler says so, soon after a failed bundle write, now when a CA
Secret changed; and what follows its deletion. Runs only in the Lease holder, which also
says once, with an Event on the default authority, which pod-certificate APIs the cluster
does not serve."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509

from certsmith.authorities import store
from certsmith.authorities.controller import AUTHORITY, AuthorityController
from certsmith.config import Config
from certsmith.controller.certificate_queue import CertificateQueue
from certsmith.kube import Kube
from certsmith.podcerts.apis import PodCertificateApis
from certsmith.replicas.state import ReplicaState
from certsmith.scheduler import Scheduler

logger = logging.getLogger(__name__)

SOON = timedelta(seconds=5)
"""How soon an authority steps again after a bundle it owns could not be written."""
API_NOT_SERVED = "APINotServed"
"""The reason of the Warning event naming a pod-certificate API the cluster does not serve."""


class AuthoritySteps:
    def __init__(
        self,
        *,
        kube: Kube,
        config: Config,
        controller: AuthorityController,
        registry: store.AuthorityRegistry,
        scheduler: Scheduler,
        certificates: CertificateQueue,
        replica: ReplicaState,
        clock: Callable[[], datetime],
        pod_certificate_apis: PodCertificateApis,
        roots_changed: Callable[[str], None],
    ) -> None:
        """`roots_changed(name)`: called after a step that changed (or first loaded) the
        authority's trusted roots (CertificateRequestSigner.authority_roots_changed)."""
        self._roots_changed = roots_changed
        self._kube = kube
        self._apis = pod_certificate_apis
        self._unserved_announced = False
        self._config = config
        self._controller = controller
        self._registry = registry
        self._scheduler = scheduler
        self._certificates = certificates
        self._replica = replica
        self._clock = clock
        # The default authority's resourceVersion as ensure_default stepped it this term.
        self._stepped_at_start: str | None = None
        self._ca_secrets_listed = threading.Event()

    def start_term(self) -> None:
        """A replica that starts leading forgets the authorities it loaded in an earlier
        term (another replica saw the deletions and changes since); the watches' first
        listing reloads them. The default one stays: the webhook serves with it."""
        self._registry.keep_only(self._config.default_authority)
        self._stepped_at_start = None

    def step(self, body: Mapping[str, Any]) -> str | None:
        """One step of the authority (bootstrap, renewal, bundles, rotation), its status
        written; the resourceVersion that write left (None: the authority is gone). ApiError
        when the apiserver does not answer. A step a handler runs (not the scheduler) is
        announced to the scheduler: a CA Secret changing meanwhile still has the authority
        stepped after it, whatever time this step planned."""
        name = body["metadata"]["name"]
        before = self._trusted_roots(name)
        with self._scheduler.running((AUTHORITY, "", name)):
            written = self._controller.step(body)
        after = self._trusted_roots(name)
        if after is not None and after != before:
            self._roots_changed(name)
        return written

    def _trusted_roots(self, name: str) -> tuple[x509.Certificate, ...] | None:
        loaded = self._registry.get(name)
        return None if loaded is None else loaded.trusted_roots

    def ensure_default(self, certificates: Sequence[dict[str, Any]] | None = None) -> None:
        """Create the default authority unless it exists, step it and write its status;
        `certificates`: every Certificate as the caller just listed them, for the step
        (None: it lists them)."""
        body = store.ensure_default_authority(self._kube, self._config)
        if certificates is None:
            written = self.step(body)
        else:
            with self._controller.certificates_listed(certificates):
                written = self.step(body)
        # What the step wrote is the version the watch's first list will show.
        self._stepped_at_start = written or body["metadata"].get("resourceVersion")
        self._announce_unserved_apis(body)

    def resumed(self, body: Mapping[str, Any]) -> None:
        """The term's first list shows the authority: step it, unless it is the default one
        as ensure_default just stepped it (same resourceVersion): a step looks at every
        leaf Secret, seconds at 10,000, and a restart would take two."""
        metadata = body["metadata"]
        if (
            metadata["name"] == self._config.default_authority
            and self._stepped_at_start is not None
            and metadata.get("resourceVersion") == self._stepped_at_start
        ):
            return
        self.step(body)

    def _announce_unserved_apis(self, default: Mapping[str, Any]) -> None:
        """Once per process (its first term): a Warning event on the default authority for
        each pod-certificate API the cluster does not serve (`kubectl describe ca`), as the
        start-up log says. An event lost is only logged: the log said it already."""
        if self._unserved_announced:
            return
        self._unserved_announced = True
        for sentence in self._apis.unserved():
            self._controller.warning_event(default, API_NOT_SERVED, sentence)

    def changed(self, body: Mapping[str, Any]) -> None:
        """Created, or a new policy, bundle setting or rotation request: step now, and
        re-judge its Certificates."""
        self.step(body)
        self._certificates.of_authority_due_now(body["metadata"]["name"])

    def step_by_name(self, name: str) -> None:
        """The scheduler's path: read the authority fresh, step it, write its status."""
        body = self._kube.get_authority(name=name)
        if body is None:
            self.deleted(name)
            return
        self.step(body)

    def deleted(self, name: str) -> None:
        """It signs nothing more; its Certificates are told so (their Secrets stay as they
        are). Its CA Secrets and trust bundles are kept: recreating it resumes with the same
        root. The default authority is recreated at once, from those Secrets: the webhook's
        certificate and every default Certificate depend on it."""
        if name == self._config.default_authority:
            logger.warning("CertificateAuthority %s was deleted: recreating it", name)
            self.ensure_default()
            return
        logger.info("CertificateAuthority %s was deleted: it signs nothing more", name)
        self._controller.forget(name)
        self._certificates.of_authority_due_now(name)

    def step_now(self, name: str) -> None:
        """A step now, or right after the one running (which saw the world before)."""
        self._scheduler.expedite((AUTHORITY, "", name), self._clock())

    def revocation_requested(self, authority: str, kind: str, namespace: str, name: str) -> None:
        """`kubectl certsmith revoke` annotated a Certificate or CertificateRequest (`kind`):
        its authority steps now, which records it and publishes the CRL."""
        self._controller.revocation_requested(authority, kind, namespace, name)
        self.step_now(authority)

    def step_soon(self, name: str) -> None:
        """Within SOON; never later than a step already planned (a rotation's next one)."""
        self._scheduler.expedite((AUTHORITY, "", name), self._clock() + SOON)

    def all_step_soon(self) -> None:
        """Have every authority write its bundles again shortly (after a failed write)."""
        for material in self._registry.all():
            self.step_soon(material.name)

    def ca_secrets_listed(self) -> None:
        """The CA Secrets' watch has its first list: it reports every change after it."""
        self._ca_secrets_listed.set()

    def ca_secrets_watched(self, timeout_seconds: float) -> bool:
        """Wait up to `timeout_seconds` for the CA Secrets' watch to have its first list;
        whether it has. A term steps no authority before: a CA Secret changed between the
        step's read and that list would go unreported."""
        return self._ca_secrets_listed.wait(timeout_seconds)

    def ca_secret_changed(self, secret_name: str) -> None:
        """A Secret in the operator's namespace changed or vanished: every authority checks
        its material now, so none signs with keys that are gone or were edited. Called in
        every replica (the Secrets' watch thread); acts only in the leader."""
        if not self._replica.leading:
            return
        logger.info(
            "Secret %s/%s changed: authorities check their keys",
            self._config.namespace,
            secret_name,
        )
        for name in self._registry.names():
            self.step_now(name)
