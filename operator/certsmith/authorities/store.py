"""Load or bootstrap each CertificateAuthority's root and intermediate, and keep them in memory.

Secrets have fixed names, so bootstrapping is idempotent: if the operator dies between
generating a root and storing it, the next attempt generates again and only one is kept
(a create that loses the race reads the winner's Secret).
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from cryptography import x509

from certsmith.api import model, names
from certsmith.authorities import (
    authority,
    csr_bounds,
    pod_certificates,
    revocation,
    rotation,
    trust_bundle,
)
from certsmith.certificates import isolation
from certsmith.config import Config
from certsmith.kube import ApiError, Kube, Listing
from certsmith.kube import follow as kube_follow
from certsmith.pki import ca, inspect, name_constraints

logger = logging.getLogger(__name__)


CA_SECRET_CONFLICT = "CASecretConflict"
PARENT_NOT_READY = "ParentNotReady"
CA_SECRET_WRITE_FAILED = "CASecretWriteFailed"
# The watch of the operator's namespace: how long the apiserver keeps one stream open, and
# the pause before the next one after a stream failed.
CA_WATCH_TIMEOUT_SECONDS = 60
CA_WATCH_RETRY_SECONDS = 1.0


class AuthorityNotReady(Exception):
    """The CertificateAuthority cannot sign; the message says why, `reason` is the condition's."""

    def __init__(self, message: str, reason: str = "InvalidRoot") -> None:
        super().__init__(message)
        self.reason = reason


class AwaitingLeader(AuthorityNotReady):
    """A read-only load (`ensure_material(writes=False)`, a replica not holding the Lease)
    found material missing, or not usable as stored, that only the leader writes: only one
    replica writes CA Secrets, or two could replace each other's intermediate (one of them
    reading a rotation's status before the other wrote it)."""


def does_not_exist(name: str) -> str:
    """The problem of an authority that does not exist, as its Certificates show it."""
    return f"CertificateAuthority {name} does not exist"


