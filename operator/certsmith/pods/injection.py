"""Pod injection: which certificate a pod asked for, and the pod spec that mounts it.

A pod opts in with the label `certsmith.dev/inject: "true"` (the webhook's objectSelector
keeps every other pod out of its path) and says what it wants by annotation:

- `certsmith.dev/certificate: <name>`: mount the Secret of that Certificate;
- `certsmith.dev/identity: service-account`: get a Certificate for the pod's service
  account, `spiffe://<trust domain>/ns/<ns>/sa/<sa>`, plus `certsmith.dev/dns-names`
  (comma-separated) if given;
- `certsmith.dev/mount-path`: where to mount (default /var/run/certsmith/tls);
- `certsmith.dev/key-mode`: the file mode of tls.key (default 0440).

The Secret is mounted read-only in every container and init container (ephemeral
containers cannot be set on create; `kubectl debug` adds them later, with their own mounts).
Files: tls.crt and ca.crt 0444, tls.key the key mode. kubelet writes secret volume files
owned by root; with `securityContext.fsGroup` it makes them group-owned by fsGroup and adds
group read (mode | 0440, pkg/volume/volume_linux.go), so the pod's processes read the key
through that group. The default 0440 is thus the mode of the file with or without fsGroup,
and one PostgreSQL accepts for a root-owned key (at most 0640).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from certsmith.api import names

DEFAULT_MOUNT_PATH = "/var/run/certsmith/tls"
DEFAULT_KEY_MODE = 0o440
CERTIFICATE_FILE_MODE = 0o444
KEY_FILE = "tls.key"
CERTIFICATE_FILES = ("tls.crt", "ca.crt")
VOLUME_NAME = "certsmith-tls"
SERVICE_ACCOUNT_IDENTITY = "service-account"


class InjectionError(ValueError):
    """The pod's certsmith annotations cannot be honoured; the message names the annotation."""


@dataclass(frozen=True)
class InjectionRequest:
    """What a pod's annotations ask for (`parse_request`)."""

    certificate: str | None
    """A named Certificate to mount; None when the pod asks for its service-account identity."""
    dns_names: tuple[str, ...]
    mount_path: str
    """Absolute and normalised: no empty, `.` or `..` segments, no trailing slash."""
    key_mode: int
    """Permission bits of tls.key, e.g. 0o440."""


def parse_request(annotations: Mapping[str, str]) -> InjectionRequest:
    """What an opted-in pod's annotations ask for (see the module); InjectionError naming
    the annotation when they cannot be honoured. dns-names are lowercased, deduplicated and
    sorted."""
    certificate = annotations.get(names.INJECT_CERTIFICATE_ANNOTATION, "").strip() or None
    identity = annotations.get(names.IDENTITY_ANNOTATION, "").strip() or None
    if certificate and identity:
        raise InjectionError(
            f"annotations {names.INJECT_CERTIFICATE_ANNOTATION} and {names.IDENTITY_ANNOTATION} "
            "are mutually exclusive"
        )
    if not certificate and not identity:
        raise InjectionError(
            f"label {names.INJECT_LABEL} is set but neither annotation "
            f"{names.INJECT_CERTIFICATE_ANNOTATION} "
            f"nor {names.IDENTITY_ANNOTATION} says which certificate to mount"
        )
    if identity is not None and identity != SERVICE_ACCOUNT_IDENTITY:
        raise InjectionError(
            f"annotation {names.IDENTITY_ANNOTATION}: {identity!r} is not supported "
            f"(use {SERVICE_ACCOUNT_IDENTITY!r})"
        )
    mount_path = _mount_path(
        annotations.get(names.MOUNT_PATH_ANNOTATION, DEFAULT_MOUNT_PATH).strip()
    )
    key_mode = _key_mode(
        annotations.get(names.KEY_MODE_ANNOTATION, f"{DEFAULT_KEY_MODE:04o}").strip()
    )
    dns_names = tuple(
        sorted(
            {n.strip().lower() for n in annotations.get(names.DNS_NAMES_ANNOTATION, "").split(",")}
            - {""}
        )
    )
    return InjectionRequest(
        certificate=certificate, dns_names=dns_names, mount_path=mount_path, key_mode=key_mode
    )


def ignored_annotation_warnings(annotations: Mapping[str, str]) -> list[str]:
    """Annotations the pod carries that change nothing, for the admission warnings kubectl
    shows: dns-names is read only with the identity annotation."""
    if (
        annotations.get(names.DNS_NAMES_ANNOTATION, "").strip()
        and not annotations.get(names.IDENTITY_ANNOTATION, "").strip()
    ):
        return [
            f"annotation {names.DNS_NAMES_ANNOTATION} is ignored: it adds names only to the "
            f"certificate of {names.IDENTITY_ANNOTATION}: {SERVICE_ACCOUNT_IDENTITY}"
        ]
    return []


