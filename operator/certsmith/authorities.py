"""Load or bootstrap each CertificateAuthority's root and intermediate, and keep them in memory.

Secrets have fixed names, so bootstrapping is idempotent: if the operator dies between
generating a root and storing it, the next attempt generates again and only one is kept
(a create that loses the race reads the winner's Secret).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from certsmith import authority, isolation, model, rotation
from certsmith.config import Config
from certsmith.kube import ApiError, Kube
from certsmith.pki import ca

logger = logging.getLogger(__name__)


class AuthorityNotReady(Exception):
    """The CertificateAuthority cannot sign yet; the message says why."""


class AuthorityRegistry:
    """Loaded authorities by name, shared between worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._materials: dict[str, authority.AuthorityMaterial] = {}

    def get(self, name: str) -> authority.AuthorityMaterial | None:
        with self._lock:
            return self._materials.get(name)

    def put(self, material: authority.AuthorityMaterial) -> None:
        with self._lock:
            self._materials[material.name] = material

    def all(self) -> list[authority.AuthorityMaterial]:
        with self._lock:
            return list(self._materials.values())

    def remove(self, name: str) -> None:
        with self._lock:
            self._materials.pop(name, None)


def _store_new(kube: Kube, body: Mapping[str, Any]) -> dict[str, Any]:
    """Create a Secret; if another attempt created it first, keep that one."""
    try:
        return kube.create_secret(body=body)
    except ApiError as error:
        if not error.conflict:
            raise
        existing = kube.get_secret(
            namespace=body["metadata"]["namespace"], name=body["metadata"]["name"]
        )
        if existing is None:
            raise
        labels = body["metadata"]["labels"]
        _check_role(existing, labels[authority.AUTHORITY_LABEL], labels[authority.ROLE_LABEL])
        return existing


def _check_role(secret: Mapping[str, Any], name: str, role: str) -> None:
    try:
        authority.check_role(secret, authority=name, role=role)
    except ValueError as error:
        raise AuthorityNotReady(str(error)) from None


def _load_root(
    kube: Kube, config: Config, name: str, spec: Mapping[str, Any], now: datetime
) -> ca.CAKeyPair:
    user_root = (spec.get("rootSecretRef") or {}).get("name")
    if user_root:
        secret = kube.get_secret(namespace=config.namespace, name=user_root)
        if secret is None:
            raise AuthorityNotReady(
                f"spec.rootSecretRef: Secret {config.namespace}/{user_root} does not exist"
            )
        try:
            return authority.parse_key_pair(secret)
        except ValueError as error:
            raise AuthorityNotReady(f"spec.rootSecretRef: {error}") from None

    secret_name = authority.root_secret_name(name)
    secret = kube.get_secret(namespace=config.namespace, name=secret_name)
    if secret is not None:
        _check_role(secret, name, "root")
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
        return authority.parse_key_pair(secret)
    except ValueError as error:
        raise AuthorityNotReady(str(error)) from None


def _load_intermediate(
    kube: Kube,
    config: Config,
    name: str,
    spec: Mapping[str, Any],
    root: ca.CAKeyPair,
    now: datetime,
) -> ca.CAKeyPair:
    secret_name = authority.intermediate_secret_name(name)
    secret = kube.get_secret(namespace=config.namespace, name=secret_name)
    if secret is not None:
        _check_role(secret, name, "intermediate")
        try:
            pair = authority.parse_key_pair(secret)
        except ValueError:
            pair = None
        if pair is not None and authority.intermediate_is_current(pair, root, now=now):
            return pair

    lifetime = config.intermediate_lifetime
    if spec.get("intermediateLifetime"):
        lifetime = model.parse_duration(spec["intermediateLifetime"], "spec.intermediateLifetime")
    pair = ca.build_intermediate(
        issuer=root, common_name=f"certsmith {name} intermediate", now=now, lifetime=lifetime
    )
    body = authority.key_pair_secret(
        authority=name, role="intermediate", name=secret_name, namespace=config.namespace, pair=pair
    )
    if secret is None:
        stored = _store_new(kube, body)
    else:
        body["metadata"]["resourceVersion"] = secret["metadata"]["resourceVersion"]
        stored = kube.replace_secret(body=body)
    logger.info("issued a new intermediate for CertificateAuthority %s", name)
    return authority.parse_key_pair(stored)


