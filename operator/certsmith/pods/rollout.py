"""Rolling restarts for workloads that cannot reload a rotated certificate by themselves.

A Deployment, StatefulSet or DaemonSet annotated `certsmith.dev/restart-on-rotation: "true"`
whose pods use a Secret that certsmith re-issued gets a new pod-template annotation,
which makes its controller roll the pods (as `kubectl rollout restart` does).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from certsmith.api import names
from certsmith.pods import injection

WORKLOAD_KINDS = ("deployments", "statefulsets", "daemonsets")


def uses_secret(pod_spec: Mapping[str, Any], secret_name: str) -> bool:
    """Whether the pod spec names the Secret: a secret volume, a projected volume's source,
    or a container's (or init container's) env valueFrom.secretKeyRef or envFrom.secretRef.
    kubelet refreshes none of the environment, so those pods need the restart most."""
    for volume in pod_spec.get("volumes") or []:
        if (volume.get("secret") or {}).get("secretName") == secret_name:
            return True
        for source in (volume.get("projected") or {}).get("sources") or []:
            if (source.get("secret") or {}).get("name") == secret_name:
                return True
    for container in [*(pod_spec.get("containers") or []), *(pod_spec.get("initContainers") or [])]:
        for env in container.get("env") or []:
            if ((env.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name") == secret_name:
                return True
        for source in container.get("envFrom") or []:
            if (source.get("secretRef") or {}).get("name") == secret_name:
                return True
    return False


def rotated(template_annotations: Mapping[str, str]) -> dict[str, str]:
    """The serial each Secret was last rolled for: `name@serial` entries, comma-separated."""
    entries = template_annotations.get(names.ROTATED_ANNOTATION, "")
    return dict(entry.rsplit("@", 1) for entry in entries.split(",") if "@" in entry)


def needs_restart(
    workload: Mapping[str, Any], *, certificate_name: str, secret_name: str, serial: str
) -> bool:
    """Whether an opted-in workload's pods use the Certificate's Secret, by naming it or
    through certsmith's injection (the pod template's label and annotations: the
    Certificate by name, or its service account's identity Certificate), and were not
    already rolled for this serial."""
    metadata = workload.get("metadata") or {}
    if (metadata.get("annotations") or {}).get(names.RESTART_ANNOTATION) != "true":
        return False
    template = (workload.get("spec") or {}).get("template") or {}
    template_metadata = template.get("metadata") or {}
    pod_spec = template.get("spec") or {}
    if rotated(template_metadata.get("annotations") or {}).get(secret_name) == serial:
        return False
    return (
        uses_secret(pod_spec, secret_name)
        or injection.injected_certificate(template_metadata, pod_spec) == certificate_name
    )


def restart_patch(workload: Mapping[str, Any], secret_name: str, serial: str) -> dict[str, Any]:
    """A merge patch naming the serial per Secret, so that a retried handler restarts once
    even when the pods use several Secrets that rotate at different times."""
    template_metadata = ((workload.get("spec") or {}).get("template") or {}).get("metadata") or {}
    entries = rotated(template_metadata.get("annotations") or {}) | {secret_name: serial}
    value = ",".join(f"{name}@{entries[name]}" for name in sorted(entries))
    return {"spec": {"template": {"metadata": {"annotations": {names.ROTATED_ANNOTATION: value}}}}}
