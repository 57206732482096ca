"""Pod injection: which certificate a pod asked for, and the pod spec that mounts it.

A pod opts in with the label `certsmith.dev/inject: "true"` (the webhook's objectSelector
keeps every other pod out of its path) and says what it wants by annotation:

- `certsmith.dev/certificate: <name>`: mount the Secret of that Certificate;
- `certsmith.dev/identity: service-account`: get a Certificate for the pod's service
  account, `spiffe://<trust domain>/ns/<ns>/sa/<sa>`, plus `certsmith.dev/dns-names`
  (comma-separated) if given;
- `certsmith.dev/mount-path`: where to mount (default /var/run/certsmith/tls).

The Secret is mounted read-only in every container and init container.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

INJECT_LABEL = "certsmith.dev/inject"
CERTIFICATE_ANNOTATION = "certsmith.dev/certificate"
IDENTITY_ANNOTATION = "certsmith.dev/identity"
DNS_NAMES_ANNOTATION = "certsmith.dev/dns-names"
MOUNT_PATH_ANNOTATION = "certsmith.dev/mount-path"
DEFAULT_MOUNT_PATH = "/var/run/certsmith/tls"
VOLUME_NAME = "certsmith-tls"
SERVICE_ACCOUNT_IDENTITY = "service-account"
IDENTITY_LABEL = "certsmith.dev/service-account"


class InjectionError(ValueError):
    """The pod's certsmith annotations cannot be honoured; the message names the annotation."""


@dataclass(frozen=True)
class InjectionRequest:
    certificate: str | None
    """A named Certificate to mount; None when the pod asks for its service-account identity."""
    dns_names: tuple[str, ...]
    mount_path: str


def parse_request(annotations: Mapping[str, str]) -> InjectionRequest:
    certificate = annotations.get(CERTIFICATE_ANNOTATION, "").strip() or None
    identity = annotations.get(IDENTITY_ANNOTATION, "").strip() or None
    if certificate and identity:
        raise InjectionError(
            f"annotations {CERTIFICATE_ANNOTATION} and {IDENTITY_ANNOTATION} are mutually exclusive"
        )
    if not certificate and not identity:
        raise InjectionError(
            f"label {INJECT_LABEL} is set but neither annotation {CERTIFICATE_ANNOTATION} "
            f"nor {IDENTITY_ANNOTATION} says which certificate to mount"
        )
    if identity is not None and identity != SERVICE_ACCOUNT_IDENTITY:
        raise InjectionError(
            f"annotation {IDENTITY_ANNOTATION}: {identity!r} is not supported "
            f"(use {SERVICE_ACCOUNT_IDENTITY!r})"
        )
    mount_path = annotations.get(MOUNT_PATH_ANNOTATION, DEFAULT_MOUNT_PATH).strip()
    if not mount_path.startswith("/") or ":" in mount_path:
        raise InjectionError(
            f"annotation {MOUNT_PATH_ANNOTATION}: {mount_path!r} must be an absolute path"
        )
    dns_names = tuple(
        sorted(
            {n.strip().lower() for n in annotations.get(DNS_NAMES_ANNOTATION, "").split(",")} - {""}
        )
    )
    return InjectionRequest(certificate=certificate, dns_names=dns_names, mount_path=mount_path)


def identity_certificate_name(service_account: str, dns_names: Sequence[str]) -> str:
    """One Certificate per service account (and set of extra DNS names), shared by its pods."""
    if not dns_names:
        return f"{service_account}-identity"
    digest = hashlib.sha256(",".join(dns_names).encode()).hexdigest()[:8]
    return f"{service_account}-identity-{digest}"[:253]


def identity_certificate(
    *, namespace: str, service_account: str, dns_names: Sequence[str], trust_domain: str
) -> dict[str, Any]:
    name = identity_certificate_name(service_account, dns_names)
    spec: dict[str, Any] = {
        "secretName": f"{name}-tls",
        "uris": [f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"],
    }
    if dns_names:
        spec["dnsNames"] = list(dns_names)
    return {
        "apiVersion": "certsmith.dev/v1alpha1",
        "kind": "Certificate",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {IDENTITY_LABEL: service_account},
        },
        "spec": spec,
    }


def _with_mount(container: Mapping[str, Any], mount_path: str) -> dict[str, Any]:
    mounts = [m for m in container.get("volumeMounts") or [] if m.get("name") != VOLUME_NAME]
    mounts.append({"name": VOLUME_NAME, "mountPath": mount_path, "readOnly": True})
    return {**container, "volumeMounts": mounts}


def mounted_pod_spec(
    pod_spec: Mapping[str, Any], *, secret_name: str, mount_path: str
) -> dict[str, Any]:
    """The pod spec's volumes and containers with the Secret mounted; idempotent."""
    volumes = [v for v in pod_spec.get("volumes") or [] if v.get("name") != VOLUME_NAME]
    volumes.append({"name": VOLUME_NAME, "secret": {"secretName": secret_name}})
    result: dict[str, Any] = {
        "volumes": volumes,
        "containers": [_with_mount(c, mount_path) for c in pod_spec.get("containers") or []],
    }
    if pod_spec.get("initContainers"):
        result["initContainers"] = [_with_mount(c, mount_path) for c in pod_spec["initContainers"]]
    return result
