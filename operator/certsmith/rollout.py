"""Rolling restarts for workloads that cannot reload a rotated certificate by themselves.

A Deployment, StatefulSet or DaemonSet annotated `certsmith.dev/restart-on-rotation: "true"`
whose pods mount a Secret that certsmith re-issued gets a new pod-template annotation,
which makes its controller roll the pods (as `kubectl rollout restart` does).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

RESTART_ANNOTATION = "certsmith.dev/restart-on-rotation"
ROTATED_ANNOTATION = "certsmith.dev/rotated-secret"
WORKLOAD_KINDS = ("deployments", "statefulsets", "daemonsets")


def mounts_secret(pod_spec: Mapping[str, Any], secret_name: str) -> bool:
    for volume in pod_spec.get("volumes") or []:
        if (volume.get("secret") or {}).get("secretName") == secret_name:
            return True
        for source in (volume.get("projected") or {}).get("sources") or []:
            if (source.get("secret") or {}).get("name") == secret_name:
                return True
    return False


def needs_restart(workload: Mapping[str, Any], secret_name: str, serial: str) -> bool:
    metadata = workload.get("metadata") or {}
    if (metadata.get("annotations") or {}).get(RESTART_ANNOTATION) != "true":
        return False
    template = (workload.get("spec") or {}).get("template") or {}
    already = ((template.get("metadata") or {}).get("annotations") or {}).get(ROTATED_ANNOTATION)
    return already != f"{secret_name}@{serial}" and mounts_secret(
        template.get("spec") or {}, secret_name
    )


def restart_patch(secret_name: str, serial: str) -> dict[str, Any]:
    # Naming the serial makes the patch idempotent: a retried handler restarts once.
    return {
        "spec": {
            "template": {
                "metadata": {"annotations": {ROTATED_ANNOTATION: f"{secret_name}@{serial}"}}
            }
        }
    }
