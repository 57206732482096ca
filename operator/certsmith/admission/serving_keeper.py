"""Keep the webhook served and trusted: its certificate from the default authority, and the
caBundle of the webhook configurations the install ships (never created here) equal to
that authority's roots. Runs in every replica, leader or not (every replica serves
admission), so it never writes the authority's material: that is the leader's (a root or
intermediate missing or due waits for it). The pure decisions are in serving.py and
webhook_config.py.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from certsmith.admission import serving, webhook_config
from certsmith.authorities import authority, rotation, store
from certsmith.authorities.authority import AuthorityMaterial
from certsmith.config import Config
from certsmith.kube import ApiError, Kube

logger = logging.getLogger(__name__)

Reload = Callable[[], object]
"""Loads the serving files just written into the running webhook server."""


class ServingKeeper:
    """The webhook's serving certificate (files in `config.webhook_cert_dir`) and the
    caBundle of the installed webhook configurations. `prepare` once before the server
    starts, then `follow` in a thread of its own."""

    def __init__(
        self,
        *,
        kube: Kube,
        config: Config,
        registry: store.AuthorityRegistry,
        clock: Callable[[], datetime],
    ) -> None:
        self._kube = kube
        self._config = config
        self._registry = registry
        self._clock = clock
        self._state = serving.ServingState()
        self._problem: str | None = None
        """Why the webhook's certificate could not be taken from the default authority
        last time, or None; shown by /readyz."""
        self._missing: set[str] = set()
        """The kinds of webhook configuration found missing last time (said once)."""
        self._wake = threading.Event()
        """Set when the default authority is loaded (by the leader's controller in this
        replica): on a new install, the webhook need not wait a CHECK_PERIOD for it."""
        registry.on_loaded(self._loaded)

    def _loaded(self, name: str) -> None:
        if name == self._config.default_authority:
            self._wake.set()

    def secret_changed(self, secret_name: str) -> None:
        """A Secret of the operator's namespace changed (the CA Secrets' watch, in every
        replica): one of the default authority's CA Secrets has the certificate checked
        now, not at the next CHECK_PERIOD (the leader moved its material)."""
        name = self._config.default_authority
        if secret_name in (
            authority.root_secret_name(name),
            authority.intermediate_secret_name(name),
            authority.next_root_secret_name(name),
        ):
            self._wake.set()

    def secrets_listed(self) -> None:
        """The CA Secrets' watch took its first list: a change made before it (after this
        replica's own load, e.g. the leader replacing the intermediate while this replica
        started) is not reported as an event, so the certificate is checked now."""
        self._wake.set()

    def load_failed(self) -> None:
        """The server could not load the files just written: issue a new pair now (the
        server keeps serving the one it had meanwhile)."""
        self._state = serving.ServingState()
        self._wake.set()

    def default_authority_problem(self) -> str | None:
        """Why the default authority cannot sign now (for /readyz), or None when it can."""
        name = self._config.default_authority
        if self._registry.get(name) is not None and self._problem is None:
            return None
        return (
            self._problem
            or self._registry.problem(name)
            or f"CertificateAuthority {name} is not loaded yet"
        )

    def prepare(self) -> None:
        """Before the webhook server starts: its certificate from the default authority.

        When that authority cannot give one (its root Secret gone, the apiserver down), the
        process must still start, so that its probes answer and it retries (`follow`, every
        serving.CHECK_PERIOD): the files an earlier run wrote are served if still valid (the
        registered caBundle still trusts them), else a placeholder nobody trusts. A broken
        authority signs nothing new, the webhook's certificate included."""
        try:
            self._refresh(reload=None)
            return
        except (ApiError, store.AuthorityNotReady) as error:
            self._problem = self._not_ready(error)
            # On a new install the leader is creating the authority: not a fault yet.
            waiting = isinstance(error, store.AwaitingLeader)
        now = self._clock()
        until = self._earlier_files_until(now)
        if until is not None:
            (logger.info if waiting else logger.error)(
                "webhook certificate not renewed (%s): serving the one written before, valid "
                "until %s; retrying every %.0f s",
                self._problem,
                until,
                serving.CHECK_PERIOD,
            )
            return
        chain, key = serving.placeholder_certificate(dns_names=self._dns_names(), now=now)
        self._write_files(chain, key, reload=None)
        (logger.info if waiting else logger.error)(
            "webhook has no certificate the apiserver trusts (%s): admission requests fail "
            "until it does; retrying every %.0f s, and once the leader loads it",
            self._problem,
            serving.CHECK_PERIOD,
        )

    def follow(self, reload: Reload) -> None:
        """Forever, every serving.CHECK_PERIOD: keep the certificate and caBundle with the
        default authority (through a root rotation they move like every leaf, with no
        restart), loading new files with `reload`. Run in a thread: when the controller's
        kopf operator stops (the Lease lost), kopf cancels every task created after it
        started, whoever owns it."""
        while True:
            self._wake.wait(serving.CHECK_PERIOD)
            self._wake.clear()
            try:
                self._refresh(reload=reload)
            except store.AwaitingLeader as error:
                # The leader is writing it (a new install, a replaced intermediate): /readyz
                # says so meanwhile.
                logger.info("webhook certificate waits for the leader: %s", error)
            except (ApiError, store.AuthorityNotReady) as error:
                logger.warning("webhook certificate not checked against the authority: %s", error)
            except Exception:
                # This loop is what moves the webhook through a root rotation: it must
                # outlive any single failure, and say what it was.
                logger.exception("webhook certificate not checked against the authority")

    def _refresh(self, *, reload: Reload | None) -> None:
        """Re-issue the certificate when the authority's material asks for it
        (serving.plan); bring each webhook configuration's caBundle to the authority's
        roots."""
        try:
            material = self._load_material()
        except store.AwaitingLeader as error:
            renew_at = self._state.renew_at
            if renew_at is not None and self._clock() < renew_at:
                # Serving one from this authority, still good: the leader is writing what
                # is missing (a renewed intermediate, a rotation's phase) right now.
                logger.info("webhook certificate kept until the leader writes: %s", error)
                return
            self._problem = self._not_ready(error)
            raise
        except store.AuthorityNotReady as error:
            # (An ApiError leaves the problem as it was: the apiserver's silence is a
            # readiness problem of its own.)
            self._problem = self._not_ready(error)
            raise
        self._problem = None
        step = serving.plan(self._state, material=material, now=self._clock())
        if step.reissue:
            chain, key, renew_at = serving.serving_certificate(
                material, dns_names=self._dns_names(), now=self._clock()
            )
            self._write_files(chain, key, reload=reload)
            self._state = replace(
                self._state, issuer=material.intermediate.certificate, renew_at=renew_at
            )
        self._keep_ca_bundles(material.bundle_pem)

    def _load_material(self) -> AuthorityMaterial:
        """The default authority's material as stored, without driving it (that is the
        leader's job): AwaitingLeader when what is stored is not usable yet."""
        body = store.ensure_default_authority(self._kube, self._config)
        material = store.ensure_material(
            self._kube,
            self._config,
            body,
            self._clock(),
            rotation.from_status(body.get("status")),
            writes=False,
        )
        if self._registry.get(material.name) is None:
            self._registry.put(material)
        return material

    def _not_ready(self, error: Exception) -> str:
        return f"CertificateAuthority {self._config.default_authority} is not ready: {error}"

    def _dns_names(self) -> list[str]:
        return self._config.webhook_dns_names()

    def _earlier_files_until(self, now: datetime) -> datetime | None:
        """Until when the files an earlier run wrote stay valid; None when unusable."""
        directory = Path(self._config.webhook_cert_dir)
        try:
            until = serving.usable_files_until((directory / "tls.crt").read_bytes(), now)
        except OSError:
            return None
        return until if (directory / "tls.key").exists() else None

    def _write_files(self, chain: bytes, key: bytes, *, reload: Reload | None) -> None:
        """Atomically, then into the running server: never half a pair."""
        directory = Path(self._config.webhook_cert_dir)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name, content in (("tls.key", key), ("tls.crt", chain)):
            temporary = directory / f".{name}.tmp"
            temporary.write_bytes(content)
            temporary.chmod(0o600)
            temporary.replace(directory / name)
        if reload is not None:
            reload()

    def _keep_ca_bundles(self, bundle_pem: bytes) -> None:
        """Set the caBundle of every webhook of the installed configurations to
        `bundle_pem` where it differs (first run, root rotation, an edit), touching no
        other field. A configuration that is not installed is said once, not created: the
        install owns it (deleting it is how an admin switches that admission off). An
        API error is logged and retried next time: it must not stop the serving
        certificate from following the authority."""
        for kind in webhook_config.KINDS:
            name = webhook_config.CONFIGURATION_NAME
            try:
                live = self._kube.get_webhook_configuration(kind=kind, name=name)
                patch = None if live is None else webhook_config.ca_bundle_patch(live, bundle_pem)
                if patch is not None:
                    self._kube.patch_webhook_configuration(kind=kind, name=name, patch=patch)
                    logger.info("%s %s: caBundle set to the default authority's roots", kind, name)
            except ApiError as error:
                logger.warning("%s %s: caBundle not checked: %s", kind, name, error)
                continue
            if live is not None:
                self._missing.discard(kind)
                continue
            if kind not in self._missing:
                logger.warning(
                    "%s %s is not installed (charts/certsmith and manifests/ ship it): that "
                    "admission is off until it is",
                    kind,
                    name,
                )
            self._missing.add(kind)