def _segments(path: str) -> list[str]:
    return [s for s in path.split("/") if s not in ("", ".")]


def _mount_path(text: str) -> str:
    segments = _segments(text)
    # `..` would let the mount land outside the directory the annotation names.
    if not text.startswith("/") or ":" in text or ".." in segments or not segments:
        raise InjectionError(
            f"annotation {names.MOUNT_PATH_ANNOTATION}: {text!r} must be an absolute path below / "
            "without '..' or ':'"
        )
    return "/" + "/".join(segments)


def _key_mode(text: str) -> int:
    """An octal mode such as "0440" or "400": owner read at least, nothing for others."""
    if not re.fullmatch(r"0?[0-7]{3}", text):
        raise InjectionError(
            f"annotation {names.KEY_MODE_ANNOTATION}: {text!r} is not an octal file mode "
            'like "0440"'
        )
    mode = int(text, 8)
    if mode & 0o007:
        raise InjectionError(
            f"annotation {names.KEY_MODE_ANNOTATION}: {text!r} gives other users access to the "
            "private key (the last digit must be 0); give access through the group (fsGroup)"
        )
    if not mode & 0o400:
        raise InjectionError(
            f"annotation {names.KEY_MODE_ANNOTATION}: {text!r} does not let the owner read the key"
        )
    return mode


def service_account(pod_spec: Mapping[str, Any]) -> str:
    """The pod's service account; the apiserver's ServiceAccount admission defaults it."""
    return pod_spec.get("serviceAccountName") or "default"


def injected_certificate(metadata: Mapping[str, Any], pod_spec: Mapping[str, Any]) -> str | None:
    """The Certificate whose Secret the webhook mounts in pods made from this template, or
    None: no opt-in label, or annotations the webhook refuses (such pods are never created)."""
    if (metadata.get("labels") or {}).get(names.INJECT_LABEL) != "true":
        return None
    try:
        request = parse_request(metadata.get("annotations") or {})
    except InjectionError:
        return None
    if request.certificate is not None:
        return request.certificate
    return identity_certificate_name(service_account(pod_spec), request.dns_names)


def identity_certificate_name(service_account: str, dns_names: Sequence[str]) -> str:
    """One Certificate per service account (and set of extra DNS names), shared by its pods."""
    if not dns_names:
        return f"{service_account}-identity"
    digest = hashlib.sha256(",".join(dns_names).encode()).hexdigest()[:8]
    return f"{service_account}-identity-{digest}"[:253]


def identity_certificate(
    *, namespace: str, service_account: str, dns_names: Sequence[str], trust_domain: str
) -> dict[str, Any]:
    """The Certificate object of a service account's identity: its SPIFFE ID
    (`spiffe://<trust_domain>/ns/<namespace>/sa/<service_account>`, X.509-SVID) and the
    extra DNS names, labelled with the service account; its Secret is `<name>-tls`."""
    name = identity_certificate_name(service_account, dns_names)
    spec: dict[str, Any] = {
        "secretName": f"{name}-tls",
        "uris": [f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"],
    }
    if dns_names:
        spec["dnsNames"] = list(dns_names)
    return {
        "apiVersion": names.API_VERSION,
        "kind": "Certificate",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {names.IDENTITY_LABEL: service_account},
        },
        "spec": spec,
    }