class AuthorityRegistry:
    """Loaded authorities by name, shared between worker threads, and why the others cannot
    sign (deleted, never created, or refused: the message a Certificate of theirs shows)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._materials: dict[str, authority.AuthorityMaterial] = {}
        self._problems: dict[str, str] = {}
        self._on_loaded: list[Callable[[str], None]] = []

    def get(self, name: str) -> authority.AuthorityMaterial | None:
        with self._lock:
            return self._materials.get(name)

    def on_loaded(self, listener: Callable[[str], None]) -> None:
        """Call `listener(name)` each time authority `name` becomes able to sign (loaded
        first, or again after a problem), on the thread that loaded it, outside the lock."""
        with self._lock:
            self._on_loaded.append(listener)

    def put(self, material: authority.AuthorityMaterial) -> None:
        with self._lock:
            loaded_now = material.name not in self._materials
            self._materials[material.name] = material
            self._problems.pop(material.name, None)
            listeners = list(self._on_loaded) if loaded_now else []
        for listener in listeners:
            listener(material.name)

    def all(self) -> list[authority.AuthorityMaterial]:
        with self._lock:
            return list(self._materials.values())

    def names(self) -> list[str]:
        """Every authority loaded or failing (not those known not to exist)."""
        with self._lock:
            failing = (n for n, p in self._problems.items() if p != does_not_exist(n))
            return sorted({*self._materials, *failing})

    def problem(self, name: str) -> str | None:
        """Why `name` was last refused (None if it never was, or is loaded since)."""
        with self._lock:
            return self._problems.get(name)

    def remove(self, name: str, problem: str) -> None:
        """Stop signing for `name`; Certificates naming it are told `problem`."""
        with self._lock:
            self._materials.pop(name, None)
            self._problems[name] = problem

    def keep_only(self, name: str) -> None:
        """Forget every other authority: a new leadership term rebuilds the registry from the
        cluster, as another replica may have seen authorities deleted or changed meanwhile."""
        with self._lock:
            self._materials = {k: v for k, v in self._materials.items() if k == name}
            self._problems = {k: v for k, v in self._problems.items() if k == name}

    def why_unavailable(self, name: str, kube: Kube) -> str:
        """Why `name` cannot sign now (it is not loaded): the recorded problem, or, for a
        name never seen, whether it exists at all (read once, then remembered)."""
        with self._lock:
            problem = self._problems.get(name)
        if problem is not None:
            return problem
        if kube.get_authority(name=name) is not None:
            return f"CertificateAuthority {name} is not ready"  # exists, not loaded yet
        with self._lock:
            if name in self._materials:  # created and loaded while we looked
                return f"CertificateAuthority {name} is not ready"
            return self._problems.setdefault(name, does_not_exist(name))


def _transient(error: ApiError) -> bool:
    """The apiserver could not answer (or asked us to wait): retry soon, it may pass. Any
    other refusal (422 immutable, 403 RBAC, a webhook's denial, a quota) is the answer."""
    return error.status == 0 or error.status == 429 or error.status >= 500


def _write_failed(body: Mapping[str, Any], error: ApiError) -> AuthorityNotReady:
    metadata = body["metadata"]
    return AuthorityNotReady(
        f"Secret {metadata['namespace']}/{metadata['name']} could not be written: {error}",
        reason=CA_SECRET_WRITE_FAILED,
    )


def _store_new(kube: Kube, body: Mapping[str, Any]) -> dict[str, Any]:
    """Create a Secret; if another attempt created it first, keep that one."""
    try:
        return kube.create_secret(body=body)
    except ApiError as error:
        if not error.conflict:
            if _transient(error):
                raise
            raise _write_failed(body, error) from None
        existing = kube.get_secret(
            namespace=body["metadata"]["namespace"], name=body["metadata"]["name"]
        )
        if existing is None:
            raise
        marks = body["metadata"]["labels"]
        return _claim(kube, existing, marks[names.CA_AUTHORITY_LABEL], marks[names.CA_ROLE_LABEL])


def _replace(
    kube: Kube, body: dict[str, Any], existing: Mapping[str, Any], *, recreate: bool
) -> dict[str, Any]:
    """Write `body` over the CA Secret `existing` (certsmith's, checked by the caller).

    An immutable Secret cannot be updated (the apiserver answers 422). With `recreate` (an
    intermediate: losing it only means a new one is issued, so a crash between the two
    calls leaves nothing the next step does not rebuild) it is deleted and created again;
    otherwise (a root) the refusal is reported: a root Secret is never deleted by certsmith.
    """
    metadata = existing["metadata"]
    try:
        if existing.get("immutable") and recreate:
            logger.warning(
                "Secret %s/%s is immutable: deleting it to store its replacement",
                metadata["namespace"],
                metadata["name"],
            )
            kube.delete_secret(namespace=metadata["namespace"], name=metadata["name"])
            return kube.create_secret(body=body)
        body["metadata"]["resourceVersion"] = metadata["resourceVersion"]
        return kube.replace_secret(body=body)
    except ApiError as error:
        if _transient(error) or error.conflict:
            raise
        raise _write_failed(body, error) from None


def _claim(
    kube: Kube, secret: dict[str, Any], name: str, role: str, *, writes: bool = True
) -> dict[str, Any]:
    """The Secret if it is `name`'s `role` CA Secret, its removed marks put back (unless not
    `writes`); AuthorityNotReady (CASecretConflict) when certsmith did not create it for that."""
    try:
        incomplete = authority.check_role(secret, authority=name, role=role)
    except ValueError as error:
        raise AuthorityNotReady(str(error), reason=CA_SECRET_CONFLICT) from None
    if not incomplete or not writes:
        return secret
    metadata = secret["metadata"]
    logger.info(
        "Secret %s/%s: putting back the CA marks of CertificateAuthority %s",
        metadata["namespace"],
        metadata["name"],
        name,
    )
    try:
        return kube.patch_secret(
            namespace=metadata["namespace"],
            name=metadata["name"],
            patch=authority.marks_patch(authority=name, role=role),
        )
    except ApiError as error:
        if _transient(error) or error.not_found:
            raise
        raise _write_failed(secret, error) from None


def _intermediate_lifetime(config: Config, spec: Mapping[str, Any]) -> timedelta:
    if spec.get("intermediateLifetime"):
        return model.parse_duration(spec["intermediateLifetime"], "spec.intermediateLifetime")
    return config.intermediate_lifetime


def supplied_root_name(spec: Mapping[str, Any]) -> str | None:
    """The Secret named by spec.rootSecretRef: a root the user supplied, never replaced by
    certsmith (no generated root, no rotation)."""
    return (spec.get("rootSecretRef") or {}).get("name") or None


def _load_supplied_root(
    kube: Kube, config: Config, spec: Mapping[str, Any], user_root: str, now: datetime
) -> ca.CAKeyPair:
    """The root in Secret `user_root` of the operator's namespace (spec.rootSecretRef), if
    it can serve as a root (`ca.root_problems`); AuthorityNotReady saying why not."""
    where = f"spec.rootSecretRef: Secret {config.namespace}/{user_root}"
    secret = kube.get_secret(namespace=config.namespace, name=user_root)
    if secret is None:
        raise AuthorityNotReady(f"{where} does not exist")
    whose = authority.describe_ca_secret(secret)
    if whose is not None:
        # Sharing another authority's key would make two authorities one, and its rotation
        # would silently swap this one's root.
        raise AuthorityNotReady(
            f"{where} is {whose}, created by certsmith: a supplied root must be a Secret of "
            "your own (copy the root into a Secret of another name if you mean to share it)",
            reason=CA_SECRET_CONFLICT,
        )
    try:
        pair = authority.parse_key_pair(secret)
    except ValueError as error:
        raise AuthorityNotReady(f"spec.rootSecretRef: {error}") from None
    problems = ca.root_problems(
        pair.certificate, now=now, intermediate_lifetime=_intermediate_lifetime(config, spec)
    )
    if problems:
        raise AuthorityNotReady(f"{where} cannot be a root: {'; '.join(problems)}")
    return pair


class _Root(NamedTuple):
    pair: ca.CAKeyPair
    refresh_bound: datetime | None
    """The pod certificates' refresh bound its Secret records (None for a supplied root:
    certsmith never writes a Secret of the user's, and never rotates that root)."""
    csr_bound: datetime | None = None
    """The Kubernetes CSR certificates' validity bound its Secret records (csr_bounds)."""


def _root_of(pair: ca.CAKeyPair, secret: Mapping[str, Any]) -> _Root:
    return _Root(pair, pod_certificates.recorded_bound(secret), csr_bounds.recorded_bound(secret))


def _load_root(
    kube: Kube,
    config: Config,
    name: str,
    spec: Mapping[str, Any],
    now: datetime,
    trusted: frozenset[str],
    writes: bool,
) -> _Root:
    """The root; generated only for a new authority (`trusted`, the fingerprints its status
    lists, is empty) and when `writes` (else AwaitingLeader). A root Secret that vanished or
    holds another root stops the authority: a new root would be trusted nowhere, and
    silently swapping it would break every chain."""
    user_root = supplied_root_name(spec)
    if user_root:
        return _Root(_load_supplied_root(kube, config, spec, user_root, now), None)

    secret_name = authority.root_secret_name(name)
    secret = kube.get_secret(namespace=config.namespace, name=secret_name)
    if secret is None and trusted:
        raise AuthorityNotReady(
            f"Secret {config.namespace}/{secret_name} holding the root this authority trusts "
            "is gone: restore it from a backup; to start over with a new root, delete and "
            "recreate the CertificateAuthority",
            reason="RootMissing",
        )
    if secret is not None:
        secret = _claim(kube, secret, name, "root", writes=writes)
    elif not writes:
        raise AwaitingLeader(
            f"Secret {config.namespace}/{secret_name} holding its root is not created yet"
        )
    if secret is None:
        lifetime = config.root_lifetime
        if spec.get("rootLifetime"):
            lifetime = model.parse_duration(spec["rootLifetime"], "spec.rootLifetime")
        pair = ca.build_root(common_name=f"certsmith {name} root", now=now, lifetime=lifetime)
        logger.info("generated a new root for CertificateAuthority %s", name)
        secret = _store_new(
            kube,
            authority.key_pair_secret(
                authority=name, role="root", name=secret_name, namespace=config.namespace, pair=pair
            ),
        )
    try:
        pair = authority.parse_key_pair(secret)
    except ValueError as error:
        raise AuthorityNotReady(f"{error}: restore the Secret from a backup") from None
    fingerprint = inspect.fingerprint_sha256(pair.certificate)
    if trusted and fingerprint not in trusted:
        raise AuthorityNotReady(
            f"Secret {config.namespace}/{secret_name} holds a root this authority does not "
            f"trust (sha256 {fingerprint}): restore the Secret from a backup (a root changes "
            "only through a rotation)",
            reason="RootChanged",
        )
    problems = ca.ca_problems(pair.certificate)
    if problems:
        raise AuthorityNotReady(
            f"Secret {config.namespace}/{secret_name} cannot be a root: {'; '.join(problems)}"
        )
    return _root_of(pair, secret)


def _load_intermediate(
    kube: Kube,
    config: Config,
    name: str,
    spec: Mapping[str, Any],
    root: ca.CAKeyPair,
    now: datetime,
    constraints: name_constraints.NameConstraints,
    writes: bool,
) -> ca.CAKeyPair:
    """The intermediate under `root`, replaced when not current (authority.
    intermediate_is_current). Without `writes`, the stored one while still valid, even if
    due (its renewal is the leader's), else AwaitingLeader."""
    secret_name = authority.intermediate_secret_name(name)
    secret = kube.get_secret(namespace=config.namespace, name=secret_name)
    if secret is not None:
        secret = _claim(kube, secret, name, "intermediate", writes=writes)
        try:
            pair = authority.parse_key_pair(secret)
        except ValueError:
            pair = None
        if pair is not None and authority.intermediate_is_current(
            pair, root, now=now, name_constraints=constraints.extension(), due_ok=not writes
        ):
            return pair
    if not writes:
        raise AwaitingLeader(
            f"Secret {config.namespace}/{secret_name} holds no intermediate usable under the "
            "root that signs now"
        )

    pair = ca.build_intermediate(
        issuer=root,
        common_name=f"certsmith {name} intermediate",
        now=now,
        lifetime=_intermediate_lifetime(config, spec),
        name_constraints=constraints.extension(),
    )
    body = authority.key_pair_secret(
        authority=name, role="intermediate", name=secret_name, namespace=config.namespace, pair=pair
    )
    if secret is None:
        stored = _store_new(kube, body)
    else:
        stored = _replace(kube, body, secret, recreate=True)
    logger.info("issued a new intermediate for CertificateAuthority %s", name)
    return authority.parse_key_pair(stored)


def _load_next_root(kube: Kube, config: Config, name: str, *, writes: bool = True) -> _Root | None:
    secret = kube.get_secret(namespace=config.namespace, name=authority.next_root_secret_name(name))
    if secret is None:
        return None
    secret = _claim(kube, secret, name, "next-root", writes=writes)
    try:
        return _root_of(authority.parse_key_pair(secret), secret)
    except ValueError as error:
        raise AuthorityNotReady(f"{error}: restore the Secret from a backup") from None


def _rotation_next_root(
    kube: Kube,
    config: Config,
    name: str,
    root: ca.CAKeyPair,
    state: rotation.RotationState,
    writes: bool,
) -> _Root | None:
    """The new root of the rotation under way: the one its status names, or None once it
    became the root (a rotation that ended before its status was written)."""
    next_root = _load_next_root(kube, config, name, writes=writes)
    if state.new_root is None or inspect.fingerprint_sha256(root.certificate) == state.new_root:
        return next_root
    secret_name = f"{config.namespace}/{authority.next_root_secret_name(name)}"
    if next_root is None:
        raise AuthorityNotReady(
            f"Secret {secret_name} holding the new root of the rotation under way is gone: "
            "restore it from a backup",
            reason="RootMissing",
        )
    if inspect.fingerprint_sha256(next_root.pair.certificate) != state.new_root:
        raise AuthorityNotReady(
            f"Secret {secret_name} holds another root than the rotation under way started "
            f"with (sha256 {state.new_root}): restore it from a backup",
            reason="RootChanged",
        )
    return next_root


def create_next_root(
    kube: Kube, config: Config, body: Mapping[str, Any], now: datetime
) -> ca.CAKeyPair:
    """Generate and store the root a rotation moves to (or keep one a crashed start stored)."""
    name = body["metadata"]["name"]
    spec = body.get("spec") or {}
    existing = _load_next_root(kube, config, name)
    if existing is not None:
        return existing.pair
    lifetime = config.root_lifetime
    if spec.get("rootLifetime"):
        lifetime = model.parse_duration(spec["rootLifetime"], "spec.rootLifetime")
    pair = ca.build_root(common_name=f"certsmith {name} root", now=now, lifetime=lifetime)
    stored = _store_new(
        kube,
        authority.key_pair_secret(
            authority=name,
            role="next-root",
            name=authority.next_root_secret_name(name),
            namespace=config.namespace,
            pair=pair,
        ),
    )
    logger.info("generated the next root for CertificateAuthority %s", name)
    return authority.parse_key_pair(stored)


def finish_rotation(kube: Kube, config: Config, name: str) -> None:
    """Make the next root the root, with the pod certificates' refresh bound and the
    Kubernetes CSR certificates' validity bound recorded on it, and forget the old one and
    its bounds; safe to repeat after a crash. The next root's Secret is deleted only as it
    was copied, so a bound a signer raised meanwhile is copied again, never lost."""
    next_name = authority.next_root_secret_name(name)
    for _ in range(3):
        next_secret = kube.get_secret(namespace=config.namespace, name=next_name)
        if next_secret is None:
            return  # already finished
        root_secret = kube.get_secret(
            namespace=config.namespace, name=authority.root_secret_name(name)
        )
        body = {k: v for k, v in next_secret.items() if k not in ("metadata", "immutable")}
        marks = authority.marks_patch(authority=name, role="root")["metadata"]
        recorded = next_secret["metadata"].get("annotations") or {}
        for annotation in (
            pod_certificates.REFRESH_BY_ANNOTATION,
            csr_bounds.VALID_UNTIL_ANNOTATION,
        ):
            if recorded.get(annotation) is not None:
                marks["annotations"][annotation] = recorded[annotation]
        body["metadata"] = {
            "name": authority.root_secret_name(name),
            "namespace": config.namespace,
            **marks,
        }
        if root_secret is None:
            _store_new(kube, body)
        else:
            _replace(kube, body, root_secret, recreate=False)
        try:
            kube.delete_secret(
                namespace=config.namespace,
                name=next_name,
                resource_version=next_secret["metadata"]["resourceVersion"],
            )
            return
        except ApiError as error:
            if not error.conflict:
                raise
    raise AuthorityNotReady(
        f"Secret {config.namespace}/{next_name} kept changing while the rotation ended",
        reason=CA_SECRET_WRITE_FAILED,
    )


def record_refresh_bound(
    kube: Kube, config: Config, name: str, *, root: str, refresh_at: datetime
) -> datetime | None:
    """Raise the refresh bound on the Secret holding root `root` (a SHA-256 fingerprint) of
    authority `name` to cover `refresh_at`, unless it does already; the bound recorded now.
    None when no Secret of certsmith's holds that root (a supplied root: never rotated, so
    nothing waits for its pod certificates). The next root's Secret is looked at first: a
    rotation's end copies it onto the root's Secret, then deletes it. ApiError when the
    apiserver does not answer."""
    return _raise_bound(
        kube,
        config,
        name,
        root=root,
        moment=refresh_at,
        recorded_bound=pod_certificates.recorded_bound,
        raised_bound=pod_certificates.raised_bound,
        bound_patch=pod_certificates.bound_patch,
    )


def record_csr_bound(
    kube: Kube, config: Config, name: str, *, root: str, not_after: datetime
) -> datetime | None:
    """`record_refresh_bound` for a certificate signed for a Kubernetes CSR under root
    `root`, valid until `not_after` (csr_bounds: a rotation waits until then)."""
    return _raise_bound(
        kube,
        config,
        name,
        root=root,
        moment=not_after,
        recorded_bound=csr_bounds.recorded_bound,
        raised_bound=csr_bounds.raised_bound,
        bound_patch=csr_bounds.bound_patch,
    )


def _raise_bound(
    kube: Kube,
    config: Config,
    name: str,
    *,
    root: str,
    moment: datetime,
    recorded_bound: Callable[[Mapping[str, Any] | None], datetime | None],
    raised_bound: Callable[[datetime | None, datetime], datetime | None],
    bound_patch: Callable[..., dict[str, Any]],
) -> datetime | None:
    places = (authority.next_root_secret_name(name), authority.root_secret_name(name))
    for _ in range(3):
        for secret_name in places:
            secret = kube.get_secret(namespace=config.namespace, name=secret_name)
            if secret is None or _secret_root(secret) != root:
                continue
            recorded = recorded_bound(secret)
            raised = raised_bound(recorded, moment)
            if raised is None:
                return recorded
            try:
                kube.patch_secret(
                    namespace=config.namespace,
                    name=secret_name,
                    patch=bound_patch(
                        raised, resource_version=secret["metadata"]["resourceVersion"]
                    ),
                )
            except ApiError as error:
                if error.conflict or error.not_found:
                    break  # changed or moved meanwhile: look again
                raise
            return raised
        else:
            return None
    raise ApiError(409, "Conflict", f"the Secret holding root {root} kept changing")


def _secret_root(secret: Mapping[str, Any]) -> str | None:
    """The SHA-256 fingerprint of the certificate in a root Secret's tls.crt; None when it
    holds none."""
    try:
        certificates = inspect.load_pem_certificates(
            base64.b64decode((secret.get("data") or {}).get("tls.crt", ""))
        )
    except ValueError:
        return None
    return inspect.fingerprint_sha256(certificates[0])


def leftover_rotation(kube: Kube, config: Config, name: str) -> tuple[str, str] | None:
    """The (old, new) root fingerprints of a rotation that was under way when the authority
    was deleted, if its root's and its next root's Secrets are both still there with
    different roots; None otherwise (a next root equal to the root is a rotation that ended
    but for deleting that Secret, which is done here)."""
    next_secret = kube.get_secret(
        namespace=config.namespace, name=authority.next_root_secret_name(name)
    )
    if next_secret is None:
        return None
    root_secret = kube.get_secret(namespace=config.namespace, name=authority.root_secret_name(name))
    old, new = _secret_root(root_secret or {}), _secret_root(next_secret)
    if old is None or new is None:
        return None
    if old == new:
        finish_rotation(kube, config, name)
        return None
    return old, new


def ensure_material(
    kube: Kube,
    config: Config,
    body: Mapping[str, Any],
    now: datetime,
    state: rotation.RotationState,
    parent: authority.AuthorityMaterial | None = None,
    *,
    writes: bool = True,
) -> authority.AuthorityMaterial:
    """The authority's current material, generating or renewing what is missing or due.

    Without `writes` (a replica not holding the Lease) nothing is written: what is stored
    while usable, else AwaitingLeader.

    During a rotation both roots are trusted; the new one signs only from Reissuing on.
    A subordinate (spec.parentRef) has no root of its own: `parent`, the parent's loaded
    material, signs its intermediate with the root it signs with now, and lends it its
    trusted roots and rotation state; AuthorityNotReady (ParentNotReady) when None.
    """
    name = body["metadata"]["name"]
    spec = body.get("spec") or {}
    known = frozenset((body.get("status") or {}).get("trustedRoots") or ())
    parent_name = authority.parent_name(spec)
    try:
        constraints = _name_constraints(spec, parent_name, parent)
        _refuse_constraints_on_the_webhook(config, name, constraints)
        if parent_name is not None:
            if parent is None:
                raise AuthorityNotReady(
                    f"spec.parentRef.name: CertificateAuthority {parent_name} does not exist "
                    "or is not ready; this subordinate signs once it is",
                    reason=PARENT_NOT_READY,
                )
            roots = _Roots(parent.root, parent.trusted_roots, {}, {})
            state = parent.rotation
        else:
            roots = _own_roots(kube, config, name, spec, now, known, state, writes)
        signing = roots.signing
        intermediate = _load_intermediate(
            kube, config, name, spec, signing, now, constraints, writes
        )
    except model.InvalidSpec as error:
        raise AuthorityNotReady(str(error), reason="InvalidSpec") from None
    problem = ca.issuance_problem(signing.certificate, intermediate, now)
    if problem is not None:
        raise AuthorityNotReady(f"a certificate signed under this root would not verify: {problem}")
    bundle = spec.get("trustBundle") or {}
    try:
        url = revocation.crl_url(spec)
    except model.InvalidSpec:
        url = None  # the CRLPublished condition says so; it never stops the signing
    return authority.AuthorityMaterial(
        name=name,
        root=signing,
        intermediate=intermediate,
        trusted_roots=roots.trusted,
        rotation=state,
        grants=isolation.parse_grants(spec.get("policy")),
        bundle_config_map=trust_bundle.bundle_name(
            name, spec, default_authority=config.default_authority
        ),
        bundle_selector=bundle.get("namespaceSelector") or {},
        pod_certificates=pod_certificates.parse_settings(spec),
        refresh_bounds=roots.refresh_bounds,
        crl_url=revocation.distribution_point(url, intermediate.certificate),
        parent=parent_name,
        name_constraints=constraints,
        csr_bounds=roots.csr_bounds,
    )


class _Roots(NamedTuple):
    """The roots an authority signs with and trusts, and the bounds recorded under them
    (by root SHA-256 fingerprint: pod certificates' refresh bounds, Kubernetes CSR
    certificates' latest notAfter)."""

    signing: ca.CAKeyPair
    trusted: tuple[x509.Certificate, ...]
    refresh_bounds: dict[str, datetime]
    csr_bounds: dict[str, datetime]


def _own_roots(
    kube: Kube,
    config: Config,
    name: str,
    spec: Mapping[str, Any],
    now: datetime,
    known: frozenset[str],
    state: rotation.RotationState,
    writes: bool,
) -> _Roots:
    """An authority's own root, and during a rotation its next root too (which signs only
    from Reissuing on)."""
    loaded = _load_root(kube, config, name, spec, now, known, writes)
    root = loaded.pair
    roots = _Roots(
        root,
        (root.certificate,),
        _bounds(root, loaded.refresh_bound),
        _bounds(root, loaded.csr_bound),
    )
    if not state.rotating:
        return roots
    next_root = _rotation_next_root(kube, config, name, root, state, writes)
    if next_root is None:
        return roots
    roots.refresh_bounds.update(_bounds(next_root.pair, next_root.refresh_bound))
    roots.csr_bounds.update(_bounds(next_root.pair, next_root.csr_bound))
    return roots._replace(
        signing=next_root.pair if state.signs_with_new_root else root,
        trusted=(root.certificate, next_root.pair.certificate),
    )


def _name_constraints(
    spec: Mapping[str, Any],
    parent_name: str | None,
    parent: authority.AuthorityMaterial | None,
) -> name_constraints.NameConstraints:
    """spec.nameConstraints, checked to lie within the parent's (InvalidSpec naming the
    field when not: the parent's root would sign a CA for names the parent may not)."""
    parsed = (
        name_constraints.parse(spec["nameConstraints"])
        if spec.get("nameConstraints") is not None
        else name_constraints.NameConstraints()
    )
    if parent_name is not None and parent is not None:
        problems = name_constraints.outside_parent(
            parsed, parent.name_constraints, parent_name=parent_name
        )
        if problems:
            raise AuthorityNotReady("; ".join(problems), reason="InvalidSpec")
    return parsed


def _refuse_constraints_on_the_webhook(
    config: Config, name: str, constraints: name_constraints.NameConstraints
) -> None:
    """AuthorityNotReady (InvalidSpec, naming spec.nameConstraints) when `name` is the
    default authority, which signs the operator's own webhook certificate, and its
    constraints leave out a name of that certificate: the webhook (and /readyz) would
    depend on a certificate it may never sign."""
    if name != config.default_authority or not config.webhooks or not constraints:
        return
    where = "spec.nameConstraints"
    outside = name_constraints.violations(
        constraints,
        name_constraints.Names(
            dns_names=[(where, n) for n in config.webhook_dns_names()],
            ip_addresses=[(where, "127.0.0.1")],
        ),
        authority=name,
    )
    if outside:
        raise AuthorityNotReady(
            f"{where}: the default authority {name} signs the operator's webhook certificate "
            f"({', '.join(config.webhook_dns_names())}, 127.0.0.1), so its constraints must "
            f"permit those names; {outside[0].removeprefix(where + ': ')}",
            reason="InvalidSpec",
        )


def _bounds(root: ca.CAKeyPair, bound: datetime | None) -> dict[str, datetime]:
    return {} if bound is None else {inspect.fingerprint_sha256(root.certificate): bound}


def ensure_default_authority(kube: Kube, config: Config) -> dict[str, Any]:
    """Create the default CertificateAuthority object if it does not exist; return it.

    Another replica creating it first is no error (409, then read); ApiError otherwise, also
    the 409 itself when it was deleted again before it could be read.
    """
    existing = kube.get_authority(name=config.default_authority)
    if existing is not None:
        return existing
    try:
        return kube.create_authority(
            body={
                "apiVersion": names.API_VERSION,
                "kind": "CertificateAuthority",
                "metadata": {"name": config.default_authority},
                "spec": {},
            }
        )
    except ApiError as error:
        if not error.conflict:
            raise
        found = kube.get_authority(name=config.default_authority)
        if found is None:
            raise
        return found


def changed_since(known: Mapping[str, str], listed: Mapping[str, str]) -> list[str]:
    """Names (sorted) whose resourceVersion differs between `known` and `listed` (both
    name → resourceVersion): changed, created or deleted between the two."""
    return sorted(
        name for name in known.keys() | listed.keys() if known.get(name) != listed.get(name)
    )


def follow_ca_secrets(
    kube: Kube,
    *,
    namespace: str,
    changed: Callable[[str], None],
    listed: Callable[[], None],
) -> None:
    """Watch the Secrets of the operator's namespace forever; call `changed(name)` for each
    one created, changed or deleted after the first list, and `listed()` once that list is
    taken (ApiError retried meanwhile). A term's start waits for `listed` before it steps
    the authorities on what it reads: every change after that read is then reported. Runs
    in a thread of its own. The controller's watches see only Secrets labelled for a
    Certificate; the CA keys (and a supplied root, labelled or not) live here.

    A watch that falls too far behind (410 Gone: while thousands of Certificates are written
    elsewhere, a quiet namespace's version ages fast) starts again from a list, and what
    differs from what was seen is reported: a report has every authority step, and a step
    at scale is not free."""
    while True:
        try:
            first = kube.list_secrets_in(namespace=namespace)
            break
        except ApiError as error:
            logger.warning("list of Secrets in %s failed: %s", namespace, error)
            time.sleep(CA_WATCH_RETRY_SECONDS)
    known = _CaSecrets(first, changed)
    listed()
    kube_follow(
        known,
        first=first,
        relist=lambda: kube.list_secrets_in(namespace=namespace),
        watch=lambda version: kube.watch_secrets(
            namespace=namespace, resource_version=version, timeout_seconds=CA_WATCH_TIMEOUT_SECONDS
        ),
        going=lambda: True,
        retry_seconds=CA_WATCH_RETRY_SECONDS,
        what=f"Secrets in {namespace}",
    )


class _CaSecrets:
    """follow_ca_secrets' record: each Secret's last seen resourceVersion, by name."""

    def __init__(self, first: Listing, changed: Callable[[str], None]) -> None:
        self._changed = changed
        self._known = _versions(first)

    def listed(self, listing: Listing) -> None:
        listed = _versions(listing)
        for name in changed_since(self._known, listed):
            self._changed(name)
        self._known = listed

    def event(self, kind: str, metadata: Mapping[str, Any]) -> None:
        name = str(metadata.get("name", ""))
        if kind == "DELETED":
            self._known.pop(name, None)
        else:
            self._known[name] = str(metadata.get("resourceVersion", ""))
        self._changed(name)


def _versions(listing: Listing) -> dict[str, str]:
    return {
        item["metadata"]["name"]: str(item["metadata"].get("resourceVersion", ""))
        for item in listing.items
    }
