"""The admission webhook configurations certsmith registers, built as plain dicts.

Pods reach the mutating webhook only when they carry the opt-in label (objectSelector),
so a certsmith outage can never block a pod that did not ask for a certificate.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from certsmith.admission import admission_policy
from certsmith.api import names

CONFIGURATION_NAME = "certsmith.dev"
INJECT_POD_PATH = "inject-pod"
VALIDATE_CERTIFICATE_PATH = "validate-certificate"


@dataclass(frozen=True)
class Endpoint:
    """Where the apiserver reaches the webhook: a Service in-cluster, or a URL on the host."""

    ca_bundle: bytes
    service_name: str | None = None
    service_namespace: str | None = None
    service_port: int = 443
    url: str | None = None

    def client_config(self, path: str) -> dict[str, Any]:
        """The webhook's `clientConfig`: the caBundle (base64 PEM) and the Service (port,
        `/path`) or `<url>/path` (admissionregistration.k8s.io/v1 WebhookClientConfig)."""
        config: dict[str, Any] = {"caBundle": base64.b64encode(self.ca_bundle).decode()}
        if self.url is not None:
            config["url"] = f"{self.url.rstrip('/')}/{path}"
        else:
            config["service"] = {
                "name": self.service_name,
                "namespace": self.service_namespace,
                "port": self.service_port,
                "path": f"/{path}",
            }
        return config


def mutating_configuration(endpoint: Endpoint) -> dict[str, Any]:
    """The MutatingWebhookConfiguration that sends the CREATE of opted-in pods to
    INJECT_POD_PATH; failurePolicy Fail, reinvoked when a later webhook changes the pod."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": CONFIGURATION_NAME, "labels": {"app.kubernetes.io/name": "certsmith"}},
        "webhooks": [
            {
                "name": "inject.pods.certsmith.dev",
                "clientConfig": endpoint.client_config(INJECT_POD_PATH),
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                        "scope": "Namespaced",
                    }
                ],
                "objectSelector": {"matchLabels": {names.INJECT_LABEL: "true"}},
                # An opted-in pod without its certificate is worse than a pod that waits.
                "failurePolicy": "Fail",
                "sideEffects": "NoneOnDryRun",
                "reinvocationPolicy": "IfNeeded",
                "timeoutSeconds": 10,
                "admissionReviewVersions": ["v1"],
            }
        ],
    }


def validating_configuration(endpoint: Endpoint, *, operator_namespace: str) -> dict[str, Any]:
    """The ValidatingWebhookConfiguration that sends the CREATE and UPDATE of Certificates
    to VALIDATE_CERTIFICATE_PATH when the spec is new or changed and the
    ValidatingAdmissionPolicy does not judge it (admission_policy.judged_in_cel);
    failurePolicy Ignore (the operator checks again)."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": CONFIGURATION_NAME, "labels": {"app.kubernetes.io/name": "certsmith"}},
        "webhooks": [
            {
                "name": "validate.certificates.certsmith.dev",
                "clientConfig": endpoint.client_config(VALIDATE_CERTIFICATE_PATH),
                "rules": [
                    {
                        "apiGroups": [names.GROUP],
                        "apiVersions": [names.VERSION],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": [names.CERTIFICATES],
                        "scope": "Namespaced",
                    }
                ],
                # The apiserver judges the rest in CEL (admission_policy), at no call.
                "matchConditions": [
                    {"name": "spec-changed", "expression": admission_policy.SPEC_CHANGED},
                    {
                        "name": "not-judged-in-cel",
                        "expression": f"!({admission_policy.judged_in_cel(operator_namespace)})",
                    },
                ],
                # The operator checks every spec again before signing, so a Certificate
                # admitted while the webhook was down is still never signed if invalid.
                "failurePolicy": "Ignore",
                "sideEffects": "None",
                "timeoutSeconds": 5,
                "admissionReviewVersions": ["v1"],
            }
        ],
    }


def drifted(live: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Whether a registered configuration no longer says what certsmith registered: a
    webhook gone, or any field certsmith sets changed (a caBundle edited to junk, a
    selector or failurePolicy changed); for a ValidatingAdmissionPolicy or its binding,
    any field of its spec. Fields the apiserver fills in by default are not compared."""
    if "webhooks" not in desired:
        return not contains(live.get("spec"), desired["spec"])
    registered = {hook.get("name"): hook for hook in live.get("webhooks") or []}
    return any(not contains(registered.get(hook["name"]), hook) for hook in desired["webhooks"])


def contains(live: object, desired: object) -> bool:
    """Whether `live` holds every field of `desired` with the same value (lists whole)."""
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(
            contains(live.get(key), value) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(contains(a, b) for a, b in zip(live, desired, strict=True))
        )
    return bool(live == desired)