def _load_next_root(kube: Kube, config: Config, name: str) -> ca.CAKeyPair | None:
    secret = kube.get_secret(namespace=config.namespace, name=authority.next_root_secret_name(name))
    if secret is None:
        return None
    _check_role(secret, name, "next-root")
    try:
        return authority.parse_key_pair(secret)
    except ValueError as error:
        raise AuthorityNotReady(str(error)) from None


def create_next_root(
    kube: Kube, config: Config, body: Mapping[str, Any], now: datetime
) -> ca.CAKeyPair:
    """Generate and store the root a rotation moves to (or keep one a crashed start stored)."""
    name = body["metadata"]["name"]
    spec = body.get("spec") or {}
    existing = _load_next_root(kube, config, name)
    if existing is not None:
        return existing
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
    """Make the next root the root and forget the old one; safe to repeat after a crash."""
    next_secret = kube.get_secret(
        namespace=config.namespace, name=authority.next_root_secret_name(name)
    )
    if next_secret is None:
        return  # already finished
    root_secret = kube.get_secret(namespace=config.namespace, name=authority.root_secret_name(name))
    body = {**next_secret, "metadata": {**next_secret["metadata"]}}
    body["metadata"] = {
        "name": authority.root_secret_name(name),
        "namespace": config.namespace,
        "labels": {**next_secret["metadata"].get("labels", {}), authority.ROLE_LABEL: "root"},
    }
    if root_secret is None:
        kube.create_secret(body=body)
    else:
        body["metadata"]["resourceVersion"] = root_secret["metadata"]["resourceVersion"]
        kube.replace_secret(body=body)
    kube.delete_secret(namespace=config.namespace, name=authority.next_root_secret_name(name))


def ensure_material(
    kube: Kube,
    config: Config,
    body: Mapping[str, Any],
    now: datetime,
    state: rotation.RotationState,
) -> authority.AuthorityMaterial:
    """The authority's current material, generating or renewing what is missing or due.

    During a rotation both roots are trusted; the new one signs only from Reissuing on.
    """
    name = body["metadata"]["name"]
    spec = body.get("spec") or {}
    try:
        root = _load_root(kube, config, name, spec, now)
        trusted = (root.certificate,)
        signing = root
        if state.rotating:
            next_root = _load_next_root(kube, config, name)
            if next_root is not None:
                trusted = (root.certificate, next_root.certificate)
                if state.signs_with_new_root:
                    signing = next_root
        intermediate = _load_intermediate(kube, config, name, spec, signing, now)
    except model.InvalidSpec as error:
        raise AuthorityNotReady(str(error)) from None
    bundle = spec.get("trustBundle") or {}
    default_bundle = "certsmith-ca" if name == config.default_authority else None
    return authority.AuthorityMaterial(
        name=name,
        root=signing,
        intermediate=intermediate,
        trusted_roots=trusted,
        rotation=state,
        grants=isolation.parse_grants(spec.get("policy")),
        bundle_config_map=bundle.get("configMapName") or default_bundle,
        bundle_selector=bundle.get("namespaceSelector") or {},
    )


def ensure_default_authority(kube: Kube, config: Config) -> dict[str, Any]:
    """Create the default CertificateAuthority object if it does not exist; return it."""
    existing = kube.get_authority(name=config.default_authority)
    if existing is not None:
        return existing
    try:
        return kube.create_authority(
            body={
                "apiVersion": "certsmith.dev/v1alpha1",
                "kind": "CertificateAuthority",
                "metadata": {"name": config.default_authority},
                "spec": {},
            }
        )
    except ApiError as error:
        if not error.conflict:
            raise
        found = kube.get_authority(name=config.default_authority)
        assert found is not None
        return found
