"""Keep each CertificateAuthority working: load or bootstrap its keys, renew its
intermediate, distribute its trust bundles and drive root rotations (rotation.py) to the end.

One step reads the state from the cluster, decides with the pure rotation state machine and
pushes the work (bundles written here; Secrets' ca.crt and re-issues through the
per-Certificate reconciler, scheduled at a bounded rate). Steps repeat every couple of
seconds while a rotation runs, so a restarted operator picks up from the status.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from certsmith import (
    authorities,
    authority,
    conditions,
    isolation,
    metrics,
    model,
    rotation,
    tls_secret,
    trust_bundle,
)
from certsmith.config import Config
from certsmith.kube import ApiError, Kube
from certsmith.pki import inspect
from certsmith.scheduler import Scheduler

logger = logging.getLogger(__name__)

AUTHORITY = "CertificateAuthority"
CERTIFICATE = "Certificate"
DEFAULT_PROPAGATION_DELAY = timedelta(minutes=5)
DEFAULT_REISSUE_RATE = 20
ROTATION_STEP = timedelta(seconds=2)


class AuthorityController:
    def __init__(
        self,
        *,
        kube: Kube,
        config: Config,
        registry: authorities.AuthorityRegistry,
        scheduler: Scheduler,
        clock: Callable[[], datetime],
        namespace_labels: Callable[[str], Mapping[str, str]],
    ) -> None:
        self._kube = kube
        self._config = config
        self._registry = registry
        self._scheduler = scheduler
        self._clock = clock
        self._namespace_labels = namespace_labels
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.own_bundle_versions: dict[tuple[str, str], str] = {}

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def step(self, body: Mapping[str, Any]) -> dict[str, Any] | None:
        """Advance the authority by one step; return the status to write (None: it is gone)."""
        name = body["metadata"]["name"]
        with self._lock(name):
            # Read it fresh: a watch event's body may predate our own last status write,
            # and stepping from a stale phase could undo progress (or revive a deleted one).
            fresh = self._kube.get_authority(name=name)
            if fresh is None:
                self._forget(name)
                return None
            return self._step(fresh)

    def forget(self, name: str) -> None:
        """The authority was deleted: it signs nothing more. Under its lock, so a step that
        was under way cannot put it back."""
        with self._lock(name):
            self._forget(name)

    def _forget(self, name: str) -> None:
        self._registry.remove(name, authorities.does_not_exist(name))
        self._scheduler.cancel((AUTHORITY, "", name))
        metrics.authority_forgotten(name)

    def _step(self, body: Mapping[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        now = self._clock()
        current = body.get("status") or {}
        generation = body["metadata"].get("generation")
        state = rotation.from_status(current)
        request = (body["metadata"].get("annotations") or {}).get(rotation.ROTATE_ANNOTATION)
        try:
            material = authorities.ensure_material(self._kube, self._config, body, now, state)
            if authorities.supplied_root_name(body.get("spec") or {}):
                state = self._refuse_rotation(body, state, request)
            elif rotation.should_start(
                state,
                request=request,
                root_renewal=authority.root_renewal_time(material.trusted_roots[0]),
                now=now,
            ):
                next_root = authorities.create_next_root(self._kube, self._config, body, now)
                state = rotation.start(
                    state,
                    old_root=inspect.fingerprint_sha256(material.trusted_roots[0]),
                    new_root=inspect.fingerprint_sha256(next_root.certificate),
                    request=request,
                    now=now,
                )
                logger.info("CertificateAuthority %s: root rotation started", name)
                material = authorities.ensure_material(self._kube, self._config, body, now, state)
        except (authorities.AuthorityNotReady, model.InvalidSpec) as error:
            reason = (
                error.reason if isinstance(error, authorities.AuthorityNotReady) else "InvalidRoot"
            )
            self._registry.remove(name, f"CertificateAuthority {name} is not ready: {error}")
            self._scheduler.schedule((AUTHORITY, "", name), now + timedelta(seconds=30))
            ready = conditions.find_condition(current.get("conditions"), conditions.READY)
            if ready is None or (ready.get("reason"), ready.get("message")) != (reason, str(error)):
                logger.warning("CertificateAuthority %s is not ready: %s", name, error)
                self._event(body, reason, str(error))
            return authority.failed_status(
                reason, str(error), current=current, generation=generation, now=now
            )
        self._registry.put(material)

        progress = self._observe_and_push(material, now)
        if state.rotating:
            advanced = rotation.advance(
                state, progress, now=now, delay=self._delay(body.get("spec") or {})
            )
            if advanced.phase is not state.phase:
                logger.info(
                    "CertificateAuthority %s: %s → %s",
                    name,
                    state.phase.value,
                    advanced.phase.value,
                )
                if advanced.phase is rotation.Phase.READY:
                    authorities.finish_rotation(self._kube, self._config, name)
                material = authorities.ensure_material(
                    self._kube, self._config, body, now, advanced
                )
                self._registry.put(material)
                progress = self._observe_and_push(material, now)
            state = advanced
        if state.rotating:
            self._scheduler.schedule((AUTHORITY, "", name), now + ROTATION_STEP)
        else:
            self._scheduler.schedule(
                (AUTHORITY, "", name),
                min(
                    authority.intermediate_renewal_time(material.intermediate.certificate),
                    authority.root_renewal_time(material.root.certificate),
                ),
            )
        metrics.authority_state(
            name,
            material.trusted_roots[0].not_valid_after_utc,
            material.intermediate.certificate.not_valid_after_utc,
            state.phase.value,
        )
        status = authority.ready_status(material, current=current, generation=generation, now=now)
        status.update(rotation.to_status(state, progress))
        return status

    def _refuse_rotation(
        self, body: Mapping[str, Any], state: rotation.RotationState, request: str | None
    ) -> rotation.RotationState:
        """A supplied root is never replaced by a generated one, neither on request nor when
        it nears its end: a request is answered once, with a Warning event, and recorded."""
        if request is None or request == state.honoured_request or state.rotating:
            return state
        secret = authorities.supplied_root_name(body.get("spec") or {})
        message = (
            f"root rotation requested at {request} refused: the root is supplied by "
            f"spec.rootSecretRef (Secret {self._config.namespace}/{secret}) and certsmith never "
            "replaces it with a generated one; to change roots, point spec.rootSecretRef at "
            "a Secret holding the new root"
        )
        logger.warning("CertificateAuthority %s: %s", body["metadata"]["name"], message)
        self._event(body, "RotationRefused", message)
        return replace(state, honoured_request=request)

    def _event(self, body: Mapping[str, Any], reason: str, message: str) -> None:
        try:
            self._kube.post_event(
                involved=body,
                event_type="Warning",
                reason=reason,
                message=message,
                now=conditions.format_time(self._clock()),
                component=self._config.component,
            )
        except ApiError as error:
            logger.warning("could not post event %s: %s", reason, error)

    def _delay(self, spec: Mapping[str, Any]) -> timedelta:
        text = (spec.get("rotation") or {}).get("propagationDelay")
        if not text:
            return DEFAULT_PROPAGATION_DELAY
        return model.parse_duration(text, "spec.rotation.propagationDelay")

    # --- observation and the work it pushes ----------------------------------------------

    def _observe_and_push(
        self, material: authority.AuthorityMaterial, now: datetime
    ) -> rotation.Progress:
        bundles_behind = self.sync_bundles(material)
        new_root = next(
            (
                root
                for root in material.trusted_roots
                if inspect.fingerprint_sha256(root) == material.rotation.new_root
            ),
            material.root.certificate,
        )
        rate = DEFAULT_REISSUE_RATE
        pending: list[tuple[str, str]] = []
        leaves_on_old = total = 0
        for secret in self._kube.list_secrets(label_selector=tls_secret.CERTIFICATE_LABEL):
            contents = tls_secret.parse_secret(secret)
            owner_authority = contents.annotations.get(
                tls_secret.AUTHORITY_ANNOTATION, self._config.default_authority
            )
            if owner_authority != material.name or contents.owner is None:
                continue
            total += 1
            on_old = not contents.intermediates or not inspect.issued_by(
                contents.intermediates[0], new_root
            )
            leaves_on_old += on_old
            bundle_ok = contents.ca_pem == material.bundle_pem
            bundles_behind += not bundle_ok
            if not bundle_ok or (on_old and material.rotation.signs_with_new_root):
                namespace = secret["metadata"]["namespace"]
                pending.append((namespace, contents.owner))
        for index, (namespace, name) in enumerate(pending):
            due = now + timedelta(seconds=index / rate)
            scheduled = self._scheduler.when((CERTIFICATE, namespace, name))
            if scheduled is None or scheduled > due:
                self._scheduler.schedule((CERTIFICATE, namespace, name), due)
        return rotation.Progress(
            bundles_behind=bundles_behind, leaves_on_old_root=leaves_on_old, total_leaves=total
        )

    def sync_bundles(self, material: authority.AuthorityMaterial) -> int:
        """Write the authority's trust bundle where it is missing or stale; return failures."""
        if material.bundle_config_map is None:
            return 0
        existing = {
            item["metadata"]["namespace"]: item
            for item in self._kube.list_configmaps(
                label_selector=f"{trust_bundle.BUNDLE_LABEL}={material.name}"
            )
            if item["metadata"]["name"] == material.bundle_config_map
        }
        failures = 0
        for namespace in self._kube.list_namespaces():
            metadata = namespace["metadata"]
            if metadata.get("deletionTimestamp"):
                continue
            if not isolation.selector_matches(
                material.bundle_selector, metadata.get("labels") or {}
            ):
                continue
            try:
                self.put_bundle(material, metadata["name"], existing.get(metadata["name"]))
            except ApiError as error:
                failures += 1
                logger.warning("trust bundle in %s not written: %s", metadata["name"], error)
        return failures

    def put_bundle(
        self,
        material: authority.AuthorityMaterial,
        namespace: str,
        existing: Mapping[str, Any] | None,
    ) -> None:
        assert material.bundle_config_map is not None
        if existing is not None and trust_bundle.is_current(
            existing, material.bundle_pem, material.name
        ):
            return
        stored = self._kube.put_configmap(
            body=trust_bundle.bundle_configmap(
                name=material.bundle_config_map,
                namespace=namespace,
                authority=material.name,
                pem=material.bundle_pem,
                resource_version=(existing or {}).get("metadata", {}).get("resourceVersion"),
            )
        )
        self.own_bundle_versions[(namespace, material.bundle_config_map)] = stored["metadata"][
            "resourceVersion"
        ]
