"""Keep each CertificateAuthority working: load or bootstrap its keys, renew its
intermediate, distribute its trust bundles and drive root rotations (rotation.py) to the end.

One step reads the state from the cluster, decides with the pure rotation state machine and
pushes the work (bundles written here; Secrets' ca.crt and re-issues through the
per-Certificate reconciler, spread at `spec.rotation.reissueRate` and paced by the shared
ReissuePacer). Steps repeat every couple of seconds while a rotation runs, so a restarted
operator picks up from the status.

A rotation waits only for what certsmith is responsible for: the Secrets of Certificates that
exist and name them (a Secret left behind by a deleted Certificate or a changed secretName
is not maintained any more), and the bundle ConfigMaps it manages. What holds a phase for
longer than rotation.STALL_AFTER is named in status.rotation.blockers, the RotationBlocked
condition and a Warning event.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from cryptography import x509

from certsmith import metrics
from certsmith.api import conditions, model, names, times
from certsmith.authorities import (
    authority,
    cluster_trust_bundle,
    crl_publisher,
    pod_certificates,
    revocation,
    rotation,
    store,
    trust_bundle,
)
from certsmith.certificates import isolation, tls_secret
from certsmith.config import Config
from certsmith.kube import ApiError, ClaimLapsed, Kube
from certsmith.pki import crl, inspect, name_constraints
from certsmith.scheduler import Scheduler

logger = logging.getLogger(__name__)

AUTHORITY = "CertificateAuthority"
CERTIFICATE = "Certificate"
ROTATION_STEP = timedelta(seconds=2)
SECRETS_PAGE = 2500
"""Secrets per list request when a step looks at every leaf (`limit`, Kubernetes' chunking):
4 requests at 10,000 (a restart's start-up counts them), ~10 MiB of JSON and ~12 MiB of
objects held per page (a leaf Secret is ~4 KB)."""
BUNDLE_RETRY = timedelta(seconds=30)
"""How soon an authority looks again at bundles it could not write (a foreign ConfigMap
going away produces no event certsmith watches)."""


NOT_READY_RETRY = timedelta(seconds=30)
"""How soon an authority that cannot sign is looked at again."""
STATUS_WRITE_ATTEMPTS = 5
"""Conditional status writes tried before a step gives up (others' writes to the object,
e.g. kopf's annotations, move its resourceVersion)."""
ROTATION_RESUMED = "RotationResumed"
"""The event of an authority created again that carries on its predecessor's rotation."""
INVALID_PARENT = "InvalidParent"
"""The reason of a subordinate whose spec.parentRef can never sign it (itself, a cycle, a
parent that is itself a subordinate)."""


class BundleSync(NamedTuple):
    """What `sync_bundles` could not write."""

    problems: tuple[rotation.Lagging, ...]
    """Every bundle ConfigMap not written, with the reason (BundleConflict first in status)."""
    awaited: tuple[rotation.Lagging, ...]
    """The part of `problems` this authority owns, which a rotation waits for."""


class Observation(NamedTuple):
    """What one look at the cluster found for an authority."""

    progress: rotation.Progress
    bundle_problems: tuple[rotation.Lagging, ...]
    cluster_bundle: rotation.Lagging | None
    """Why its ClusterTrustBundle could not be written (None: written, or not served)."""


class _Loaded(NamedTuple):
    settings: rotation.Rotation
    material: authority.AuthorityMaterial
    state: rotation.RotationState


class AuthorityController:
    """Steps each CertificateAuthority (one step at a time per authority, from any thread)
    and writes its trust bundles; runs in the Lease holder only."""

    def __init__(
        self,
        *,
        kube: Kube,
        config: Config,
        registry: store.AuthorityRegistry,
        scheduler: Scheduler,
        clock: Callable[[], datetime],
        pacer: rotation.ReissuePacer,
        cluster_trust_bundles: str | None,
    ) -> None:
        """`cluster_trust_bundles`: the served version of certificates.k8s.io's
        ClusterTrustBundles ("v1", "v1beta1"), None when the cluster does not serve them."""
        self._kube = kube
        self._pacer = pacer
        self._ctb_version = cluster_trust_bundles
        self._config = config
        self._registry = registry
        self._scheduler = scheduler
        self._clock = clock
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        # The resourceVersion of every bundle ConfigMap write, to tell our own writes' watch
        # events from others' edits.
        self._bundle_versions: dict[tuple[str, str], str] = {}
        # The uid of every bundle ConfigMap certsmith created or wrote: still certsmith's if
        # someone strips both its label and its annotation while the operator runs.
        self._bundle_uids: dict[tuple[str, str], str] = {}
        # The same for each authority's ClusterTrustBundle, by its name.
        self._ctb_versions: dict[str, str] = {}
        self._ctb_uids: dict[str, str] = {}
        self._crls = crl_publisher.CrlPublisher(kube=kube, config=config, event=self.event)
        # When each authority's revocation record next changes by itself (its CRL is due
        # again, an entry expires): a step is scheduled no later than that.
        self._crl_due: dict[str, datetime] = {}
        # Each authority's CRLPublished condition, as its last step found it.
        self._crl_condition: dict[str, conditions.Condition] = {}
        # Per thread: the Certificates a term's start listed, for the step it runs there.
        self._listed = threading.local()
        # The namespaces each authority's latest step listed to write its bundles: one the
        # namespaces' watch lists later that a step did not see appeared after that step.
        self._namespaces_stepped: dict[str, frozenset[str]] = {}

    @contextlib.contextmanager
    def certificates_listed(self, items: Sequence[dict[str, Any]]) -> Iterator[None]:
        """Around a step this thread runs: its authority's Certificates are taken from
        `items`, a list of every Certificate the caller has just made (a term's start,
        which needs it too), not listed again: at 10,000 the list is seconds to decode."""
        self._listed.items = items
        try:
            yield
        finally:
            self._listed.items = None

    def is_own_bundle_write(self, namespace: str, name: str, resource_version: str) -> bool:
        """Whether a bundle ConfigMap's watch event only echoes a write made here."""
        return self._bundle_versions.get((namespace, name)) == resource_version

    def forget_namespace(self, namespace: str) -> None:
        """The namespace was deleted: drop what was remembered of bundle writes there."""
        for cache in (self._bundle_versions, self._bundle_uids):
            for key in list(cache):  # a copy: bundle writes add entries from other threads
                if key[0] == namespace:
                    cache.pop(key, None)

    def namespace_unseen(self, namespace: str) -> bool:
        """Whether an authority's latest step listed the namespaces before `namespace`
        existed (so it wrote no bundle there): the namespaces' first list of a term writes
        bundles only in such a namespace, the steps having written the others."""
        with self._guard:
            return any(namespace not in seen for seen in self._namespaces_stepped.values())

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def step(self, body: Mapping[str, Any]) -> str | None:
        """Advance the authority by one step and write its status (nothing when it is gone);
        the resourceVersion the write left (None: gone). ApiError when the apiserver does
        not answer."""
        name = body["metadata"]["name"]
        with self._lock(name), self._listing_authorities_once():
            # Read it fresh: a watch event's body may predate our own last status write,
            # and stepping from a stale phase could undo progress (or revive a deleted one).
            fresh = self._kube.get_authority(name=name)
            if fresh is None:
                self._forget(name)
                return None
            status = self._step(fresh)
            # Written under the lock: a step that read the status before this one's write
            # would act on the phase before (re-issuing the intermediate under the old root
            # in Reissuing), and a write after the lock (kopf's own patch) could overwrite a
            # newer step's status with this older one.
            return self._write_status(fresh, status)

    @contextlib.contextmanager
    def _listing_authorities_once(self) -> Iterator[None]:
        """Around a step: the authorities it looks at (subordinates, bundle claims) are
        listed once, at its first look, not once per look."""
        self._listed.stepping, self._listed.authorities = True, None
        try:
            yield
        finally:
            self._listed.stepping, self._listed.authorities = False, None

    def _list_authorities(self) -> list[dict[str, Any]]:
        """Every CertificateAuthority: as first listed in the step this thread runs, else
        read now."""
        listed: list[dict[str, Any]] | None = getattr(self._listed, "authorities", None)
        if listed is None:
            listed = self._kube.list_authorities()
            if getattr(self._listed, "stepping", False):
                self._listed.authorities = listed
        return listed

    def _write_status(self, fresh: Mapping[str, Any], status: Mapping[str, Any]) -> str | None:
        """Write `status` on the very object the step read (its uid), never on one created
        again under that name meanwhile: that one starts from its own status (a rotation
        resumed from its Secrets), not from its predecessor's. The write is conditional on
        the resourceVersion; when that moved, the object is read again and the write retried
        only if it is still the same object. The resourceVersion written (None: not
        written, the object gone or another one)."""
        name, uid = fresh["metadata"]["name"], fresh["metadata"].get("uid")
        version = fresh["metadata"].get("resourceVersion")
        for _ in range(STATUS_WRITE_ATTEMPTS):
            try:
                written = self._kube.patch_authority_status(
                    name=name, status=status, resource_version=version
                )
                return str(written["metadata"].get("resourceVersion") or "") or None
            except ApiError as error:
                if error.not_found:
                    self._forget(name)
                    return None
                if not error.conflict:
                    raise
            current = self._kube.get_authority(name=name)
            if current is None:
                self._forget(name)
                return None
            if current["metadata"].get("uid") != uid:
                logger.info(
                    "CertificateAuthority %s was deleted and created again during a step: "
                    "its status is not written on the new one",
                    name,
                )
                return None
            version = current["metadata"].get("resourceVersion")
        raise ApiError(409, "Conflict", f"CertificateAuthority {name} kept changing")

    def forget(self, name: str) -> None:
        """The authority was deleted: it signs nothing more. Under its lock, so a step that
        was under way cannot put it back."""
        with self._lock(name):
            self._forget(name)

    def _forget(self, name: str) -> None:
        self._registry.remove(name, store.does_not_exist(name))
        with self._guard:
            self._namespaces_stepped.pop(name, None)
        self._crls.release_deleted(name)
        self._scheduler.cancel((AUTHORITY, "", name))
        metrics.authority_forgotten(name)
        self.wake_subordinates(name, self._clock())

    def _step(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Gather the authority's material (bootstrapping or rotating it), push bundles and
        re-issues, advance a rotation, schedule the next step; the status to write."""
        now = self._clock()
        state = rotation.from_status(body.get("status") or {})
        try:
            settings, material, state = self._load(body, state, now)
        except (store.AuthorityNotReady, model.InvalidSpec) as error:
            return self._not_ready(body, error, now)
        before = self._registry.get(material.name)
        material = self._with_crl(body, material, now)
        self._registry.put(material)
        self.wake_subordinates(material.name, now)
        self._rejudge_revoked(material, before, now)
        self._apply_rate(material.name, settings.reissue_rate, now)
        # From the root Secrets read fresh above: the bound is written there before any pod
        # certificate under the old root is handed out, so no such certificate is missed.
        pods = (
            *rotation.pod_certificates_lagging(material.refresh_bounds, state, now=now),
            # Likewise written before a Kubernetes CSR's certificate leaves.
            *rotation.signing_requests_lagging(material.csr_bounds, state, now=now),
        )
        observed = self._observe_and_push(material, settings.reissue_rate, now, pods)
        if state.rotating:
            advanced = rotation.advance(
                state, observed.progress, now=now, delay=settings.propagation_delay
            )
            if advanced.phase is not state.phase:
                try:
                    material = self._enter_phase(body, state, advanced, now)
                except store.AuthorityNotReady as error:
                    # Its keys changed under the step (a Secret deleted, unwritable): it
                    # stops signing now, as at the start of a step.
                    return self._not_ready(body, error, now)
                observed = self._observe_and_push(material, settings.reissue_rate, now, pods)
            state = advanced
        state = rotation.track(state, observed.progress, now=now)
        blocking = rotation.blockers(state, observed.progress, now=now)
        cluster_bundle = () if observed.cluster_bundle is None else (observed.cluster_bundle,)
        self._schedule_next_step(
            material, state, (*observed.bundle_problems, *cluster_bundle), now, self._clock()
        )
        metrics.authority_state(
            material.name,
            material.trusted_roots[0].not_valid_after_utc,
            material.intermediate.certificate.not_valid_after_utc,
            state.phase.value,
        )
        status = _step_status(
            body,
            material,
            state,
            observed,
            blocking,
            now,
            served_cluster_trust_bundles=self._ctb_version is not None,
            crl=self._crl_condition.get(material.name),
        )
        self._report(body, body.get("status") or {}, status, blocking)
        return status

    def _load(
        self, body: Mapping[str, Any], state: rotation.RotationState, now: datetime
    ) -> _Loaded:
        """The validated settings, the material to sign with, and the rotation state (a
        rotation started when requested or due, a request refused for a supplied root).
        AuthorityNotReady or InvalidSpec when the authority cannot sign."""
        spec = body.get("spec") or {}
        request = (body["metadata"].get("annotations") or {}).get(names.ROTATE_ANNOTATION)
        settings = rotation.parse_rotation(spec)
        trust_bundle.check_selector((spec.get("trustBundle") or {}).get("namespaceSelector"))
        parent = authority.parent_name(spec)
        if parent is not None:
            return self._load_subordinate(body, parent, state, request, settings, now)
        state = self._resume_rotation(body, state, request, now)
        material = store.ensure_material(self._kube, self._config, body, now, state)
        if store.supplied_root_name(spec):
            state = self._refuse_rotation(body, state, request)
        elif rotation.should_start(
            state,
            request=request,
            root_renewal=authority.root_renewal_time(material.trusted_roots[0]),
            now=now,
        ):
            next_root = store.create_next_root(self._kube, self._config, body, now)
            state = rotation.start(
                state,
                old_root=inspect.fingerprint_sha256(material.trusted_roots[0]),
                new_root=inspect.fingerprint_sha256(next_root.certificate),
                request=request,
                now=now,
            )
            logger.info("CertificateAuthority %s: root rotation started", material.name)
            material = store.ensure_material(self._kube, self._config, body, now, state)
        return _Loaded(settings, material, state)

    def _load_subordinate(
        self,
        body: Mapping[str, Any],
        parent: str,
        state: rotation.RotationState,
        request: str | None,
        settings: rotation.Rotation,
        now: datetime,
    ) -> _Loaded:
        """A subordinate's material, its intermediate signed by the parent's current root.
        It has no rotation of its own: it follows the parent's (its material carries the
        parent's rotation state, so its leaves move when the parent's do), while its own
        status stays Ready; a rotation request on it is refused."""
        name = body["metadata"]["name"]
        if (body.get("spec") or {}).get("rootSecretRef"):
            raise model.InvalidSpec(
                "spec.rootSecretRef", "a subordinate (spec.parentRef) has no root of its own"
            )
        parent_material = self._registry.get(parent)
        if parent_material is not None:
            grandparent = parent_material.parent
        else:
            # Not loaded: read it, so a cycle is refused as such, not awaited forever.
            parent_body = None if parent == name else self._kube.get_authority(name=parent)
            grandparent = authority.parent_name((parent_body or {}).get("spec") or {})
        problem = authority.parent_problem(name, parent, grandparent)
        if problem is not None:
            raise store.AuthorityNotReady(problem, reason=INVALID_PARENT)
        if parent_material is None:
            why = self._registry.why_unavailable(parent, self._kube)
            raise store.AuthorityNotReady(
                f"spec.parentRef.name: {why}; this subordinate signs once its parent is ready",
                reason=store.PARENT_NOT_READY,
            )
        material = store.ensure_material(
            self._kube, self._config, body, now, state, parent=parent_material
        )
        own = rotation.RotationState(rotation.Phase.READY, honoured_request=state.honoured_request)
        return _Loaded(settings, material, self._refuse_rotation(body, own, request))

    def wake_subordinates(self, parent: str, now: datetime) -> None:
        """Step, now, every subordinate of `parent` whose loaded material no longer matches
        the parent's (another root signs, other roots trusted, another rotation phase) or
        that is not loaded at all (waiting for its parent): a parent that appears, rotates or
        goes away is followed at once, not at the subordinate's next retry; one whose
        constraints the parent's no longer contain is stopped at once too."""
        loaded = self._registry.get(parent)
        for item in self._list_authorities():
            spec = item.get("spec") or {}
            if authority.parent_name(spec) != parent:
                continue
            name = item["metadata"]["name"]
            mine = self._registry.get(name)
            if (
                loaded is None
                or mine is None
                or mine.root.certificate != loaded.root.certificate
                or mine.trusted_roots != loaded.trusted_roots
                or mine.rotation.phase is not loaded.rotation.phase
                or name_constraints.outside_parent(
                    mine.name_constraints, loaded.name_constraints, parent_name=parent
                )
            ):
                self._scheduler.schedule((AUTHORITY, "", name), now)

    def _resume_rotation(
        self,
        body: Mapping[str, Any],
        state: rotation.RotationState,
        request: str | None,
        now: datetime,
    ) -> rotation.RotationState:
        """An authority created (again) whose status names no root yet, while the Secrets of
        a rotation under way when an authority of that name was deleted are still there:
        that rotation carries on from Distributing (both roots trusted again, in every
        bundle, before anything is signed under the new one), with a Warning event. Going
        back to the old root alone would drop the new root, under which leaves and pod
        certificates may already be signed, from every bundle."""
        if (
            state.rotating
            or (body.get("status") or {}).get("trustedRoots")
            or store.supplied_root_name(body.get("spec") or {})
        ):
            return state
        name = body["metadata"]["name"]
        roots = store.leftover_rotation(self._kube, self._config, name)
        if roots is None:
            return state
        old_root, new_root = roots
        message = (
            f"root rotation resumed: Secret {self._config.namespace}/"
            f"{authority.next_root_secret_name(name)} holds the new root (sha256 {new_root}) of "
            f"a rotation that was under way when CertificateAuthority {name} was deleted; both "
            "roots are trusted again and the rotation carries on from Distributing"
        )
        logger.warning("CertificateAuthority %s: %s", name, message)
        self.warning_event(body, ROTATION_RESUMED, message)
        return rotation.start(state, old_root=old_root, new_root=new_root, request=request, now=now)

    def _rejudge_revoked(
        self,
        material: authority.AuthorityMaterial,
        before: authority.AuthorityMaterial | None,
        now: datetime,
    ) -> None:
        """Reconcile now each Certificate whose serial was just revoked: it is judged with
        the material just put (Ready=False, reason Revoked, when not re-issued), not with
        the one a reconcile raced by the revocation's own write may have read."""
        newly = material.revoked - (before.revoked if before is not None else frozenset())
        if not newly:
            return
        for (namespace, _, certificate), item in self._certificates_of({material.name}).items():
            serial = (item.get("status") or {}).get("serialNumber")
            try:
                held = crl.parse_serial(str(serial)) if serial else None
            except ValueError:
                continue
            if held in newly:
                self._scheduler.schedule((CERTIFICATE, namespace, certificate), now)

    def _apply_rate(self, name: str, rate: int, now: datetime) -> None:
        """Apply the authority's reissueRate; re-issues whose slot moved run at their new one."""
        for (namespace, certificate), when in self._pacer.set_rate(name, rate, now=now).items():
            self._scheduler.schedule((CERTIFICATE, namespace, certificate), when)

    def _enter_phase(
        self,
        body: Mapping[str, Any],
        state: rotation.RotationState,
        advanced: rotation.RotationState,
        now: datetime,
    ) -> authority.AuthorityMaterial:
        """Move the rotation to `advanced`'s phase (at Ready: the new root becomes the root)
        and load the material it signs with; AuthorityNotReady if it cannot."""
        name = body["metadata"]["name"]
        logger.info(
            "CertificateAuthority %s: %s → %s", name, state.phase.value, advanced.phase.value
        )
        if advanced.phase is rotation.Phase.READY:
            store.finish_rotation(self._kube, self._config, name)
            self._pacer.reset(name)
        material = store.ensure_material(self._kube, self._config, body, now, advanced)
        material = self._with_crl(body, material, now)
        self._registry.put(material)
        self.wake_subordinates(name, now)
        return material

    def revocation_requested(
        self, authority_name: str, kind: str, namespace: str, name: str
    ) -> None:
        """A Certificate or CertificateRequest (`kind`) asks to be revoked: read at the
        authority's next step (crl_publisher)."""
        self._crls.requested(authority_name, kind, namespace, name)

    def _with_crl(
        self, body: Mapping[str, Any], material: authority.AuthorityMaterial, now: datetime
    ) -> authority.AuthorityMaterial:
        """Apply the revocations asked for and publish the CRL signed by the intermediate
        that signs now (crl_publisher); the material carrying it, for the bundles."""
        try:
            published = self._crls.publish(body, material, now)
        except Exception as error:  # any fault here never stops the authority's other work
            if isinstance(error, ClaimLapsed):  # the next leader publishes them
                logger.info("CertificateAuthority %s: CRLs %s", material.name, error.message)
            else:
                logger.exception(
                    "CertificateAuthority %s: the CRLs could not be updated", material.name
                )
            previous = self._registry.get(material.name)
            published = crl_publisher.Published(
                replace(
                    material,
                    crl_pem=previous.crl_pem if previous is not None else "",
                    revoked=previous.revoked if previous is not None else frozenset(),
                ),
                now + crl_publisher.FINISH_RETRY,
                (
                    crl_publisher.PUBLISH_FAILED,
                    f"the CRLs could not be updated ({error}); tried again in "
                    f"{int(crl_publisher.FINISH_RETRY.total_seconds())} s",
                ),
            )
        problem = published.problem
        if problem is not None:
            self._crls.report_stale(published.material)
        try:
            revocation.crl_url(body.get("spec") or {})
        except model.InvalidSpec as error:
            url_problem = f"{error}: leaves are signed without a CRL distribution point"
            problem = (
                ("InvalidSpec", url_problem)
                if problem is None
                else (problem[0], f"{problem[1]}; {url_problem}")
            )
        self._crl_condition[material.name] = revocation.published_condition(
            published.number, problem
        )
        if published.next_change is None:
            self._crl_due.pop(material.name, None)
        else:
            self._crl_due[material.name] = published.next_change
        return published.material

    def _schedule_next_step(
        self,
        material: authority.AuthorityMaterial,
        state: rotation.RotationState,
        bundle_problems: tuple[rotation.Lagging, ...],
        now: datetime,
        done: datetime,
    ) -> None:
        """While rotating, rotation.step_interval after this step (begun `now`, `done`
        now); else when the intermediate or the root is due, or BUNDLE_RETRY when a bundle
        could not be written."""
        if state.rotating:
            next_step = done + rotation.step_interval(done - now, minimum=ROTATION_STEP)
        else:
            next_step = min(
                authority.intermediate_renewal_time(material.intermediate.certificate),
                authority.root_renewal_time(material.root.certificate),
            )
            if bundle_problems:
                next_step = min(next_step, now + BUNDLE_RETRY)
            crl_due = self._crl_due.get(material.name)
            if crl_due is not None:
                next_step = min(next_step, crl_due)
        self._scheduler.schedule((AUTHORITY, "", material.name), next_step)

    def _not_ready(
        self,
        body: Mapping[str, Any],
        error: store.AuthorityNotReady | model.InvalidSpec,
        now: datetime,
    ) -> dict[str, Any]:
        """Stop signing, retry in NOT_READY_RETRY; Ready=False with the reason, and a Warning event
        only when the reason or message changed (not every retry)."""
        name = body["metadata"]["name"]
        current = body.get("status") or {}
        self._registry.remove(name, f"CertificateAuthority {name} is not ready: {error}")
        self._scheduler.schedule((AUTHORITY, "", name), now + NOT_READY_RETRY)
        reason = error.reason if isinstance(error, store.AuthorityNotReady) else "InvalidSpec"
        ready = conditions.find_condition(current.get("conditions"), conditions.READY)
        if ready is None or (ready.get("reason"), ready.get("message")) != (reason, str(error)):
            logger.warning("CertificateAuthority %s is not ready: %s", name, error)
            self.warning_event(body, reason, str(error))
        return authority.failed_status(
            reason,
            str(error),
            current=current,
            generation=body["metadata"].get("generation"),
            now=now,
        )

    def _report(
        self,
        body: Mapping[str, Any],
        current: Mapping[str, Any],
        status: Mapping[str, Any],
        blocking: tuple[rotation.Lagging, ...],
    ) -> None:
        """Warning events when blockers or bundle problems appear or change (not every step);
        an unserved ClusterTrustBundle API is said once at start, not per authority."""
        name = body["metadata"]["name"]
        shown = rotation.describe_blockers(blocking)
        if blocking and shown != (current.get("rotation") or {}).get("blockers"):
            logger.warning("CertificateAuthority %s: rotation blocked by %s", name, shown)
            blocked = conditions.find_condition(status["conditions"], rotation.ROTATION_BLOCKED)
            self.warning_event(
                body, rotation.ROTATION_BLOCKED, str((blocked or {}).get("message", ""))
            )
        for kind in (
            trust_bundle.BUNDLES_SYNCED,
            cluster_trust_bundle.SYNCED,
            revocation.PUBLISHED,
        ):
            synced = conditions.find_condition(status["conditions"], kind)
            before = conditions.find_condition(current.get("conditions"), kind)
            if (
                synced is not None
                and synced["status"] == "False"
                and synced["reason"] != cluster_trust_bundle.NOT_SERVED
                and (before is None or before.get("message") != synced["message"])
            ):
                logger.warning("CertificateAuthority %s: %s", name, synced["message"])
                self.warning_event(body, str(synced["reason"]), str(synced["message"]))

    def _refuse_rotation(
        self, body: Mapping[str, Any], state: rotation.RotationState, request: str | None
    ) -> rotation.RotationState:
        """A supplied root is never replaced by a generated one, neither on request nor when
        it nears its end: a request is answered once, with a Warning event, and recorded."""
        if request is None or request == state.honoured_request or state.rotating:
            return state
        spec = body.get("spec") or {}
        secret = store.supplied_root_name(spec)
        parent = authority.parent_name(spec)
        if parent is not None:
            message = (
                f"root rotation requested at {request} refused: a subordinate has no root of "
                f"its own, it uses its parent's (spec.parentRef.name {parent}) and follows its "
                f"rotations; request the rotation on CertificateAuthority {parent}"
            )
        else:
            message = (
                f"root rotation requested at {request} refused: the root is supplied by "
                f"spec.rootSecretRef (Secret {self._config.namespace}/{secret}) and certsmith "
                "never replaces it with a generated one; to change roots, point "
                "spec.rootSecretRef at a Secret holding the new root"
            )
        logger.warning("CertificateAuthority %s: %s", body["metadata"]["name"], message)
        self.warning_event(body, "RotationRefused", message)
        return replace(state, honoured_request=request)

    def warning_event(self, body: Mapping[str, Any], reason: str, message: str) -> None:
        """A Warning Event about authority `body` (`kubectl describe ca`); one lost to the
        apiserver is only logged."""
        self.event(body, "Warning", reason, message)

    def event(
        self, involved: Mapping[str, Any], event_type: str, reason: str, message: str
    ) -> None:
        """An Event of `event_type` ("Normal", "Warning") about the object `involved`, as
        read; one lost to the apiserver is only logged."""
        try:
            self._kube.post_event(
                involved=involved,
                event_type=event_type,
                reason=reason,
                message=message,
                now=times.format_time(self._clock()),
                component=self._config.component,
            )
        except ApiError as error:  # an event lost must not stop the step
            logger.warning("could not post event %s: %s", reason, error)

    # --- observation and the work it pushes ----------------------------------------------

    def _observe_and_push(
        self,
        material: authority.AuthorityMaterial,
        rate: int,
        now: datetime,
        pods: tuple[rotation.Lagging, ...],
    ) -> Observation:
        """Write bundles (ConfigMaps and the authority's ClusterTrustBundle),
        look at every Secret this authority is responsible for, schedule what must change
        (spread at `rate` per second); the progress (with `pods`, the pod certificates and
        Kubernetes CSR certificates a rotation waits for), and the bundles that could not be
        written (a rotation waits for the ClusterTrustBundle as for its own ConfigMaps)."""
        bundles = self.sync_bundles(material)
        cluster_bundle = self._sync_cluster_trust_bundle(material)
        leaves = self._observe_leaves(material)
        self._push(material.name, leaves.pending, rate, now)
        progress = rotation.Progress(
            behind=(
                *bundles.awaited,
                *(() if cluster_bundle is None else (cluster_bundle,)),
                *leaves.behind,
            ),
            on_old_root=tuple(leaves.on_old_root),
            total_leaves=leaves.total,
            pod_certificates=pods,
        )
        return Observation(progress, bundles.problems, cluster_bundle)

    def _observe_leaves(self, material: authority.AuthorityMaterial) -> _Leaves:
        """Judge the Secret of each of the authority's Certificates (`_Leaves.judge`)."""
        new_root = next(
            (
                root
                for root in material.trusted_roots
                if inspect.fingerprint_sha256(root) == material.rotation.new_root
            ),
            material.root.certificate,
        )
        # A parent's rotation waits for its subordinates' leaves too: they chain to its roots.
        # Read from the API, not the loaded materials: a subordinate that cannot sign now
        # (InvalidSpec, say) still has leaves under the old root, which must hold the rotation.
        subordinates = {
            item["metadata"]["name"]
            for item in self._list_authorities()
            if ((item.get("spec") or {}).get("parentRef") or {}).get("name") == material.name
        }
        certificates = self._certificates_of({material.name, *subordinates})
        leaves = _Leaves()
        # Page by page: the Secrets of 10,000 Certificates, keys included, are tens of MB
        # as JSON and several times that as objects; a page is judged and dropped.
        for secret in self._kube.iterate_secrets(
            label_selector=names.CERTIFICATE_LABEL, page_size=SECRETS_PAGE
        ):
            namespace, secret_name = secret["metadata"]["namespace"], secret["metadata"]["name"]
            # Only the chain and ca.crt are judged here; the reconciler checks the key.
            contents = tls_secret.parse_secret(secret, with_key=False)
            certificate = certificates.get((namespace, secret_name, contents.owner or ""))
            if certificate is None:
                # Left behind (its Certificate deleted or pointing elsewhere), or another
                # authority's: not maintained by this authority, so nothing to wait for.
                continue
            leaves.judge(
                (namespace, secret_name),
                contents,
                certificate,
                material=material,
                new_root=new_root,
            )
        return leaves

    def _push(
        self, authority_name: str, pending: list[rotation.CertificateKey], rate: int, now: datetime
    ) -> None:
        """Schedule the re-issue of each pending Certificate, `rate` per second from `now`
        (sooner if it is scheduled sooner already), unless the pacer holds a slot for it."""
        spacing = timedelta(seconds=1 / rate)
        for index, key in enumerate(pending):
            if self._pacer.holds(authority_name, key, now=now):
                continue  # it comes back at its reserved slot
            due = now + index * spacing
            scheduled = self._scheduler.when((CERTIFICATE, *key))
            if scheduled is None or scheduled > due:
                self._scheduler.schedule((CERTIFICATE, *key), due)

    def _certificates_of(
        self, authority_names: set[str]
    ) -> dict[tuple[str, str, str], dict[str, Any]]:
        """The Certificates of these authorities by (namespace, secretName, name)."""
        found = {}
        listed: Sequence[dict[str, Any]] | None = getattr(self._listed, "items", None)
        for item in self._kube.list_certificates() if listed is None else listed:
            spec = item.get("spec") or {}
            issuer = (spec.get("issuerRef") or {}).get("name", model.DEFAULT_ISSUER)
            secret_name = spec.get("secretName")
            if issuer in authority_names and isinstance(secret_name, str):
                metadata = item["metadata"]
                found[(metadata["namespace"], secret_name, metadata["name"])] = item
        return found

    def _selected_namespaces(
        self, material: authority.AuthorityMaterial
    ) -> dict[str, Mapping[str, str]]:
        """The labels of every namespace the authority's bundle selector selects, by name."""
        found: dict[str, Mapping[str, str]] = {}
        listed = self._kube.list_namespaces()
        for namespace in listed:
            labels = namespace["metadata"].get("labels") or {}
            if not namespace["metadata"].get("deletionTimestamp") and isolation.selector_matches(
                material.bundle_selector, labels
            ):
                found[namespace["metadata"]["name"]] = labels
        seen = frozenset(namespace["metadata"]["name"] for namespace in listed)
        with self._guard:
            self._namespaces_stepped[material.name] = seen
        return found

    def bundle_claims(self) -> list[trust_bundle.Claim]:
        """Every authority's claim on a bundle name, read now (within a step: as it listed
        them), trust_bundle.rightful_owner."""
        return trust_bundle.claims(
            self._list_authorities(), default_authority=self._config.default_authority
        )

    def sync_bundles(self, material: authority.AuthorityMaterial) -> BundleSync:
        """Write the authority's trust bundle wherever it is the rightful owner and the
        ConfigMap is missing, stale or edited (found by name, labelled or not). Returns what
        could not be written, and the part of it a rotation waits for: a namespace where
        another authority owns the name is reported (BundleConflict) but never waited on."""
        if material.bundle_config_map is None:
            return BundleSync((), ())
        found = self.bundle_claims()
        existing = {
            item["metadata"]["namespace"]: item
            for item in self._kube.list_configmaps(name=material.bundle_config_map)
        }
        problems, awaited = [], []
        for namespace, labels in self._selected_namespaces(material).items():
            contenders = trust_bundle.candidates(
                found, config_map=material.bundle_config_map, namespace_labels=labels
            )
            # None: the listing predates this authority's own spec; it is the only claimant.
            owner = (
                trust_bundle.rightful_owner(
                    contenders, default_authority=self._config.default_authority
                )
                or material.name
            )
            problem = self.put_bundle(material, namespace, existing.get(namespace), owner=owner)
            if problem is not None:
                problems.append(problem)
                if owner == material.name:
                    awaited.append(problem)
        return BundleSync(tuple(problems), tuple(awaited))

    def repair_bundle(self, owner: str, namespace: str, config_map: str) -> rotation.Lagging | None:
        """Create or repair ConfigMap `config_map` in `namespace` (found by name: its label
        may be gone) as its rightful `owner`, if that authority is loaded with this bundle
        name; under the authority's lock, so the roots written are never those of a phase a
        concurrent step just left. What stopped it, or None. ApiError when the apiserver
        does not answer the read."""
        with self._lock(owner):
            material = self._registry.get(owner)
            if material is None or material.bundle_config_map != config_map:
                return None
            existing = self._kube.get_configmap(namespace=namespace, name=config_map)
            return self.put_bundle(material, namespace, existing, owner=owner)

    def put_bundle(
        self,
        material: authority.AuthorityMaterial,
        namespace: str,
        existing: Mapping[str, Any] | None,
        *,
        owner: str,
    ) -> rotation.Lagging | None:
        """Create or repair one bundle ConfigMap if `material` is its rightful `owner`
        (trust_bundle.rightful_owner) and it is certsmith's; what stopped it, or None.

        ApiErrors are returned as problems (named, for status), not raised. None too when the
        authority writes no bundle, and when the namespace is being deleted or gone (its
        bundle with it: kube.ApiError.namespace_closed).
        """
        if material.bundle_config_map is None:
            return None
        key = (namespace, material.bundle_config_map)
        for _ in range(3):
            uid = ((existing or {}).get("metadata") or {}).get("uid")
            verdict = trust_bundle.judge(
                existing,
                authority=material.name,
                owner=owner,
                pem=material.bundle_pem,
                created_here=uid is not None and self._bundle_uids.get(key) == uid,
                crl=material.crl_pem,
            )
            if verdict.action is trust_bundle.Action.CONFLICT:
                return rotation.Lagging(*key, verdict.why, trust_bundle.CONFLICT)
            if verdict.action is trust_bundle.Action.NOTHING:
                if uid is not None:
                    self._bundle_uids[key] = uid
                return None
            try:
                stored = self._kube.put_configmap(
                    body=trust_bundle.bundle_configmap(
                        name=material.bundle_config_map,
                        namespace=namespace,
                        authority=material.name,
                        pem=material.bundle_pem,
                        existing=existing,
                        crl=material.crl_pem,
                    )
                )
            except ApiError as error:
                if error.namespace_closed:
                    return None  # a namespace being deleted needs no bundle
                if not error.conflict:
                    return rotation.Lagging(
                        *key,
                        f"ConfigMap could not be written: {error}",
                        trust_bundle.WRITE_FAILED,
                    )
                # Created or changed meanwhile: judge what is there now.
                try:
                    existing = self._kube.get_configmap(namespace=namespace, name=key[1])
                except ApiError as read_error:
                    return rotation.Lagging(
                        *key,
                        f"ConfigMap could not be read: {read_error}",
                        trust_bundle.WRITE_FAILED,
                    )
                continue
            self._bundle_uids[key] = stored["metadata"]["uid"]
            self._bundle_versions[key] = stored["metadata"]["resourceVersion"]
            return None
        return rotation.Lagging(
            *key, "ConfigMap kept changing while certsmith wrote it", trust_bundle.WRITE_FAILED
        )

    # --- the ClusterTrustBundle -------------------------------------------------------------

    def is_own_cluster_trust_bundle_write(self, name: str, resource_version: str) -> bool:
        """Whether a ClusterTrustBundle's watch event only echoes a write made here."""
        return self._ctb_versions.get(name) == resource_version

    def repair_cluster_trust_bundle(self, authority_name: str) -> rotation.Lagging | None:
        """Someone else created, edited or deleted `authority_name`'s ClusterTrustBundle:
        put it back, under the authority's lock so it never races a step into an older
        phase's roots. What stopped it, or None (also when the authority is not loaded or is
        gone: a deleted authority's bundle is kept as it was, no longer maintained).
        ApiError when the apiserver does not answer."""
        with self._lock(authority_name):
            material = self._registry.get(authority_name)
            if material is None or self._ctb_version is None:
                return None
            if self._kube.get_authority(name=authority_name) is None:
                return None
            return self._sync_cluster_trust_bundle(material)

    def _sync_cluster_trust_bundle(
        self, material: authority.AuthorityMaterial
    ) -> rotation.Lagging | None:
        """Create or repair the authority's ClusterTrustBundle (`material.bundle_pem`) if the
        cluster serves them and it is certsmith's; what stopped it (ApiErrors included,
        named for status), or None."""
        version = self._ctb_version
        if version is None:
            metrics.cluster_trust_bundle_roots(material.name, 0)
            return None
        name = cluster_trust_bundle.bundle_name(material.name)
        problem = self._put_cluster_trust_bundle(version, name, material)
        metrics.cluster_trust_bundle_roots(
            material.name, 0 if problem is not None else len(material.trusted_roots)
        )
        return problem

    def _put_cluster_trust_bundle(
        self, version: str, name: str, material: authority.AuthorityMaterial
    ) -> rotation.Lagging | None:
        def failed(why: str) -> rotation.Lagging:
            return cluster_trust_bundle.lagging(material.name, why, trust_bundle.WRITE_FAILED)

        try:
            existing = self._kube.get_cluster_trust_bundle(version=version, name=name)
        except ApiError as error:
            return failed(f"ClusterTrustBundle could not be read: {error}")
        for _ in range(3):
            found_uid = ((existing or {}).get("metadata") or {}).get("uid")
            verdict = cluster_trust_bundle.judge(
                existing,
                authority=material.name,
                pem=material.bundle_pem,
                created_here=found_uid is not None and self._ctb_uids.get(name) == found_uid,
            )
            if verdict.action is trust_bundle.Action.CONFLICT:
                return cluster_trust_bundle.lagging(
                    material.name, verdict.why, trust_bundle.CONFLICT
                )
            if verdict.action is trust_bundle.Action.NOTHING:
                if found_uid is not None:
                    self._ctb_uids[name] = found_uid
                return None
            try:
                stored = self._kube.put_cluster_trust_bundle(
                    version=version,
                    body=cluster_trust_bundle.bundle_body(
                        authority=material.name,
                        version=version,
                        pem=material.bundle_pem,
                        existing=existing,
                    ),
                )
            except ApiError as error:
                if not error.conflict:
                    return failed(f"ClusterTrustBundle could not be written: {error}")
                # Created or changed meanwhile: judge what is there now.
                try:
                    existing = self._kube.get_cluster_trust_bundle(version=version, name=name)
                except ApiError as read_error:
                    return failed(f"ClusterTrustBundle could not be read: {read_error}")
                continue
            self._ctb_uids[name] = stored["metadata"]["uid"]
            self._ctb_versions[name] = stored["metadata"]["resourceVersion"]
            return None
        return failed("ClusterTrustBundle kept changing while certsmith wrote it")


@dataclass
class _Leaves:
    """The Secrets of an authority's Certificates, as a rotation sees them."""

    behind: list[rotation.Lagging] = field(default_factory=list)
    """Secrets whose ca.crt does not hold the trusted roots yet."""
    on_old_root: list[rotation.Lagging] = field(default_factory=list)
    """Secrets whose leaf does not chain to the new root yet."""
    pending: list[rotation.CertificateKey] = field(default_factory=list)
    """Certificates whose Secret must change now."""
    total: int = 0
    verified: dict[tuple[x509.Certificate, x509.Certificate], bool] = field(default_factory=dict)
    """issued_by per (intermediate, root) (equal when their DER is): every leaf of an
    authority shares a few intermediates, so each signature is checked once per step, not
    once per leaf."""

    def _under(self, intermediate: x509.Certificate, root: x509.Certificate) -> bool:
        pair = (intermediate, root)
        if pair not in self.verified:
            self.verified[pair] = inspect.issued_by(intermediate, root)
        return self.verified[pair]

    def judge(
        self,
        secret: tuple[str, str],
        contents: tls_secret.SecretContents,
        certificate: Mapping[str, Any],
        *,
        material: authority.AuthorityMaterial,
        new_root: x509.Certificate,
    ) -> None:
        """Count the Secret (namespace, name) of `certificate`; note it if its leaf is not
        under `new_root` or its ca.crt lacks a trusted root, and whether to re-issue now."""
        namespace, secret_name = secret
        self.total += 1
        trouble = _trouble(certificate)
        on_old = not contents.intermediates or not self._under(contents.intermediates[0], new_root)
        if on_old:
            why = f"Secret's leaf still chains to the old root{trouble}"
            self.on_old_root.append(rotation.Lagging(namespace, secret_name, why))
        bundle_ok = contents.ca_pem == material.bundle_pem
        if not bundle_ok:
            why = f"Secret's ca.crt does not hold the trusted roots yet{trouble}"
            self.behind.append(rotation.Lagging(namespace, secret_name, why))
        # spec.nameConstraints changed: the leaf moves under the new intermediate (or is
        # refused, its names now outside) at once, not at its renewal. Only the authority's
        # own leaves: a parent also counts its subordinates' here, for its rotation.
        issuer = ((certificate.get("spec") or {}).get("issuerRef") or {}).get(
            "name", model.DEFAULT_ISSUER
        )
        constraints_moved = (
            issuer == material.name
            and bool(contents.intermediates)
            and name_constraints.of_certificate(contents.intermediates[0])
            != name_constraints.of_certificate(material.intermediate.certificate)
        )
        if not bundle_ok or constraints_moved or (on_old and material.rotation.signs_with_new_root):
            self.pending.append((namespace, certificate["metadata"]["name"]))


def _step_status(
    body: Mapping[str, Any],
    material: authority.AuthorityMaterial,
    state: rotation.RotationState,
    observed: Observation,
    blocking: tuple[rotation.Lagging, ...],
    now: datetime,
    *,
    served_cluster_trust_bundles: bool,
    crl: conditions.Condition | None = None,
) -> dict[str, Any]:
    """The status after a step: Ready with the material, the rotation, RotationBlocked,
    CRLPublished (`crl`, revocation.published_condition),
    ClusterTrustBundleSynced and (for an authority that writes a bundle) BundlesSynced."""
    current = body.get("status") or {}
    generation = body["metadata"].get("generation")
    status = authority.ready_status(material, current=current, generation=generation, now=now)
    status.update(rotation.to_status(state, observed.progress, blocking))
    status.update(pod_certificates.bounds_status(material.refresh_bounds))
    reported = [
        rotation.blocked_condition(state, blocking),
        cluster_trust_bundle.synced_condition(
            material.name,
            served=served_cluster_trust_bundles,
            problem=observed.cluster_bundle,
            roots=len(material.trusted_roots),
        ),
    ]
    if material.bundle_config_map is not None:
        reported.append(trust_bundle.synced_condition(observed.bundle_problems))
    if crl is not None:
        reported.append(crl)
    status["conditions"] = conditions.merge_conditions(
        status["conditions"], reported, generation=generation, now=now
    )
    return status


def _trouble(certificate: Mapping[str, Any]) -> str:
    """Why a Certificate's Secret may stay behind, from its conditions; '' if none shows."""
    name = certificate["metadata"]["name"]
    found = (certificate.get("status") or {}).get("conditions")
    ready = conditions.find_condition(found, conditions.READY)
    if ready is not None and ready.get("status") == "False":
        return f"; Certificate {name} is not Ready ({ready.get('reason')}: {ready.get('message')})"
    issuing = conditions.find_condition(found, conditions.ISSUING)
    if issuing is not None and issuing.get("reason") == "IssuanceFailed":
        return f"; Certificate {name} cannot write it ({issuing.get('message')})"
    return ""
