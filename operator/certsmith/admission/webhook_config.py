"""certsmith's admission webhook configurations, as the install ships them and the operator
keeps them: the install (charts/certsmith, manifests/webhooks.yaml) owns every field, the
operator writes only each webhook's `clientConfig.caBundle`, so that a GitOps diff of the
install against the cluster shows nothing else and an uninstall removes them.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from certsmith.admission import admission_policy

CONFIGURATION_NAME = "certsmith.dev"
"""The name of both configurations (manifests/webhooks.yaml, the chart's webhooks.yaml)."""
KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
INJECT_POD_PATH = "inject-pod"
VALIDATE_CERTIFICATE_PATH = "validate-certificate"
VALIDATE_CERTIFICATE_REQUEST_PATH = "validate-certificaterequest"


def ca_bundle_patch(live: Mapping[str, Any], bundle_pem: bytes) -> dict[str, Any] | None:
    """The strategic merge patch that sets `clientConfig.caBundle` (base64 of `bundle_pem`)
    on each webhook of `live` (a webhook configuration as read) that does not carry it yet,
    or None when all do. Webhooks are merged by `name` (their patchMergeKey), so no other
    field and no other webhook changes; `live`'s resourceVersion makes the apiserver refuse
    the patch (409) when the configuration changed since it was read, rather than add a
    webhook someone removed meanwhile."""
    wanted = base64.b64encode(bundle_pem).decode()
    stale = [
        {"name": hook["name"], "clientConfig": {"caBundle": wanted}}
        for hook in live.get("webhooks") or []
        if (hook.get("clientConfig") or {}).get("caBundle") != wanted
    ]
    if not stale:
        return None
    return {
        "metadata": {"resourceVersion": live["metadata"]["resourceVersion"]},
        "webhooks": stale,
    }


def validating_match_conditions(operator_namespace: str, trust_domain: str) -> list[dict[str, str]]:
    """The `matchConditions` of the install's Certificate validating webhook: called only
    when the spec is new or changed and CEL does not judge it (admission_policy.judged_in_cel:
    any name that needs a grant, any spec CEL cannot prove valid); hack/render-chart writes
    them into manifests/ and the chart, which cannot compute them."""
    return [
        {"name": "spec-changed", "expression": admission_policy.SPEC_CHANGED},
        {
            "name": "not-judged-in-cel",
            "expression": f"!({admission_policy.judged_in_cel(operator_namespace, trust_domain)})",
        },
    ]
