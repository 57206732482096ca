"""Trust-bundle ConfigMaps: every root an authority trusts, in the namespaces it serves.

certsmith writes only the bundles it created: a ConfigMap of the bundle's name is certsmith's
when it carries the label or the annotation `certsmith.dev/trust-bundle` naming the
authority (certsmith sets both, so removing one does not disown it), or when certsmith
itself created that very object (same uid). When the label and the annotation name
different authorities (a `kubectl label --overwrite`), the annotation decides, for every
authority alike (`owner`): that authority repairs it (label included), any other reports a
BundleConflict; never both, never neither. Any other ConfigMap of that name, pre-created by
a person or another tool, is a conflict: never overwritten, reported by name.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from certsmith import conditions, isolation
from certsmith.rotation import Lagging

BUNDLES_SYNCED = "BundlesSynced"
CONFLICT = "BundleConflict"
WRITE_FAILED = "BundleWriteFailed"
BUNDLE_LABEL = "certsmith.dev/trust-bundle"
BUNDLE_ANNOTATION = BUNDLE_LABEL
BUNDLE_KEY = "ca.crt"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "certsmith"


class Action(enum.Enum):
    NOTHING = "Nothing"
    WRITE = "Write"
    CONFLICT = "Conflict"


@dataclass(frozen=True)
class Verdict:
    action: Action
    why: str = ""
    """For a conflict: whose it is and what to do, for status and events."""


SELECTOR_FIELD = "spec.trustBundle.namespaceSelector"


def check_selector(selector: Any) -> None:
    """spec.trustBundle.namespaceSelector is a label selector, or InvalidSpec naming the bad
    part (see isolation.check_label_selector)."""
    isolation.check_label_selector(selector, SELECTOR_FIELD)


def owner(configmap: Mapping[str, Any]) -> str | None:
    """The authority a ConfigMap's marker names: the annotation, else the label."""
    metadata = configmap.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    labels = metadata.get("labels") or {}
    return annotations.get(BUNDLE_ANNOTATION) or labels.get(BUNDLE_LABEL) or None


def judge(
    existing: Mapping[str, Any] | None, *, authority: str, pem: bytes, created_here: bool
) -> Verdict:
    """What to do with the ConfigMap found under the bundle's name (None: none exists).

    `created_here`: certsmith created this object (its uid), even if its markers were removed.
    """
    if existing is None:
        return Verdict(Action.WRITE)
    marked = owner(existing)
    if marked is not None and marked != authority:
        return Verdict(
            Action.CONFLICT,
            f"ConfigMap is the trust bundle of CertificateAuthority {marked}; give this "
            "authority another spec.trustBundle.configMapName",
        )
    if marked is None and not created_here:
        return Verdict(
            Action.CONFLICT,
            "ConfigMap was not created by certsmith and is left untouched; delete it (certsmith "
            f"then writes its own) or label it {BUNDLE_LABEL}={authority} to hand it over",
        )
    if is_current(existing, pem, authority):
        return Verdict(Action.NOTHING)
    return Verdict(Action.WRITE)


def bundle_configmap(
    *,
    name: str,
    namespace: str,
    authority: str,
    pem: bytes,
    existing: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ConfigMap to create, or to PUT over `existing` (with its resourceVersion): labels,
    annotations and data keys others added are kept; certsmith's own are put back."""
    previous = (existing or {}).get("metadata") or {}
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {
            **(previous.get("labels") or {}),
            MANAGED_BY_LABEL: MANAGED_BY_VALUE,
            BUNDLE_LABEL: authority,
        },
        "annotations": {**(previous.get("annotations") or {}), BUNDLE_ANNOTATION: authority},
    }
    if previous.get("resourceVersion"):
        metadata["resourceVersion"] = previous["resourceVersion"]
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": {**((existing or {}).get("data") or {}), BUNDLE_KEY: pem.decode()},
    }
    # A key may be in data or binaryData, not both: ca.crt is certsmith's, in data.
    binary = {
        key: value
        for key, value in ((existing or {}).get("binaryData") or {}).items()
        if key != BUNDLE_KEY
    }
    if binary:
        body["binaryData"] = binary
    return body


def is_current(configmap: Mapping[str, Any], pem: bytes, authority: str) -> bool:
    """Whether label, annotation and ca.crt are what certsmith writes."""
    metadata = configmap.get("metadata") or {}
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    data = configmap.get("data") or {}
    return (
        labels.get(BUNDLE_LABEL) == authority
        and labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE
        and annotations.get(BUNDLE_ANNOTATION) == authority
        and data.get(BUNDLE_KEY) == pem.decode()
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
