"""Trust-bundle ConfigMaps: every root an authority trusts, in the namespaces it serves.

Each ConfigMap has one rightful owner (`rightful_owner`): of the authorities whose bundle has
its name and whose namespaceSelector selects its namespace (the candidates), the default
authority if it is one, else the oldest (creationTimestamp, then name). Only that authority
writes it; every other candidate reports a BundleConflict naming it. The rule depends on
the authorities alone, never on event order or on what the ConfigMap says.

certsmith writes only bundles that are certsmith's: a ConfigMap carrying the label or the
annotation `certsmith.dev/trust-bundle` (whatever authority it names: a mark naming a
non-candidate, e.g. after a `kubectl label --overwrite`, still only says "certsmith's"), or
the very object certsmith created (same uid, markers removed). The rightful owner repairs
such a ConfigMap (label, annotation and ca.crt set to its own). Any other ConfigMap of that
name, pre-created by a person or another tool, is a conflict: never overwritten, reported
by name.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from certsmith.api import conditions, model, names, times
from certsmith.authorities.rotation import Lagging
from certsmith.certificates import isolation

BUNDLES_SYNCED = "BundlesSynced"
CONFLICT = "BundleConflict"
WRITE_FAILED = "BundleWriteFailed"
BUNDLE_ANNOTATION = names.BUNDLE_LABEL
BUNDLE_KEY = "ca.crt"
CRL_KEY = "ca.crl"
"""The authority's CRLs (PEM), next to its roots (authorities.revocation)."""


class Action(enum.Enum):
    """What an authority does with a bundle ConfigMap (`judge`)."""

    NOTHING = "Nothing"
    WRITE = "Write"
    CONFLICT = "Conflict"


@dataclass(frozen=True)
class Verdict:
    """`judge`'s answer."""

    action: Action
    why: str = ""
    """For a conflict: whose it is and what to do, for status and events."""


SELECTOR_FIELD = "spec.trustBundle.namespaceSelector"


def check_selector(selector: object) -> None:
    """spec.trustBundle.namespaceSelector is a label selector, or InvalidSpec naming the bad
    part (see isolation.check_label_selector)."""
    isolation.check_label_selector(selector, SELECTOR_FIELD)


DEFAULT_CONFIG_MAP = "certsmith-ca"


def bundle_name(authority: str, spec: Mapping[str, Any], *, default_authority: str) -> str | None:
    """The ConfigMap name of an authority's bundle: spec.trustBundle.configMapName, else
    DEFAULT_CONFIG_MAP for the default authority; None: it writes no bundle."""
    name = (spec.get("trustBundle") or {}).get("configMapName")
    if name:
        return str(name)
    return DEFAULT_CONFIG_MAP if authority == default_authority else None


NOT_YET_CREATED = datetime.max.replace(tzinfo=UTC)
"""The creation time of an authority without one (not stored yet): it ranks last."""


@dataclass(frozen=True)
class Claim:
    """An authority's bundle as its spec declares it: what `rightful_owner` weighs."""

    authority: str
    config_map: str
    selector: Mapping[str, Any]
    created: datetime
    """metadata.creationTimestamp (whole seconds, RFC 3339); ties go to the name."""


def claims(authorities: Iterable[Mapping[str, Any]], *, default_authority: str) -> list[Claim]:
    """The Claim of every CertificateAuthority object that writes a bundle. One with an
    invalid namespaceSelector writes nothing (its steps fail with InvalidSpec), so claims
    nothing."""
    found = []
    for body in authorities:
        metadata = body.get("metadata") or {}
        spec = body.get("spec") or {}
        config_map = bundle_name(metadata["name"], spec, default_authority=default_authority)
        selector = (spec.get("trustBundle") or {}).get("namespaceSelector") or {}
        if config_map is None or metadata.get("deletionTimestamp"):
            continue
        try:
            check_selector(selector)
        except model.InvalidSpec:
            continue
        found.append(
            Claim(
                authority=metadata["name"],
                config_map=config_map,
                selector=selector,
                created=times.parse_time(metadata.get("creationTimestamp")) or NOT_YET_CREATED,
            )
        )
    return found


def candidates(
    found: Iterable[Claim], *, config_map: str, namespace_labels: Mapping[str, str]
) -> list[Claim]:
    """The claims on ConfigMap `config_map` in a namespace with these labels."""
    return [
        claim
        for claim in found
        if claim.config_map == config_map
        and isolation.selector_matches(claim.selector, namespace_labels)
    ]


def rightful_owner(contenders: Iterable[Claim], *, default_authority: str) -> str | None:
    """Who writes the ConfigMap the `contenders` (its candidates) claim: the default
    authority if it is one, else the oldest (creationTimestamp, then name); None if none."""
    ordered = sorted(
        contenders,
        key=lambda c: (c.authority != default_authority, c.created, c.authority),
    )
    return ordered[0].authority if ordered else None


