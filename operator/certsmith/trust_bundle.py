"""Trust-bundle ConfigMaps: every root an authority trusts, in the namespaces it serves."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

BUNDLE_LABEL = "certsmith.dev/trust-bundle"
BUNDLE_KEY = "ca.crt"


def bundle_configmap(
    *, name: str, namespace: str, authority: str, pem: bytes, resource_version: str | None = None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {"app.kubernetes.io/managed-by": "certsmith", BUNDLE_LABEL: authority},
    }
    if resource_version:
        metadata["resourceVersion"] = resource_version
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": {BUNDLE_KEY: pem.decode()},
    }


def is_current(configmap: Mapping[str, Any], pem: bytes, authority: str) -> bool:
    labels = (configmap.get("metadata") or {}).get("labels") or {}
    data = configmap.get("data") or {}
    return labels.get(BUNDLE_LABEL) == authority and data.get(BUNDLE_KEY) == pem.decode()