def identity_conflict(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> str | None:
    """Why an existing Certificate of the identity's name cannot serve as that identity
    (someone else made it, or it names other things), or None when it is certsmith's own
    identity certificate: a pod must never get a Secret that lacks its SPIFFE ID."""
    labels = (stored.get("metadata") or {}).get("labels") or {}
    account = wanted["metadata"]["labels"][names.IDENTITY_LABEL]
    spec, expected = stored.get("spec") or {}, wanted["spec"]
    if labels.get(names.IDENTITY_LABEL) == account and all(
        sorted(spec.get(key) or ()) == sorted(expected.get(key) or ())
        for key in ("uris", "dnsNames")
    ):
        return None
    name = f"{wanted['metadata']['namespace']}/{wanted['metadata']['name']}"
    return (
        f"{names.IDENTITY_ANNOTATION}: Certificate {name} exists and is not certsmith's identity "
        f"certificate for service account {account} (it must carry only "
        f"{', '.join(expected['uris'])}{' and the dns-names' if expected.get('dnsNames') else ''}"
        f" and the label {names.IDENTITY_LABEL}={account}): rename or delete it"
    )


def secret_volume(*, secret_name: str, key_mode: int) -> dict[str, Any]:
    """The volume certsmith adds: exactly tls.crt, ca.crt (0444) and tls.key (`key_mode`),
    which every Secret certsmith writes holds."""
    items: list[dict[str, str | int]] = [{"key": name, "path": name} for name in CERTIFICATE_FILES]
    items.append({"key": KEY_FILE, "path": KEY_FILE, "mode": key_mode})
    return {
        "name": VOLUME_NAME,
        "secret": {"secretName": secret_name, "defaultMode": CERTIFICATE_FILE_MODE, "items": items},
    }


def _with_mount(container: Mapping[str, Any], mount_path: str) -> dict[str, Any]:
    name = container.get("name")
    mounts = []
    for mount in container.get("volumeMounts") or []:
        path = "/" + "/".join(_segments(mount.get("mountPath") or ""))
        if mount.get("name") == VOLUME_NAME:
            if path != mount_path:
                raise InjectionError(
                    f"container {name!r} mounts volume {VOLUME_NAME} at {path} but annotation "
                    f"{names.MOUNT_PATH_ANNOTATION} asks for {mount_path}: remove that mount or "
                    "set "
                    "the annotation to its path"
                )
            continue  # ours, from an earlier call (reinvocation): added again below
        if path == mount_path:
            raise InjectionError(
                f"annotation {names.MOUNT_PATH_ANNOTATION}: container {name!r} already mounts "
                "volume "
                f"{mount.get('name')!r} at {mount_path}; choose another path"
            )
        mounts.append(mount)
    mounts.append({"name": VOLUME_NAME, "mountPath": mount_path, "readOnly": True})
    return {**container, "volumeMounts": mounts}


def mounted_pod_spec(
    pod_spec: Mapping[str, Any], *, secret_name: str, mount_path: str, key_mode: int
) -> dict[str, Any]:
    """The pod spec's volumes and containers with the Secret mounted; idempotent, as a
    reinvoked webhook needs (reinvocationPolicy IfNeeded).

    Raises InjectionError naming what is in the way: a volume called certsmith-tls that is
    not this Secret, a mount of it elsewhere, or another mount at `mount_path` (the
    apiserver would refuse two mounts at one path with a message that names no annotation).
    """
    volumes = []
    for volume in pod_spec.get("volumes") or []:
        if volume.get("name") != VOLUME_NAME:
            volumes.append(volume)
        elif set(volume) != {"name", "secret"} or volume["secret"].get("secretName") != secret_name:
            raise InjectionError(
                f"the pod already has a volume named {VOLUME_NAME} that is not the Secret "
                f"{secret_name}; certsmith mounts the certificate under that name: rename it"
            )
    volumes.append(secret_volume(secret_name=secret_name, key_mode=key_mode))
    result: dict[str, Any] = {
        "volumes": volumes,
        "containers": [_with_mount(c, mount_path) for c in pod_spec.get("containers") or []],
    }
    if pod_spec.get("initContainers"):
        result["initContainers"] = [_with_mount(c, mount_path) for c in pod_spec["initContainers"]]
    return result


def unreadable_key_warnings(
    pod_spec: Mapping[str, Any], *, mount_path: str, key_mode: int
) -> list[str]:
    """Containers known to run as a non-root user that cannot read tls.key: without fsGroup
    the file is owned by root:root, so only root, or group 0 when `key_mode` has group read,
    can. A container whose user comes from its image is not judged (unknown here)."""
    pod_security = pod_spec.get("securityContext") or {}
    if pod_security.get("fsGroup") is not None:
        return []  # group-owned by fsGroup, which every container of the pod has
    root_group = 0 in (pod_security.get("supplementalGroups") or [])
    warnings = []
    for container in [*(pod_spec.get("initContainers") or []), *(pod_spec.get("containers") or [])]:
        security = {**pod_security, **(container.get("securityContext") or {})}
        user = security.get("runAsUser")
        if user == 0 or (user is None and not security.get("runAsNonRoot")):
            continue
        if key_mode & 0o040 and (root_group or security.get("runAsGroup") == 0):
            continue
        warnings.append(
            f"container {container.get('name')!r} runs as a non-root user and cannot read "
            f"{mount_path}/{KEY_FILE} (mode {key_mode:04o}, owned by root): set "
            "spec.securityContext.fsGroup to its group"
        )
    return warnings