def marked(configmap: Mapping[str, Any]) -> bool:
    """Whether it carries certsmith's label or annotation `certsmith.dev/trust-bundle`,
    whatever authority (or none) the value names."""
    metadata = configmap.get("metadata") or {}
    return names.BUNDLE_LABEL in (metadata.get("labels") or {}) or names.BUNDLE_ANNOTATION in (
        metadata.get("annotations") or {}
    )


def not_owner_why(owner: str) -> str:
    """A non-owner's BundleConflict message."""
    return (
        f"ConfigMap is the trust bundle of CertificateAuthority {owner}; give this "
        "authority another spec.trustBundle.configMapName"
    )


def judge(
    existing: Mapping[str, Any] | None,
    *,
    authority: str,
    owner: str,
    pem: bytes,
    created_here: bool,
    crl: str = "",
) -> Verdict:
    """What `authority` does with the ConfigMap found under its bundle's name (None: none
    exists), `owner` being its rightful owner (`rightful_owner`).

    `created_here`: certsmith created this object (its uid), even if its markers were removed.
    `crl`: the authority's published CRLs (PEM, key CRL_KEY); "" when it has none yet.
    """
    if authority != owner:
        return Verdict(Action.CONFLICT, not_owner_why(owner))
    if existing is None:
        return Verdict(Action.WRITE)
    if (existing.get("metadata") or {}).get("deletionTimestamp"):
        # Being deleted (held by a finalizer, or its namespace going): a write would only
        # race the deletion; once it is gone, its deletion event has it written anew.
        return Verdict(Action.NOTHING)
    if not marked(existing) and not created_here:
        return Verdict(
            Action.CONFLICT,
            "ConfigMap was not created by certsmith and is left untouched; delete it (certsmith "
            f"then writes its own) or label it {names.BUNDLE_LABEL}={authority} to hand it over",
        )
    if is_current(existing, pem, authority, crl):
        return Verdict(Action.NOTHING)
    return Verdict(Action.WRITE)


def bundle_configmap(
    *,
    name: str,
    namespace: str,
    authority: str,
    pem: bytes,
    existing: Mapping[str, Any] | None = None,
    crl: str = "",
) -> dict[str, Any]:
    """The ConfigMap to create, or to PUT over `existing` (with its resourceVersion): labels,
    annotations, finalizers, ownerReferences and data keys others added are kept (a PUT
    without them would remove them); certsmith's own (ca.crt, and ca.crl when `crl` is
    given) are put back."""
    previous = (existing or {}).get("metadata") or {}
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {
            **(previous.get("labels") or {}),
            names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE,
            names.BUNDLE_LABEL: authority,
        },
        "annotations": {**(previous.get("annotations") or {}), names.BUNDLE_ANNOTATION: authority},
    }
    if previous.get("resourceVersion"):
        metadata["resourceVersion"] = previous["resourceVersion"]
    for others in ("finalizers", "ownerReferences"):
        if previous.get(others):
            metadata[others] = previous[others]
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": {**((existing or {}).get("data") or {}), BUNDLE_KEY: pem.decode()},
    }
    if crl:
        body["data"][CRL_KEY] = crl
    # A key may be in data or binaryData, not both: ca.crt and ca.crl are certsmith's, in data.
    binary = {
        key: value
        for key, value in ((existing or {}).get("binaryData") or {}).items()
        if key not in (BUNDLE_KEY, CRL_KEY)
    }
    if binary:
        body["binaryData"] = binary
    return body


def is_current(configmap: Mapping[str, Any], pem: bytes, authority: str, crl: str = "") -> bool:
    """Whether label, annotation, ca.crt and (when `crl` is given) ca.crl are what certsmith
    writes."""
    metadata = configmap.get("metadata") or {}
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    data = configmap.get("data") or {}
    return (
        labels.get(names.BUNDLE_LABEL) == authority
        and labels.get(names.MANAGED_BY_LABEL) == names.MANAGED_BY_VALUE
        and annotations.get(names.BUNDLE_ANNOTATION) == authority
        and data.get(BUNDLE_KEY) == pem.decode()
        and (not crl or data.get(CRL_KEY) == crl)
        and (not crl or CRL_KEY not in (configmap.get("binaryData") or {}))
    )


def synced_condition(problems: tuple[Lagging, ...]) -> conditions.Condition:
    """BundlesSynced: True when every selected namespace holds the current bundle, else
    False naming the ConfigMaps that could not be written (a conflict first)."""
    if not problems:
        return conditions.Condition(
            BUNDLES_SYNCED, True, "Synced", "the trust bundle is current in every namespace"
        )
    ordered = sorted(problems, key=lambda p: (p.reason != CONFLICT, str(p)))
    shown = "; ".join(str(p) for p in ordered[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return conditions.Condition(BUNDLES_SYNCED, False, ordered[0].reason, f"{shown}{more}")
