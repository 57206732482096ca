"""The operator's long-lived parts wired together, and the scheduled actions they run."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from certsmith.admission import serving, webhook_config
from certsmith.authorities import rotation, store, trust_bundle
from certsmith.authorities.authority import AuthorityMaterial
from certsmith.authorities.controller import AuthorityController
from certsmith.certificates.reconcile import Outcome, Reconciler
from certsmith.config import Config
from certsmith.kube import ApiError, Kube, new_api_client
from certsmith.replicas.watch_health import WatchHealth
from certsmith.scheduler import Scheduler

logger = logging.getLogger(__name__)

CERTIFICATE = "Certificate"
AUTHORITY = "CertificateAuthority"


@dataclass
class Runtime:
    config: Config
    kube: Kube
    registry: store.AuthorityRegistry
    reconciler: Reconciler
    scheduler: Scheduler
    executor: ThreadPoolExecutor
    clock: Callable[[], datetime]
    pacer: rotation.ReissuePacer = field(default_factory=rotation.ReissuePacer)
    """Shared with the reconciler: rotation re-issues at most reissueRate per second."""
    authorities: AuthorityController = field(init=False)
    namespaces: dict[str, Mapping[str, str]] = field(default_factory=dict)
    serving_material: AuthorityMaterial | None = None
    serving_state: serving.ServingState = field(default_factory=serving.ServingState)
    serving_problem: str | None = None
    serving_reload: Callable[[], object] | None = None
    """Loads the serving files just written into the running webhook server (set by the
    webhook start-up); None before it runs."""
    """Why the webhook's certificate could not be taken from the default authority last
    time, or None; shown by /readyz."""
    last_apiserver_answer: float = field(default_factory=time.monotonic)
    watch_health: WatchHealth = field(default_factory=lambda: WatchHealth(clock=time.monotonic))
    leading: bool = False
    """True while this replica runs the controller (holds the Lease)."""

    def apiserver_answered(self) -> None:
        """Called by the Lease campaign after every round the apiserver answered."""
        self.last_apiserver_answer = time.monotonic()

    def apiserver_silence(self) -> float:
        return time.monotonic() - self.last_apiserver_answer

    def controller_problem(self) -> str | None:
        """Only the leader's watches feed the controller; a standby's readiness is its webhook."""
        return self.watch_health.problem() if self.leading else None

    def __post_init__(self) -> None:
        self.authorities = AuthorityController(
            kube=self.kube,
            config=self.config,
            registry=self.registry,
            scheduler=self.scheduler,
            clock=self.clock,
            namespace_labels=self.namespace_labels,
            pacer=self.pacer,
        )

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
        self.pacer.forget((namespace, name))
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

    def default_authority_problem(self) -> str | None:
        """Why the default authority cannot sign now (for /readyz), or None when it can."""
        name = self.config.default_authority
        if self.registry.get(name) is not None and self.serving_problem is None:
            return None
        return (
            self.serving_problem
            or self.registry.problem(name)
            or f"CertificateAuthority {name} is not loaded yet"
        )

    def prepare_serving(self) -> None:
        """Before the webhook server starts: its certificate from the default authority.

        When that authority cannot give one (its root Secret gone, the apiserver down), the
        process must still start, so that its probes answer and it retries (the serving
        follower, every serving.CHECK_PERIOD): the files an earlier run wrote are served
        if still valid (the registered caBundle still trusts them), else a placeholder
        nobody trusts. A broken authority signs nothing new, the webhook's certificate
        included."""
        try:
            self.refresh_serving()
            return
        except (ApiError, store.AuthorityNotReady) as error:
            self.serving_problem = (
                f"CertificateAuthority {self.config.default_authority} is not ready: {error}"
            )
        directory = Path(self.config.webhook_cert_dir)
        now = self.clock()
        try:
            until = serving.usable_files_until((directory / "tls.crt").read_bytes(), now)
        except OSError:
            until = None
        if until is not None and (directory / "tls.key").exists():
            logger.error(
                "webhook certificate not renewed (%s): serving the one written before, valid "
                "until %s; retrying every %.0f s",
                self.serving_problem,
                until,
                serving.CHECK_PERIOD,
            )
            return
        chain, key = serving.placeholder_certificate(
            dns_names=serving.webhook_dns_names(self.config.webhook_service, self.config.namespace),
            now=now,
        )
        self._write_serving_files(chain, key)
        logger.error(
            "webhook has no certificate the apiserver trusts (%s): admission requests fail "
            "until it does; retrying every %.0f s",
            self.serving_problem,
            serving.CHECK_PERIOD,
        )

    def refresh_serving(self) -> None:
        """Keep the webhook's certificate and caBundle with the default authority: through a
        root rotation they move like every leaf, with no restart (every replica, every
        serving.CHECK_PERIOD)."""
        try:
            self.load_material_for_serving()
        except store.AuthorityNotReady as error:
            # (An ApiError leaves the problem as it was: the apiserver's silence is a
            # readiness problem of its own.)
            self.serving_problem = (
                f"CertificateAuthority {self.config.default_authority} is not ready: {error}"
            )
            raise
        self.serving_problem = None
        material = self.serving_material
        assert material is not None
        step = serving.plan(self.serving_state, material=material, now=self.clock())
        if step.reissue:
            renew_at = self.write_serving_certificate()
            self.serving_state = replace(
                self.serving_state, issuer=material.intermediate.certificate, renew_at=renew_at
            )
        if step.register:
            self.register_webhooks()
            self.serving_state = replace(self.serving_state, registered_bundle=material.bundle_pem)
        else:
            self.repair_webhooks()

    def write_serving_certificate(self) -> datetime:
        """Issue the webhook's certificate into its files, loaded by the running server;
        return when to renew it."""
        material = self.serving_material
        if material is None:
            raise RuntimeError(f"CertificateAuthority {self.config.default_authority} not loaded")
        chain, key, renew_at = serving.serving_certificate(
            material,
            dns_names=serving.webhook_dns_names(self.config.webhook_service, self.config.namespace),
            now=self.clock(),
        )
        self._write_serving_files(chain, key)
        return renew_at

    def _write_serving_files(self, chain: bytes, key: bytes) -> None:
        """Atomically, then into the running server (serving_reload): never half a pair."""
        directory = Path(self.config.webhook_cert_dir)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name, content in (("tls.key", key), ("tls.crt", chain)):
            temporary = directory / f".{name}.tmp"
            temporary.write_bytes(content)
            temporary.chmod(0o600)
            temporary.replace(directory / name)
        if self.serving_reload is not None:
            self.serving_reload()

    def load_material_for_serving(self) -> None:
        """The default authority's material, without driving it (that is the leader's job)."""
        body = store.ensure_default_authority(self.kube, self.config)
        material = store.ensure_material(
            self.kube, self.config, body, self.clock(), rotation.from_status(body.get("status"))
        )
        if self.registry.get(material.name) is None:
            self.registry.put(material)
        self.serving_material = material

    def _webhook_configurations(self) -> tuple[dict[str, Any], dict[str, Any]]:
        material = self.serving_material
        assert material is not None
        endpoint = webhook_config.Endpoint(
            ca_bundle=material.bundle_pem,
            url=self.config.webhook_url,
            service_name=self.config.webhook_service,
            service_namespace=self.config.namespace,
        )
        return (
            webhook_config.mutating_configuration(endpoint),
            webhook_config.validating_configuration(endpoint),
        )

    def register_webhooks(self) -> None:
        for body in self._webhook_configurations():
            self.kube.put_webhook_configuration(body=body)

    def repair_webhooks(self) -> None:
        """Put back a registered configuration someone edited (every serving.CHECK_PERIOD).
        One that was deleted stays deleted until the next start: deleting them is how an
        admin switches certsmith's admission off."""
        for body in self._webhook_configurations():
            live = self.kube.get_webhook_configuration(
                kind=body["kind"], name=body["metadata"]["name"]
            )
            if live is not None and webhook_config.drifted(live, body):
                logger.warning("%s %s was edited: put back", body["kind"], body["metadata"]["name"])
                self.kube.put_webhook_configuration(body=body)

    # --- CertificateAuthorities ----------------------------------------------------------

    def load_authority(self, body: Any) -> dict[str, Any] | None:
        """One step of the authority (bootstrap, renewal, bundles, rotation); its status, or
        None when it no longer exists."""
        return self.authorities.step(body)

    def reload_authority_by_name(self, name: str) -> None:
        body = self.kube.get_authority(name=name)
        if body is None:
            self.authority_deleted(name)
            return
        status = self.load_authority(body)
        if status is not None:
            self.kube.patch_authority_status(name=name, status=status)

    def authority_deleted(self, name: str) -> None:
        """It signs nothing more; its Certificates are told so (their Secrets stay as they
        are). Its CA Secrets and trust bundles are kept: recreating it resumes with the same
        root. The default authority is recreated at once, from those Secrets: the webhook's
        certificate and every default Certificate depend on it."""
        if name == self.config.default_authority:
            logger.warning("CertificateAuthority %s was deleted: recreating it", name)
            body = store.ensure_default_authority(self.kube, self.config)
            status = self.load_authority(body)
            if status is not None:
                self.kube.patch_authority_status(name=name, status=status)
            return
        logger.info("CertificateAuthority %s was deleted: it signs nothing more", name)
        self.authorities.forget(name)
        self.reconcile_authority_certificates(name)

    def ca_secret_changed(self, secret_name: str) -> None:
        """A Secret in the operator's namespace changed or vanished: every authority checks
        its material now, so none signs with keys that are gone or were edited."""
        if not self.leading:
            return
        logger.info(
            "Secret %s/%s changed: authorities check their keys", self.config.namespace, secret_name
        )
        for name in self.registry.names():
            self.scheduler.schedule((AUTHORITY, "", name), self.clock())

    def new_term(self) -> None:
        """A replica that starts leading forgets what it cached in an earlier term (another
        replica saw the deletions and changes since); the watches' first listing refills it."""
        self.registry.keep_only(self.config.default_authority)
        self.namespaces.clear()

    def reconcile_authority_certificates(self, authority_name: str) -> None:
        """Look again at every Certificate of an authority (its policy changed)."""
        default = self.config.default_authority
        for item in self.kube.list_certificates():
            issuer = ((item.get("spec") or {}).get("issuerRef") or {}).get("name") or default
            if issuer == authority_name:
                self.certificate_due_now(item["metadata"]["namespace"], item["metadata"]["name"])

    # --- namespaces ------------------------------------------------------------------------

    def current_namespace_labels(self, namespace: str) -> Mapping[str, str]:
        """Read now, for the webhook: a standby replica sees no namespace events, so a cache
        there would keep the labels of a namespace since relabelled, or deleted and recreated."""
        found = self.kube.get_namespace(name=namespace)
        return ((found or {}).get("metadata") or {}).get("labels") or {}

    def namespace_labels(self, namespace: str) -> Mapping[str, str]:
        labels = self.namespaces.get(namespace)
        if labels is None:
            found = self.kube.get_namespace(name=namespace)
            labels = ((found or {}).get("metadata") or {}).get("labels") or {}
            self.namespaces[namespace] = labels
        return labels

    def namespace_seen(self, namespace: Mapping[str, Any]) -> None:
        """A namespace appeared or changed: remember its labels, give it its trust bundles."""
        metadata = namespace["metadata"]
        name, labels = metadata["name"], dict(metadata.get("labels") or {})
        before = self.namespaces.get(name)
        relabelled = []
        if before is not None and before != labels and not metadata.get("deletionTimestamp"):
            # Grants follow namespace labels: judge the namespace's Certificates again, so a
            # label removed revokes what it granted and a label added signs what waited.
            # Listed before the cache moves: if the list fails, the next event tries again.
            relabelled = self.kube.list_certificates(namespace=name)
        self.namespaces[name] = labels
        for item in relabelled:
            self.certificate_due_now(name, item["metadata"]["name"])
        if metadata.get("deletionTimestamp"):
            return
        self.bundles_needed(metadata["name"])

    def namespace_deleted(self, name: str) -> None:
        """Forget what was cached about it (its labels, our bundle writes there)."""
        self.namespaces.pop(name, None)
        versions = self.authorities.own_bundle_versions
        for key in list(versions):  # a copy: bundle writes add entries from other threads
            if key[0] == name:
                versions.pop(key, None)

    def step_authorities_soon(self) -> None:
        """Have every authority write its bundles again shortly (after a failed write)."""
        for material in self.registry.all():
            self.step_authority_soon(material.name)

    def step_authority_soon(self, name: str) -> None:
        key, soon = (AUTHORITY, "", name), self.clock() + timedelta(seconds=5)
        planned = self.scheduler.when(key)
        if planned is None or planned > soon:  # never postpone a rotation's next step
            self.scheduler.schedule(key, soon)

    def bundle_changed(self, configmap: Mapping[str, Any]) -> None:
        """A bundle ConfigMap was edited or deleted by someone else: its rightful owner
        (trust_bundle.rightful_owner, whatever authority the ConfigMap's marks name) repairs
        it, and every authority that claims its name steps soon, so BundlesSynced says what
        is true now, not before the edit."""
        metadata = configmap["metadata"]
        self.bundles_needed(metadata["namespace"], only=metadata["name"], step=True)

    def bundles_needed(
        self, namespace: str, *, only: str | None = None, step: bool = False
    ) -> None:
        """Create or repair the bundles of a namespace (the one called `only`, else all), each
        by its rightful owner alone. An owner that cannot write has its authority step soon,
        which reports it in status; so do the other claimants (their BundleConflict) when
        `step`. The authorities are read now: the default one, or the oldest, must win even
        before the operator has loaded it, or a younger one would write first."""
        labels = self.namespace_labels(namespace)
        found = self.authorities.bundle_claims()
        for config_map in sorted({c.config_map for c in found if only in (None, c.config_map)}):
            contenders = trust_bundle.candidates(
                found, config_map=config_map, namespace_labels=labels
            )
            owner = trust_bundle.rightful_owner(
                contenders, default_authority=self.config.default_authority
            )
            if owner is None:
                continue  # not selected here by any authority: the ConfigMap is nobody's
            self.bundle_needed(namespace, owner, config_map)
            for claim in contenders:
                if step or claim.authority != owner:
                    self.step_authority_soon(claim.authority)

    def bundle_needed(self, namespace: str, owner: str, config_map: str) -> None:
        """Create or repair one bundle (found by name: its label may be gone) by its rightful
        owner, if that authority is loaded with this bundle name (else its own step, due
        after any change of its spec, writes it)."""
        material = self.registry.get(owner)
        if material is None or material.bundle_config_map != config_map:
            return
        existing = self.kube.get_configmap(namespace=namespace, name=config_map)
        problem = self.authorities.put_bundle(material, namespace, existing, owner=owner)
        if problem is not None:
            logger.warning("trust bundle %s", problem)
            self.step_authority_soon(owner)

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


def utc_now() -> datetime:
    return datetime.now(UTC)


def build(cfg: Config) -> Runtime:
    """Every long-lived part, wired; nothing runs until the operators start."""
    client = Kube(new_api_client(kubeconfig=cfg.kubeconfig, pool_size=cfg.workers))
    registry = store.AuthorityRegistry()
    holder: list[Runtime] = []
    pacer = rotation.ReissuePacer()

    async def run_scheduled(key: Hashable) -> None:
        await holder[0].run_scheduled(key)

    runtime = Runtime(
        config=cfg,
        kube=client,
        registry=registry,
        reconciler=Reconciler(
            kube=client,
            config=cfg,
            authorities=registry,
            clock=utc_now,
            namespace_labels=lambda namespace: holder[0].namespace_labels(namespace),
            pacer=pacer,
        ),
        scheduler=Scheduler(clock=utc_now, action=run_scheduled, concurrency=cfg.workers),
        executor=ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix="certsmith"),
        clock=utc_now,
        pacer=pacer,
    )
    holder.append(runtime)
    return runtime
